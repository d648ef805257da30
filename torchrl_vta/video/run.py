"""A whole video experiment: data, model, training, held-out evaluation, pictures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torchrl.record.loggers.csv import CSVLogger

from torchrl_vta.recipe import select_device
from torchrl_vta.video.config import VideoConfig, validate_config
from torchrl_vta.video.data import load_data
from torchrl_vta.video.evaluation import evaluate_video_model
from torchrl_vta.video.pictures import save_boundary_strip, save_generation
from torchrl_vta.video.resume import VideoCheckpoints, config_dict
from torchrl_vta.video.training import train_video_model
from torchrl_vta.video.variants import make_variant

__all__ = ["load_video_run", "run_video_experiment"]

log = logging.getLogger("vta_video")


def run_video_experiment(config: VideoConfig, out_dir: str | Path) -> dict:
    """Train, evaluate and write every output into ``out_dir``: ``metrics.json``,
    ``model.pt``, ``boundary_strip.png``, ``generation_{full,jumpy}.png``, CSV logs and
    ``checkpoints/``. ``run.init_from`` loads a saved ``model.pt`` first (``steps=0`` only
    re-evaluates it); ``run.resume`` continues the run's newest checkpoint
    (:mod:`torchrl_vta.video.resume`). Returns the metrics.

    Example:
        >>> import tempfile, os
        >>> from torchrl_vta.video import validate_config
        >>> root = tempfile.mkdtemp()
        >>> config = validate_config({
        ...     "model": {"name": "agent", "size": "tiny", "init_size": 2, "seq_size": 6},
        ...     "dataset": {"num_sequences": 4, "eval_sequences": 2, "seq_len": 10},
        ...     "eval": {"strip_sequences": 2, "generate_sequences": 1, "jumpy_steps": 2},
        ...     "steps": 2, "batch_size": 2, "data_dir": os.path.join(root, "data")})
        >>> metrics = run_video_experiment(config, os.path.join(root, "run"))
        >>> metrics["steps_done"], sorted(metrics["forcing_off"]["f1"])
        (2, ['0', '1', '2'])
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = VideoCheckpoints(out_dir)
    resume_from = checkpoints.start(config)  # before any data or model: a wrong resume fails fast
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    device = select_device(config.run.device)
    train_data, eval_data = load_data(config.dataset, config.run.data_dir)
    if config.eval.split == "train":
        # Diagnosis on training windows: never tune on the held-out ones.
        eval_data = train_data[: eval_data.shape[0]]
    event_rate = float(train_data["event"][:, 1:].float().mean())
    log.info("%s: %d training / %d held-out sequences of %d frames, event rate %.3f, device %s",
             config.dataset.name, train_data.shape[0], eval_data.shape[0],
             config.dataset.seq_len, event_rate, device)
    variant = make_variant(config, device)
    log.info("%s model: %d parameters", config.model.name,
             sum(p.numel() for p in variant.loss.parameters()))
    if config.run.init_from is not None and resume_from is None:
        # Same model options as the run that saved it; steps=0 only re-evaluates.
        variant.loss.load_state_dict(torch.load(config.run.init_from, map_location=device))
        log.info("loaded %s", config.run.init_from)
    logger = CSVLogger(exp_name="vta_video", log_dir=str(out_dir / "logs"))
    metrics = {"model": config.model.name, "dataset": config.dataset.name}
    metrics.update(train_video_model(variant, train_data["pixels"], config, device, logger,
                                     checkpoints=checkpoints, resume_from=resume_from))
    torch.save(variant.loss.state_dict(), out_dir / "model.pt")
    metrics.update(evaluate_video_model(variant, eval_data, config, device))
    save_boundary_strip(variant, eval_data, config, out_dir / "boundary_strip.png", device)
    for mode in ("full", "jumpy"):
        save_generation(variant, eval_data, config, mode, out_dir / f"generation_{mode}.png",
                        device)
    metrics["config"] = config_dict(config)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    for name in ("forcing_on", "forcing_off"):
        report = metrics[name]
        levels = [(name, report)] + [(f"{name} {key}", value) for key, value in report.items()
                                     if key.startswith("level")]
        for label, level in levels:
            log.info("%s: F1 %s | periodic F1 %s | AUC %.3f | surprise AUC %.3f | boundary rate "
                     "%.3f vs event rate %.3f", label,
                     {k: round(v, 3) for k, v in level["f1"].items()},
                     {k: round(v, 3) for k, v in level["periodic_f1"].items()}, level["auc"],
                     level["surprise_auc"], level["boundary_rate"], level["event_rate"])
        log.info("%s: READ offsets to the nearest event %s | score by lag %s", name,
                 report["offsets"], {k: round(v, 3) for k, v in report["score_profile"].items()})
    log.info("outputs in %s: %s", out_dir, sorted(p.name for p in out_dir.iterdir()))
    return metrics


def load_video_run(run_dir: str | Path, device: str = "cpu"):
    """The validated config and the trained model (eval mode) of a finished run directory
    (its ``.hydra/config.yaml`` and ``model.pt``), e.g. for an analysis script.

    Example:
        >>> import tempfile, os
        >>> from omegaconf import OmegaConf
        >>> from torchrl_vta.video import make_variant, validate_config
        >>> run = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(run, ".hydra"))
        >>> raw = {"model": {"name": "agent", "size": "tiny"}}
        >>> OmegaConf.save(OmegaConf.create(raw), os.path.join(run, ".hydra", "config.yaml"))
        >>> torch.save(make_variant(validate_config(raw)).loss.state_dict(), os.path.join(run, "model.pt"))
        >>> config, variant = load_video_run(run)
        >>> config.model.name, variant.loss.training
        ('agent', False)
    """
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    config = validate_config(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    variant = make_variant(config, device)
    variant.loss.load_state_dict(torch.load(run_dir / "model.pt", map_location=device))
    variant.loss.eval()
    return config, variant
