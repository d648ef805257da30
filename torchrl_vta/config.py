"""Typed configuration of the training recipe (plain dataclasses, no Hydra).

``examples/vta_dreamer.py`` registers :class:`RecipeConfig` as the schema of its
Hydra config, so a misspelled key or a value of the wrong type fails at start-up;
:meth:`RecipeConfig.validate` then checks ranges and choices, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "CheckpointConfig",
    "CollectorConfig",
    "EnvConfig",
    "EvalConfig",
    "LoggerConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RecipeConfig",
    "ReplayConfig",
]

LOGGER_BACKENDS = ("csv", "wandb", "tensorboard", "none")
STORAGES = ("memmap", "memory")


@dataclass
class EnvConfig:
    """Which env (``make_env`` name) and its options."""

    name: str = "dmc"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Network sizes: a preset plus per-part overrides (see ``make_world_model``)."""

    preset: str = "cpu"
    levels: int = 2
    encoder: dict[str, Any] = field(default_factory=dict)
    rssm: dict[str, Any] = field(default_factory=dict)
    decoder: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    actor: dict[str, Any] = field(default_factory=dict)
    critic: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """World-model loss options and imagination actor-critic hyperparameters."""

    world_model: dict[str, Any] = field(default_factory=dict)
    horizon: int = 15
    gamma: float = 1 - 1 / 333
    lmbda: float = 0.95
    entropy_coef: float = 3e-4
    actor_gradient: str = "auto"
    slow_critic: float = 1.0
    slow_critic_tau: float = 0.02
    replay_value_scale: float = 0.0
    temperature_final: Optional[float] = None
    temperature_decay_every: int = 100


@dataclass
class OptimConfig:
    """``adam`` (three Adams, DreamerV3 2023) or ``dreamerv3`` (TorchRL's LaProp + AGC)."""

    kind: str = "adam"
    model_lr: float = 1e-4
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    model_clip: float = 1000.0
    actor_clip: float = 100.0
    critic_clip: float = 100.0


@dataclass
class ReplayConfig:
    """Replay buffer: capacity in env steps, batch of ``batch_size`` slices of ``seq_len``."""

    capacity: int = 200_000
    batch_size: int = 16
    seq_len: int = 64
    storage: str = "memmap"


@dataclass
class CollectorConfig:
    """Collection: env steps in total, random prefill, per batch; replayed steps per env step."""

    total_frames: int = 100_000
    init_random_frames: int = 2_500
    frames_per_batch: int = 50
    num_envs: int = 1
    train_ratio: float = 512.0


@dataclass
class EvalConfig:
    """Deterministic evaluation and the pictures written with it."""

    every_frames: int = 10_000
    episodes: int = 1
    max_steps: int = 1000
    video: bool = True
    openloop_context: int = 16


@dataclass
class CheckpointConfig:
    """Checkpoint (agent, learner, counters, replay) every ``every_frames`` env steps."""

    every_frames: int = 10_000
    replay: bool = True


@dataclass
class LoggerConfig:
    """``csv`` (default), ``wandb`` (``mode`` offline/online), ``tensorboard`` or ``none``."""

    backend: str = "csv"
    project: str = "torchrl_vta"
    mode: str = "offline"
    log_every: int = 10


@dataclass
class RecipeConfig:
    """The whole recipe configuration.

    Examples:
        >>> cfg = RecipeConfig()
        >>> cfg.validate().env.name
        'dmc'
        >>> cfg.replay.batch_size = 0
        >>> cfg.validate()
        Traceback (most recent call last):
        ...
        ValueError: replay.batch_size must be >= 1, got 0.
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    compile_mode: Optional[str] = None
    autocast: Optional[str] = None
    output_dir: Optional[str] = None
    resume: bool = False

    def validate(self) -> "RecipeConfig":
        """Check ranges and choices; raise ``ValueError`` naming the key and the fix."""
        from torchrl_vta.envs import registered_envs
        from torchrl_vta.modules.world_model import PRESETS
        from torchrl_vta.agent import OPTIMIZERS

        def at_least(name: str, value, minimum) -> None:
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}.")

        def one_of(name: str, value, choices) -> None:
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}.")

        one_of("env.name", self.env.name, registered_envs())
        one_of("model.preset", self.model.preset, PRESETS)
        one_of("model.levels", self.model.levels, (1, 2))
        one_of("optim.kind", self.optim.kind, OPTIMIZERS)
        one_of("replay.storage", self.replay.storage, STORAGES)
        one_of("logger.backend", self.logger.backend, LOGGER_BACKENDS)
        one_of("logger.mode", self.logger.mode, ("offline", "online"))
        one_of("device", self.device.split(":")[0], ("auto", "cpu", "cuda", "mps"))
        if self.compile_mode is not None:
            one_of("compile_mode", self.compile_mode,
                   ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
        if self.autocast is not None:
            one_of("autocast", self.autocast, ("bf16",))
        for name in ("replay.batch_size", "replay.seq_len", "collector.frames_per_batch",
                     "collector.num_envs", "loss.horizon", "eval.episodes", "eval.max_steps",
                     "eval.every_frames", "checkpoint.every_frames", "logger.log_every",
                     "collector.total_frames"):
            section, key = name.split(".")
            at_least(name, getattr(getattr(self, section), key), 1)
        at_least("collector.init_random_frames", self.collector.init_random_frames, 0)
        at_least("collector.train_ratio", self.collector.train_ratio, 0)
        at_least("replay.capacity", self.replay.capacity, self.replay.seq_len)
        for name in ("model_lr", "actor_lr", "critic_lr"):
            if not getattr(self.optim, name) > 0:
                raise ValueError(f"optim.{name} must be > 0, got {getattr(self.optim, name)}.")
        if not 0 < self.loss.gamma <= 1:
            raise ValueError(f"loss.gamma must be in (0, 1], got {self.loss.gamma}.")
        if not 0 <= self.loss.lmbda <= 1:
            raise ValueError(f"loss.lmbda must be in [0, 1], got {self.loss.lmbda}.")
        if self.eval.openloop_context >= self.replay.seq_len:
            raise ValueError(
                f"eval.openloop_context ({self.eval.openloop_context}) must be smaller than "
                f"replay.seq_len ({self.replay.seq_len})."
            )
        if self.resume and not self.output_dir:
            raise ValueError("resume=true needs output_dir=<the run directory to resume>.")
        return self
