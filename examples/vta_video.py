"""Unsupervised video modelling with learned segment boundaries (VTA) on balls / maze.

    python examples/vta_video.py dataset=balls model=original
    python examples/vta_video.py dataset=maze model=agent steps=5000
    python examples/vta_video.py preset=smoke            # tiny end-to-end run

``model=original`` is the original VTA (Kim, Ahn & Bengio 2019,
:mod:`torchrl_vta.original`); ``model=agent`` the package's agent world model
(:class:`~torchrl_vta.modules.rssm.HierarchicalRSSM` with a causal boundary posterior,
built by ``make_world_model`` and trained by ``WorldModelLoss``), both action-free.

The script generates (or loads from ``data_dir``) a dataset with ground-truth events,
trains on random windows of ``2 * init_size + seq_size`` frames, then evaluates on
held-out sequences: boundary precision/recall/F1 at tolerances 0, 1, 2 on the modelled
frames of each window (forced boundaries excluded), with the segment limits forcing the
posterior ("forcing_on") and without ("forcing_off"); boundary vs event rate; the AUC of
P(READ); and a periodic baseline with the same number of boundaries. Everything goes to
the Hydra run directory (printed at the end): ``metrics.json``, ``boundary_strip.png``,
``generation_full.png``, ``generation_jumpy.png``, ``model.pt`` and CSV logs.

Everything but the Hydra entry point is the library :mod:`torchrl_vta.video` (configuration,
models, training, evaluation, pictures); a world registered with
:func:`torchrl_vta.register_dataset` is a ``dataset.name`` here too.
"""

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from torchrl_vta.video import run_video_experiment, validate_config

log = logging.getLogger("vta_video")


def resolve_paths(cfg: DictConfig) -> DictConfig:
    """``data_dir`` and ``init_from`` relative to the launch directory, as documented.

    Example:
        >>> import os
        >>> cfg = resolve_paths(OmegaConf.create({"data_dir": "data", "init_from": None}))
        >>> cfg.data_dir == os.path.join(os.getcwd(), "data"), cfg.init_from
        (True, None)
    """
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key in ("data_dir", "init_from"):
        if cfg.get(key) is not None:
            cfg[key] = to_absolute_path(cfg[key])
    return cfg


@hydra.main(config_path="../configs/video", config_name="vta_video", version_base=None)
def main(cfg: DictConfig) -> None:
    config = validate_config(resolve_paths(cfg))
    run_video_experiment(config, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
