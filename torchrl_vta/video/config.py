"""The typed configuration of a video-model experiment (``configs/video``): one dataclass
per section, each checking its options where it is built, and :func:`validate_config`,
which builds them all from a Hydra/OmegaConf config or a plain dict, so a bad option fails
naming itself before any data is generated.

Example:
    >>> config = validate_config({"model": {"name": "agent", "size": "tiny"}})
    >>> config.window, config.dataset.name
    (30, 'balls')
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from torchrl_vta.envs.datasets import registered_datasets
from torchrl_vta.modules.boundary_ops import TemperatureSchedule
from torchrl_vta.modules.decoders import MultiDecoder
from torchrl_vta.modules.encoders import MultiEncoder
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.original import OriginalVTALoss
from torchrl_vta.objectives.world_model_loss import WorldModelLoss

__all__ = [
    "AGENT_SIZES",
    "ORIGINAL_SIZES",
    "AgentModelConfig",
    "DatasetConfig",
    "EvalConfig",
    "OptimConfig",
    "OriginalModelConfig",
    "RunConfig",
    "TemperatureConfig",
    "VideoConfig",
    "validate_config",
]


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
        _require(self.name in registered_datasets(),
                 f"dataset.name must be one of {registered_datasets()} (register_dataset adds "
                 f"one), got {self.name!r}.")
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


def _check_options(section: str, options: dict, target, reserved: tuple = ()) -> None:
    """``options`` must be keyword arguments of ``target``, none of them in ``reserved``
    (the arguments the video model sets itself)."""
    valid = set(inspect.signature(target).parameters) - {"self"}
    unknown = sorted(set(options) - valid)
    _require(not unknown, f"{section} has unknown option(s) {unknown}; valid: "
                          f"{sorted(valid - set(reserved))}.")
    fixed = sorted(set(options) & set(reserved))
    _require(not fixed, f"{section} must not set {fixed}: the data and the model fix them "
                        f"(the number of levels is model.levels).")


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
        _check_options("model.loss", self.loss, OriginalVTALoss.__init__, ("vta",))
        _check_window(self.init_size, self.seq_size, self.bits)

    def sizes(self) -> tuple[int, int, int]:
        """(belief, feat, state) after the explicit overrides."""
        preset = ORIGINAL_SIZES[self.size]
        explicit = (self.belief_size, self.feat_size, self.state_size)
        return tuple(p if e is None else e for p, e in zip(preset, explicit))


@dataclass
class AgentModelConfig:
    """``model=agent``: HierarchicalRSSM world model with ``levels`` (>= 2) levels;
    ``encoder``/``rssm``/``decoder``/``loss`` pass options through (over the size preset).

    Example:
        >>> AgentModelConfig(rssm={"max_seg_len": 8}, encoder={"cnn_mults": [2, 3, 4]}).encoder
        {'cnn_mults': [2, 3, 4]}
    """

    name: str = "agent"
    size: str = "cpu"
    levels: int = 2
    encoder: dict[str, Any] = field(default_factory=dict)
    rssm: dict[str, Any] = field(default_factory=dict)
    decoder: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    init_size: int = 5
    seq_size: int = 20
    bits: int = 5

    def __post_init__(self):
        _require(self.size in AGENT_SIZES,
                 f"model.size must be one of {sorted(AGENT_SIZES)}, got {self.size!r}.")
        _require(isinstance(self.levels, int) and not isinstance(self.levels, bool)
                 and self.levels >= 2,
                 f"model.levels must be an int >= 2 (a video model needs boundaries), "
                 f"got {self.levels!r}.")
        _check_options("model.encoder", self.encoder, MultiEncoder.__init__,
                       ("obs_spec", "device"))
        _check_options("model.decoder", self.decoder, MultiDecoder.from_encoder,
                       ("encoder", "in_features", "device"))
        _check_options("model.rssm", self.rssm, HierarchicalRSSM.__init__,
                       ("action_dim", "embed_dim", "levels"))
        for name in ("max_seg_len", "max_seg_num"):
            value = self.rssm.get(name)
            _require(value is None or value >= 1,
                     f"model.rssm.{name} must be >= 1 (or null), got {value}.")
        _check_options("model.loss", self.loss, WorldModelLoss.__init__, ("world_model",))
        _check_window(self.init_size, self.seq_size, self.bits)


MODEL_SCHEMAS = {"original": OriginalModelConfig, "agent": AgentModelConfig}


@dataclass
class OptimConfig:
    """``optim``: Adam settings.

    Example:
        >>> OptimConfig(lr=1e-3).amsgrad
        True
    """

    lr: float = 5e-4
    amsgrad: bool = True
    grad_clip: float = 10.0

    def __post_init__(self):
        _require(self.lr > 0, f"optim.lr must be > 0, got {self.lr}.")
        _require(self.grad_clip > 0, f"optim.grad_clip must be > 0, got {self.grad_clip}.")


@dataclass
class TemperatureConfig:
    """``temperature``: arguments of :class:`TemperatureSchedule`.

    Example:
        >>> TemperatureConfig(final=0.5).initial
        1.0
    """

    initial: float = 1.0
    final: float = 0.1
    decay: float = 0.999
    every: int = 100

    def __post_init__(self):
        TemperatureSchedule(self.initial, self.final, self.decay, self.every)


@dataclass
class EvalConfig:
    """``eval``: evaluation and image sizes.

    Example:
        >>> EvalConfig().tolerances
        [0, 1, 2]
    """

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
    """Top-level options (see ``configs/video/vta_video.yaml``).

    Example:
        >>> RunConfig(steps=0).batch_size
        16
    """

    seed: int = 0
    device: str = "auto"
    threads: int = 1
    steps: int = 2000
    time_budget_min: Optional[float] = None
    batch_size: int = 16
    log_every: int = 50
    data_dir: str = "data"
    init_from: Optional[str] = None
    resume: bool = False
    checkpoint_every_min: Optional[float] = 10.0

    def __post_init__(self):
        _require(self.steps >= 0, f"steps must be >= 0, got {self.steps}.")
        _require(self.init_from is None or Path(self.init_from).is_file(),
                 f"init_from={self.init_from!r} is not a file: give the model.pt of an earlier run.")
        _require(self.threads >= 0, f"threads must be >= 0, got {self.threads}.")
        _positive("run", batch_size=self.batch_size, log_every=self.log_every)
        _require(self.time_budget_min is None or self.time_budget_min > 0,
                 f"time_budget_min must be > 0 (or null), got {self.time_budget_min}.")
        _require(self.checkpoint_every_min is None or self.checkpoint_every_min > 0,
                 f"checkpoint_every_min must be > 0 (or null: only when training ends), got "
                 f"{self.checkpoint_every_min}.")
        _require(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
                 f"device must be auto, cpu, cuda[:i] or mps, got {self.device!r}.")


@dataclass
class VideoConfig:
    """The validated configuration: one typed object per section.

    Example:
        >>> validate_config({"model": {"name": "original", "seq_size": 10}}).window
        20
    """

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


def validate_config(cfg) -> VideoConfig:
    """Check every option of ``cfg`` (a dict or an OmegaConf config, as Hydra composes
    ``configs/video``) against its schema; raise ``ValueError`` naming the bad one.

    Example:
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.create({"model": {"name": "original", "max_seg_len": 0}})
        >>> validate_config(cfg)
        Traceback (most recent call last):
        ...
        ValueError: model.max_seg_len must be >= 1 (or null), got 0.
        >>> validate_config(OmegaConf.create({"model": {"name": "agent"}})).window
        30
    """
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
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
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        raise ValueError(f"invalid option in {section!r}: {error}") from None


