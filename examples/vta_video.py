"""Unsupervised video modelling with learned segment boundaries (VTA) on balls / maze.

    python examples/vta_video.py dataset=balls model=original
    python examples/vta_video.py dataset=maze model=agent steps=5000
    python examples/vta_video.py preset=smoke            # tiny end-to-end run

``model=original`` is the original VTA (Kim, Ahn & Bengio 2019,
:mod:`torchrl_vta.modules.original`); ``model=agent`` the package's agent world model
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
"""

import hashlib
import inspect
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image, ImageDraw
from tensordict import TensorDict
from torchrl.data import Composite, Unbounded
from torchrl.record.loggers.csv import CSVLogger

from torchrl_vta import (
    HierarchicalRSSM,
    OriginalVTA,
    OriginalVTALoss,
    OriginalVTAModule,
    TemperatureSchedule,
    WorldModelLoss,
    boundary_auc,
    boundary_offsets,
    boundary_rates,
    event_triggered_average,
    load_or_generate,
    make_world_model,
    per_tolerance_table,
    periodic_boundaries,
    postprocess_pixels,
    preprocess_pixels,
    select_device,
)
from torchrl_vta.envs.datasets import WORLDS
from torchrl_vta.modules import READ
from torchrl_vta.viz import EVENT_COLOUR, FORCED_COLOUR, READ_COLOUR

log = logging.getLogger("vta_video")


# --------------------------------------------------------------------------- config
def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _positive(section: str, **values) -> None:
    for name, value in values.items():
        _require(value >= 1, f"{section}.{name} must be >= 1, got {value}.")


@dataclass
class DatasetConfig:
    """``dataset`` group: which world, how many sequences, and world options.

    Example:
        >>> DatasetConfig(name="maze").seq_len
        30
    """

    name: str = "balls"
    num_sequences: int = 1000
    eval_sequences: int = 200
    seq_len: int = 30
    image_size: int = 32
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _require(self.name in WORLDS, f"dataset.name must be one of {WORLDS}, got {self.name!r}.")
        _positive("dataset", num_sequences=self.num_sequences,
                  eval_sequences=self.eval_sequences, seq_len=self.seq_len)
        _require(self.image_size == 32,
                 f"dataset.image_size must be 32 (the original VTA CNN), got {self.image_size}.")
        _require(self.seed >= 0, f"dataset.seed must be >= 0, got {self.seed}.")


#: Original VTA sizes (belief, CNN/feature width, state). ``paper`` is the published one.
ORIGINAL_SIZES = {"paper": (128, 128, 8), "cpu": (128, 64, 8), "tiny": (16, 8, 2)}
#: Agent sizes -> ``make_world_model`` presets.
AGENT_SIZES = {"tiny": "test", "cpu": "cpu", "size12m": "size12m", "size25m": "size25m"}


def _check_window(init_size: int, seq_size: int, bits: int) -> None:
    _require(init_size >= 0, f"model.init_size must be >= 0, got {init_size}.")
    _positive("model", seq_size=seq_size)
    _require(1 <= bits <= 8, f"model.bits must be in [1, 8], got {bits}.")


def _check_options(section: str, options: dict, target) -> None:
    valid = set(inspect.signature(target).parameters) - {"self"}
    unknown = sorted(set(options) - valid)
    _require(not unknown, f"{section} has unknown option(s) {unknown}; valid: {sorted(valid)}.")


@dataclass
class OriginalModelConfig:
    """``model=original``: the original VTA; ``null`` sizes come from ``size``.

    Example:
        >>> OriginalModelConfig(size="paper", state_size=4).sizes()
        (128, 128, 4)
    """

    name: str = "original"
    size: str = "cpu"
    belief_size: Optional[int] = None
    feat_size: Optional[int] = None
    state_size: Optional[int] = None
    latent_layers: int = 1
    boundary_layers: int = 3
    max_seg_len: Optional[int] = 10
    max_seg_num: Optional[int] = 5
    loss: dict[str, Any] = field(default_factory=dict)
    init_size: int = 5
    seq_size: int = 20
    bits: int = 5

    def __post_init__(self):
        _require(self.size in ORIGINAL_SIZES,
                 f"model.size must be one of {sorted(ORIGINAL_SIZES)}, got {self.size!r}.")
        for name in ("belief_size", "feat_size", "state_size", "max_seg_len", "max_seg_num"):
            value = getattr(self, name)
            _require(value is None or value >= 1,
                     f"model.{name} must be >= 1 (or null), got {value}.")
        _require(self.latent_layers >= 0, f"model.latent_layers must be >= 0, got {self.latent_layers}.")
        _require(self.boundary_layers >= 0,
                 f"model.boundary_layers must be >= 0, got {self.boundary_layers}.")
        _check_options("model.loss", self.loss, OriginalVTALoss.__init__)
        _require("vta" not in self.loss, "model.loss must not set vta (the model itself).")
        _check_window(self.init_size, self.seq_size, self.bits)

    def sizes(self) -> tuple[int, int, int]:
        """(belief, feat, state) after the explicit overrides."""
        preset = ORIGINAL_SIZES[self.size]
        explicit = (self.belief_size, self.feat_size, self.state_size)
        return tuple(p if e is None else e for p, e in zip(preset, explicit))


@dataclass
class AgentModelConfig:
    """``model=agent``: HierarchicalRSSM world model; ``rssm``/``loss`` pass options through.

    Example:
        >>> AgentModelConfig(rssm={"max_seg_len": 8}).rssm
        {'max_seg_len': 8}
    """

    name: str = "agent"
    size: str = "cpu"
    rssm: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    init_size: int = 5
    seq_size: int = 20
    bits: int = 5

    def __post_init__(self):
        _require(self.size in AGENT_SIZES,
                 f"model.size must be one of {sorted(AGENT_SIZES)}, got {self.size!r}.")
        _check_options("model.rssm", self.rssm, HierarchicalRSSM.__init__)
        _require(not {"action_dim", "embed_dim", "levels"} & set(self.rssm),
                 "model.rssm must not set action_dim, embed_dim or levels (fixed by the data).")
        for name in ("max_seg_len", "max_seg_num"):
            value = self.rssm.get(name)
            _require(value is None or value >= 1,
                     f"model.rssm.{name} must be >= 1 (or null), got {value}.")
        _check_options("model.loss", self.loss, WorldModelLoss.__init__)
        _check_window(self.init_size, self.seq_size, self.bits)


MODEL_SCHEMAS = {"original": OriginalModelConfig, "agent": AgentModelConfig}


@dataclass
class OptimConfig:
    """``optim``: Adam settings."""

    lr: float = 5e-4
    amsgrad: bool = True
    grad_clip: float = 10.0

    def __post_init__(self):
        _require(self.lr > 0, f"optim.lr must be > 0, got {self.lr}.")
        _require(self.grad_clip > 0, f"optim.grad_clip must be > 0, got {self.grad_clip}.")


@dataclass
class TemperatureConfig:
    """``temperature``: arguments of :class:`TemperatureSchedule`."""

    initial: float = 1.0
    final: float = 0.1
    decay: float = 0.999
    every: int = 100

    def __post_init__(self):
        TemperatureSchedule(self.initial, self.final, self.decay, self.every)


@dataclass
class EvalConfig:
    """``eval``: evaluation and image sizes."""

    batch_size: int = 32
    tolerances: list[int] = field(default_factory=lambda: [0, 1, 2])
    strip_sequences: int = 6
    generate_sequences: int = 4
    jumpy_steps: int = 8
    split: str = "heldout"

    def __post_init__(self):
        _require(self.split in ("heldout", "train"),
                 f"eval.split must be 'heldout' or 'train' (diagnosis only), got {self.split!r}.")
        _positive("eval", batch_size=self.batch_size, strip_sequences=self.strip_sequences,
                  generate_sequences=self.generate_sequences, jumpy_steps=self.jumpy_steps)
        _require(len(self.tolerances) > 0 and min(self.tolerances) >= 0,
                 f"eval.tolerances must be non-empty and >= 0, got {self.tolerances}.")


@dataclass
class RunConfig:
    """Top-level options (see ``configs/video/vta_video.yaml``)."""

    seed: int = 0
    device: str = "auto"
    threads: int = 1
    steps: int = 2000
    time_budget_min: Optional[float] = None
    batch_size: int = 16
    log_every: int = 50
    data_dir: str = "data"
    init_from: Optional[str] = None

    def __post_init__(self):
        _require(self.steps >= 0, f"steps must be >= 0, got {self.steps}.")
        _require(self.init_from is None or Path(to_absolute_path(self.init_from)).is_file(),
                 f"init_from={self.init_from!r} is not a file: give the model.pt of an earlier run.")
        _require(self.threads >= 0, f"threads must be >= 0, got {self.threads}.")
        _positive("run", batch_size=self.batch_size, log_every=self.log_every)
        _require(self.time_budget_min is None or self.time_budget_min > 0,
                 f"time_budget_min must be > 0 (or null), got {self.time_budget_min}.")
        _require(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
                 f"device must be auto, cpu, cuda[:i] or mps, got {self.device!r}.")


@dataclass
class VideoConfig:
    """The validated configuration: one typed object per section."""

    run: RunConfig
    dataset: DatasetConfig
    model: Any
    optim: OptimConfig
    temperature: TemperatureConfig
    eval: EvalConfig

    @property
    def window(self) -> int:
        """Frames per training window: context, modelled frames, context."""
        return 2 * self.model.init_size + self.model.seq_size


def validate_config(cfg: DictConfig) -> VideoConfig:
    """Check every option against its schema; raise ``ValueError`` naming the bad one.

    Example:
        >>> cfg = OmegaConf.create({"model": {"name": "original", "max_seg_len": 0}})
        >>> validate_config(cfg)
        Traceback (most recent call last):
        ...
        ValueError: model.max_seg_len must be >= 1 (or null), got 0.
        >>> validate_config(OmegaConf.create({"model": {"name": "agent"}})).window
        30
    """
    raw = OmegaConf.to_container(cfg, resolve=True)
    raw.pop("hydra", None)
    raw.pop("preset", None)
    model_name = raw.get("model", {}).get("name")
    _require(model_name in MODEL_SCHEMAS,
             f"model.name must be one of {sorted(MODEL_SCHEMAS)}, got {model_name!r}.")
    schemas = {"dataset": DatasetConfig, "model": MODEL_SCHEMAS[model_name],
               "optim": OptimConfig, "temperature": TemperatureConfig, "eval": EvalConfig}
    sections = {}
    for name, schema in schemas.items():
        sections[name] = _typed(name, schema, raw.pop(name, {}))
    config = VideoConfig(run=_typed("run", RunConfig, raw), **sections)
    _require(config.dataset.seq_len >= config.window,
             f"dataset.seq_len ({config.dataset.seq_len}) must be >= the model window "
             f"2 * init_size + seq_size = {config.window}.")
    return config


def _typed(section: str, schema, values: dict):
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        raise ValueError(f"invalid option in {section!r}: {error}") from None


# --------------------------------------------------------------------------- models
class Inference(NamedTuple):
    """Posterior boundaries of windows ``[N, T]``, the reconstructions ``[N, T, 3, H, W]``
    (uint8; black on the original model's context frames) and the per-step ``surprise``
    ``[N, T]``: the information the posterior takes in at each step,
    ``KL(q(s) || p(s)) + READ * KL(q(z) || p(z))`` in nats."""

    read: torch.Tensor
    prob: torch.Tensor
    forced: torch.Tensor
    reconstruction: torch.Tensor
    surprise: torch.Tensor


class OriginalVariant:
    """The original VTA behind the small interface the loop and evaluation use."""

    def __init__(self, config: OriginalModelConfig, device: torch.device):
        belief, feat, state = config.sizes()
        self.config = config
        self.model = OriginalVTA(
            belief_size=belief, feat_size=feat, state_size=state,
            latent_layers=config.latent_layers, boundary_layers=config.boundary_layers,
            max_seg_len=config.max_seg_len, max_seg_num=config.max_seg_num,
        ).to(device)
        self.module = OriginalVTAModule(self.model, init_size=config.init_size, bits=config.bits)
        self.loss = OriginalVTALoss(self.module, **config.loss)
        self.total = OriginalVTALoss.total
        self.policy = self.model.segment_policy

    def losses(self, pixels: torch.Tensor) -> TensorDict:
        return self.loss(TensorDict(pixels=pixels, batch_size=pixels.shape[:2]))

    def boundaries(self, pixels: torch.Tensor, forcing: bool) -> Inference:
        """Boundaries and reconstructions of whole windows (eval mode)."""
        obs = preprocess_pixels(pixels, self.config.bits, dequantize=False)
        with self.policy.limits("both" if forcing else "off"):
            out = self.model(obs, init_size=self.config.init_size)
        # Context frames are not reconstructed: show them black.
        reconstruction = torch.where(out.modelled[..., None, None], out.reconstruction, -1.0)
        model = self.model
        surprise = model.obs_posterior.kl(out.posterior_stats, out.prior_stats) + out.boundary[
            ..., 0] * model.abs_posterior.kl(out.abs_posterior_stats, out.abs_prior_stats)
        return Inference(
            out.boundary[..., 0].bool(), out.boundary_logits.softmax(-1)[..., READ],
            out.boundary_forced[..., 0], postprocess_pixels(reconstruction),
            surprise.reshape(out.boundary.shape[:-1]),
        )

    def generate(self, context: torch.Tensor, steps: int, mode: str):
        obs = preprocess_pixels(context, self.config.bits, dequantize=False)
        out = self.model.generate(obs, steps, mode=mode)
        return postprocess_pixels(out.frames), out.boundary[..., 0].bool()


class AgentVariant:
    """The agent world model (action-free) behind the same interface."""

    def __init__(self, config: AgentModelConfig, image_size: int, device: torch.device):
        self.config = config
        spec = Composite(pixels=Unbounded((3, image_size, image_size)))
        self.world_model = make_world_model(
            spec, Unbounded((0,)), preset=AGENT_SIZES[config.size], rssm=config.rssm,
            continue_head=False,
        ).to(device)
        self.rssm = self.world_model.rssm
        # Videos carry no reward: the reward head gets zero targets and zero weight.
        self.loss = WorldModelLoss(self.world_model, **{"reward_scale": 0.0, **config.loss})
        self.total = WorldModelLoss.total
        self.policy = self.rssm.segment_policy

    def _scaled(self, pixels: torch.Tensor) -> torch.Tensor:
        # The same 5-bit input as the original, on the [0, 1] scale of the agent decoder.
        x = preprocess_pixels(pixels, self.config.bits, dequantize=self.world_model.training)
        return (x + 1) / 2

    def _tensordict(self, pixels: torch.Tensor) -> TensorDict:
        batch, steps = pixels.shape[:2]
        zeros = torch.zeros(batch, steps, 1, device=pixels.device)
        is_init = torch.zeros(batch, steps, 1, dtype=torch.bool, device=pixels.device)
        is_init[:, 0] = True
        return TensorDict(
            {
                "action": torch.zeros(batch, steps, 0, device=pixels.device),
                "is_init": is_init,
                "next": {"pixels": self._scaled(pixels), "reward": zeros,
                         "terminated": zeros.bool()},
            },
            batch_size=[batch, steps],
        )

    def losses(self, pixels: torch.Tensor) -> TensorDict:
        return self.loss(self._tensordict(pixels))

    def boundaries(self, pixels: torch.Tensor, forcing: bool):
        with self.policy.limits("both" if forcing else "off"):
            td = self.world_model(self._tensordict(pixels))
        reconstruction = (td["next", "reco_pixels"].clamp(0, 1) * 255).round().to(torch.uint8)
        read = td["next", "boundary"][..., 0]
        if self.policy.kind == "surprise":
            # The criterion's score is the normalised surprise (its logits are hard).
            prob = self.policy.normalise(td["next", "obs_surprise"][..., 0])
        else:
            prob = td["next", "boundary_logits"].softmax(-1)[..., READ]
        surprise = self.rssm.obs_posterior.kl(
            td["next", "posterior_stats"], td["next", "prior_stats"]
        ).reshape(read.shape) + read * self.rssm.abs_posterior.kl(
            td["next", "abs_posterior_stats"], td["next", "abs_prior_stats"]
        ).reshape(read.shape)
        return Inference(
            read.bool(), prob, td["next", "boundary_forced"][..., 0], reconstruction, surprise,
        )

    def generate(self, context: torch.Tensor, steps: int, mode: str):
        batch, length = context.shape[:2]
        embed = self.world_model.encoder(self._scaled(context))
        no_action = embed.new_zeros(batch, length, 0)
        out = self.rssm.generate(embed, no_action, embed.new_zeros(batch, steps, 0), mode=mode)
        frames = self.world_model.decoder(out["obs_feature"])[0]
        return (frames.clamp(0, 1) * 255).round().to(torch.uint8), out["boundary"][..., 0].bool()


def make_variant(config: VideoConfig, device: torch.device):
    """Build the model named by ``config.model.name``."""
    if config.model.name == "original":
        return OriginalVariant(config.model, device)
    return AgentVariant(config.model, config.dataset.image_size, device)


def _parameters(variant) -> list[torch.nn.Parameter]:
    return list(variant.loss.parameters())


# --------------------------------------------------------------------------- data
def load_data(config: DatasetConfig, data_dir: Path):
    """``(train, eval)`` TensorDicts ``[N, T]`` cut from one cached dataset."""
    total = config.num_sequences + config.eval_sequences
    options = json.dumps(config.options, sort_keys=True)
    tag = hashlib.sha1(options.encode()).hexdigest()[:8]
    path = data_dir / (
        f"{config.name}_{total}x{config.seq_len}_{config.image_size}px_seed{config.seed}_{tag}"
    )
    data = load_or_generate(
        path, config.name, total, config.seq_len, seed=config.seed,
        image_size=config.image_size, **config.options,
    )
    data = data.select("pixels", "event").to_tensordict()
    return data[: config.num_sequences], data[config.num_sequences :]


def _windows(tensor: torch.Tensor, window: int) -> torch.Tensor:
    """Non-overlapping windows ``[N * k, window, ...]`` of sequences ``[N, T, ...]``.

    Example:
        >>> _windows(torch.zeros(2, 7, 3), 3).shape
        torch.Size([4, 3, 3])
    """
    count = tensor.shape[1] // window
    return tensor[:, : count * window].reshape(-1, window, *tensor.shape[2:])


# --------------------------------------------------------------------------- train
def train(variant, pixels: torch.Tensor, config: VideoConfig, device, logger) -> dict:
    """Adam on random windows; stops after ``steps`` or ``time_budget_min``."""
    run = config.run
    parameters = _parameters(variant)
    optimizer = torch.optim.Adam(parameters, lr=config.optim.lr, amsgrad=config.optim.amsgrad)
    variant.policy.schedule = TemperatureSchedule(**asdict(config.temperature))
    generator = torch.Generator().manual_seed(run.seed)
    window = config.window
    offsets = torch.arange(window)
    budget = None if run.time_budget_min is None else 60.0 * run.time_budget_min
    variant.loss.train()
    start = time.monotonic()
    last: dict = {}
    step = 0
    for step in range(run.steps):
        if budget is not None and time.monotonic() - start > budget:
            log.info("time budget of %.1f min reached after %d steps", run.time_budget_min, step)
            break
        index = torch.randint(pixels.shape[0], (run.batch_size, 1), generator=generator)
        first = torch.randint(pixels.shape[1] - window + 1, (run.batch_size, 1), generator=generator)
        batch = pixels[index, first + offsets].to(device)
        temperature = variant.policy.anneal(step)
        losses = variant.losses(batch)
        total = variant.total(losses)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.optim.grad_clip)
        optimizer.step()
        if step % run.log_every == 0 or step == run.steps - 1:
            last = {key: value.item() for key, value in losses.items()}
            last.update(total=total.item(), grad_norm=grad_norm.item(), temperature=temperature)
            for key, value in last.items():
                logger.log_scalar(key, value, step)
            log.info(
                "step %d | %.1f s | total %.1f | %s", step, time.monotonic() - start,
                last["total"], " ".join(f"{k} {v:.3g}" for k, v in sorted(last.items())
                                        if k not in ("total",)),
            )
    else:
        step = run.steps
    elapsed = time.monotonic() - start
    return {"steps_done": step, "train_time_s": elapsed,
            "seconds_per_step": elapsed / max(step, 1), "final_train_losses": last}


# --------------------------------------------------------------------------- evaluate
def _boundary_report(read, prob, forced, surprise, event, tolerances) -> dict:
    table = per_tolerance_table(read, event, tolerances, exclude=forced)
    count = (read & ~forced)[:, 1:].sum(-1)
    periodic = periodic_boundaries(read.shape, count=count)
    periodic_table = per_tolerance_table(periodic, event, tolerances)
    report = {
        "f1": {str(row["tolerance"]): row["f1"] for row in table},
        "precision": {str(row["tolerance"]): row["precision"] for row in table},
        "recall": {str(row["tolerance"]): row["recall"] for row in table},
        "auc": boundary_auc(prob, event, exclude=forced),
        # Does the model's own per-step information intake single out the events,
        # whatever the boundary detector does? (VPR reads its boundaries off this.)
        "surprise_auc": boundary_auc(surprise[:, 1:], event[:, 1:]),
        **boundary_rates(read, event, exclude=forced),
        # Where READs and scores sit relative to the labels (a constant offset costs F1 at
        # small tau but is a labelling question, not a placement failure).
        "offsets": {str(k): v for k, v in boundary_offsets(read, event, exclude=forced).items()},
        "score_profile": {str(k): v for k, v in event_triggered_average(prob, event).items()},
        "surprise_profile": {str(k): v for k, v in event_triggered_average(surprise, event).items()},
        "periodic_f1": {str(row["tolerance"]): row["f1"] for row in periodic_table},
        "table": table,
        "periodic_table": periodic_table,
    }
    return report


@torch.no_grad()
def evaluate(variant, data: TensorDict, config: VideoConfig, device) -> dict:
    """Held-out losses and boundary quality on the modelled frames of every window."""
    window, init, seq = config.window, config.model.init_size, config.model.seq_size
    pixels = _windows(data["pixels"], window)
    event = _windows(data["event"][..., 0], window)
    variant.loss.eval()
    totals: dict[str, float] = {}
    outputs = {True: [], False: []}
    size = config.eval.batch_size
    for begin in range(0, pixels.shape[0], size):
        batch = pixels[begin : begin + size].to(device)
        losses = variant.losses(batch)
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + value.item() * batch.shape[0]
        for forcing in outputs:
            inference = variant.boundaries(batch, forcing)
            outputs[forcing].append([inference.read.cpu(), inference.prob.cpu(), inference.forced.cpu(),
                                     inference.surprise.cpu()])
    modelled = slice(init, init + seq)
    event = event[:, modelled]
    report = {
        "eval_windows": pixels.shape[0],
        "eval_losses": {key: value / pixels.shape[0] for key, value in totals.items()},
    }
    for forcing, name in ((True, "forcing_on"), (False, "forcing_off")):
        read, prob, forced, surprise = (torch.cat(parts)[:, modelled] for parts in zip(*outputs[forcing]))
        report[name] = _boundary_report(read, prob, forced, surprise, event, config.eval.tolerances)
    return report


# --------------------------------------------------------------------------- images
_SCALE = 2
_GAP = 2
_BAR = 10
_LABEL = 64
_BLUE = (70, 140, 255)  # P(READ) heights; READ / forced / event use the package's colours


def _frame(image: np.ndarray, dim: bool = False) -> np.ndarray:
    """uint8 [3, H, W] -> upscaled [H', W', 3]; ``dim`` darkens context frames."""
    frame = image.transpose(1, 2, 0).repeat(_SCALE, 0).repeat(_SCALE, 1)
    return (frame * 0.45).astype(np.uint8) if dim else frame


class _Canvas:
    """Rows of frames with coloured marker bars, drawn with PIL."""

    def __init__(self, columns: int, frame_size: int, title: str):
        self.cell = frame_size * _SCALE + _GAP
        self.width = _LABEL + columns * self.cell
        self.rows: list[np.ndarray] = []
        self.labels: list[tuple[int, str]] = []
        self.title = title
        self.height = 14 * (title.count("\n") + 1) + 4

    def frames(self, label: str, frames: np.ndarray, dim=None, offset: int = 0) -> None:
        row = np.zeros((self.cell, self.width, 3), np.uint8)
        for i, image in enumerate(frames):
            x = _LABEL + (offset + i) * self.cell
            tile = _frame(image, bool(dim[i]) if dim is not None else False)
            row[: tile.shape[0], x : x + tile.shape[1]] = tile
        self._add(row, label)

    def bar(self, label: str, colours: list, heights=None) -> None:
        tall = 2 * _BAR if heights is not None else _BAR
        row = np.full((tall + _GAP, self.width, 3), 20, np.uint8)
        for i, colour in enumerate(colours):
            if colour is None:
                continue
            x = _LABEL + i * self.cell
            filled = tall if heights is None else max(1, round(float(heights[i]) * tall))
            row[tall - filled : tall, x : x + self.cell - _GAP] = colour
        self._add(row, label)

    def space(self, pixels: int = 8) -> None:
        self._add(np.zeros((pixels, self.width, 3), np.uint8), "")

    def _add(self, row: np.ndarray, label: str) -> None:
        self.labels.append((self.height + sum(r.shape[0] for r in self.rows), label))
        self.rows.append(row)

    def save(self, path: Path) -> None:
        rows = np.concatenate([np.zeros((self.height, self.width, 3), np.uint8), *self.rows])
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        title_width = int(max(probe.textlength(line) for line in self.title.split("\n"))) + 8
        image = Image.new("RGB", (max(self.width, title_width), rows.shape[0]))
        image.paste(Image.fromarray(rows), (0, 0))
        draw = ImageDraw.Draw(image)
        draw.multiline_text((4, 2), self.title, fill=(255, 255, 255), spacing=3)
        for y, label in self.labels:
            if label:
                draw.text((2, y), label, fill=(220, 220, 220))
        image.save(path)


def save_strip(variant, data: TensorDict, config: VideoConfig, device, path: Path) -> None:
    """Held-out windows: true events, frames, reconstructions, READ (forcing off), P(READ)."""
    count = config.eval.strip_sequences
    pixels = data["pixels"][:count, : config.window]
    event = data["event"][:count, : config.window, 0]
    with torch.no_grad():
        read, prob, forced, reconstruction, _ = (
            x.cpu() for x in variant.boundaries(pixels.to(device), False))
    init, seq = config.model.init_size, config.model.seq_size
    context = [not init <= t < init + seq for t in range(config.window)]
    canvas = _Canvas(config.window, pixels.shape[-1], (
        f"{config.dataset.name} / {config.model.name}: held-out windows, forcing off "
        f"(dimmed = context frames)\ngreen: true event | red: READ | orange: forced READ | "
        f"blue: posterior P(READ)"))
    for i in range(pixels.shape[0]):
        canvas.bar("event", [EVENT_COLOUR if e else None for e in event[i].tolist()])
        canvas.frames(f"seq {i}", pixels[i].numpy(), dim=context)
        canvas.frames("recon", reconstruction[i].numpy())
        canvas.bar("READ", [(FORCED_COLOUR if f else READ_COLOUR) if r else None
                            for r, f in zip(read[i].tolist(), forced[i].tolist())])
        canvas.bar("P(READ)", [_BLUE] * config.window, heights=prob[i].tolist())
        canvas.space()
    canvas.save(path)


def save_generation(variant, data: TensorDict, config: VideoConfig, device, mode: str,
                    path: Path) -> None:
    """Context frames, then ground truth (top) and generated frames (bottom)."""
    count, init = config.eval.generate_sequences, config.model.init_size
    context_len = max(init, 1)
    steps = config.model.seq_size if mode == "full" else config.eval.jumpy_steps
    pixels = data["pixels"][:count]
    event = data["event"][:count, :, 0]
    context = pixels[:, :context_len]
    with torch.no_grad():
        frames, read = (x.cpu() for x in variant.generate(context.to(device), steps, mode))
    if mode == "full":
        truth_label, what = "truth", "each frame"
    else:
        truth_label, what = "events", "first frame of each imagined segment"
    title = (f"{config.dataset.name} / {config.model.name}: {mode} generation after "
             f"{context_len} context frames (dimmed)\n"
             f"top: {'true continuation' if mode == 'full' else 'true frames at the next events'}"
             f" | bottom: generated, {what} | red: imagined READ")
    canvas = _Canvas(context_len + steps, pixels.shape[-1], title)
    dim = [True] * context_len + [False] * steps
    for i in range(count):
        if mode == "full":
            truth = pixels[i, context_len : context_len + steps]
        else:
            times = torch.nonzero(event[i, context_len:])[:, 0] + context_len
            truth = pixels[i, times[:steps]]
        canvas.frames(truth_label, np.concatenate([context[i].numpy(), truth.numpy()]), dim=dim)
        canvas.frames(mode, np.concatenate([context[i].numpy(), frames[i].numpy()]), dim=dim)
        canvas.bar("READ", [None] * context_len + [READ_COLOUR if r else None for r in read[i].tolist()])
        canvas.space()
    canvas.save(path)


# --------------------------------------------------------------------------- main
def run(config: VideoConfig, out_dir: Path) -> dict:
    """Train, evaluate and write every output into ``out_dir``; returns the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    device = select_device(config.run.device)
    train_data, eval_data = load_data(config.dataset, Path(to_absolute_path(config.run.data_dir)))
    if config.eval.split == "train":
        # Diagnosis on training windows: never tune on the held-out ones.
        eval_data = train_data[: eval_data.shape[0]]
    event_rate = float(train_data["event"][:, 1:].float().mean())
    log.info("%s: %d training / %d held-out sequences of %d frames, event rate %.3f, device %s",
             config.dataset.name, train_data.shape[0], eval_data.shape[0],
             config.dataset.seq_len, event_rate, device)
    variant = make_variant(config, device)
    log.info("%s model: %d parameters", config.model.name,
             sum(p.numel() for p in _parameters(variant)))
    if config.run.init_from is not None:
        # Same model options as the run that saved it; steps=0 only re-evaluates.
        variant.loss.load_state_dict(torch.load(to_absolute_path(config.run.init_from), map_location=device))
        log.info("loaded %s", config.run.init_from)
    logger = CSVLogger(exp_name="vta_video", log_dir=str(out_dir / "logs"))
    metrics = {"model": config.model.name, "dataset": config.dataset.name}
    metrics.update(train(variant, train_data["pixels"], config, device, logger))
    torch.save(variant.loss.state_dict(), out_dir / "model.pt")
    metrics.update(evaluate(variant, eval_data, config, device))
    save_strip(variant, eval_data, config, device, out_dir / "boundary_strip.png")
    for mode in ("full", "jumpy"):
        save_generation(variant, eval_data, config, device, mode,
                        out_dir / f"generation_{mode}.png")
    metrics["config"] = {"run": asdict(config.run), "dataset": asdict(config.dataset),
                         "model": asdict(config.model), "optim": asdict(config.optim),
                         "temperature": asdict(config.temperature), "eval": asdict(config.eval)}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    for name in ("forcing_on", "forcing_off"):
        report = metrics[name]
        log.info("%s: F1 %s | periodic F1 %s | AUC %.3f | surprise AUC %.3f | boundary rate %.3f "
                 "vs event rate %.3f", name, {k: round(v, 3) for k, v in report["f1"].items()},
                 {k: round(v, 3) for k, v in report["periodic_f1"].items()}, report["auc"],
                 report["surprise_auc"], report["boundary_rate"], report["event_rate"])
        log.info("%s: READ offsets to the nearest event %s | score by lag %s", name,
                 report["offsets"], {k: round(v, 3) for k, v in report["score_profile"].items()})
    log.info("outputs in %s: %s", out_dir, sorted(p.name for p in out_dir.iterdir()))
    return metrics


@hydra.main(config_path="../configs/video", config_name="vta_video", version_base=None)
def main(cfg: DictConfig) -> None:
    config = validate_config(cfg)
    run(config, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
