"""Typed configuration of the training recipe (plain dataclasses, no Hydra).

``examples/vta_dreamer.py`` registers :class:`RecipeConfig` as the schema of its
Hydra config, so a misspelled key or a value of the wrong type fails at start-up;
:meth:`RecipeConfig.validate` then checks ranges and choices, naming the key.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "CheckpointConfig",
    "CollectorConfig",
    "EnvConfig",
    "EvalConfig",
    "ExploreConfig",
    "LearnerConfig",
    "LoggerConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RecipeConfig",
    "ReplayConfig",
]

log = logging.getLogger(__name__)

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


def _learner_default(name: str):
    """The default of :class:`~torchrl_vta.learner.Learner`'s argument ``name``: the learner's
    signature is the one source of these defaults."""
    from torchrl_vta.learner import Learner

    return inspect.signature(Learner.__init__).parameters[name].default


#: Config field -> :class:`~torchrl_vta.learner.Learner` argument, per section (what
#: :func:`~torchrl_vta.recipe.make_learner` passes through, and where the defaults come from).
LEARNER_ARGUMENTS = {
    "loss": {"horizon": "horizon", "gamma": "gamma", "lmbda": "lmbda",
             "entropy_coef": "entropy_coef", "actor_gradient": "actor_gradient",
             "slow_critic": "slow_critic", "slow_critic_tau": "slow_critic_tau",
             "replay_value_scale": "replay_value_scale"},
    "optim": {"kind": "optimizer", "model_lr": "model_lr", "actor_lr": "actor_lr",
              "critic_lr": "critic_lr", "model_clip": "model_clip", "actor_clip": "actor_clip",
              "critic_clip": "critic_clip", "max_skipped_updates": "max_skipped_updates"},
}


@dataclass
class LossConfig:
    """World-model loss options and imagination actor-critic hyperparameters (defaults:
    :class:`~torchrl_vta.learner.Learner`'s)."""

    world_model: dict[str, Any] = field(default_factory=dict)
    horizon: int = _learner_default("horizon")
    gamma: float = _learner_default("gamma")
    lmbda: float = _learner_default("lmbda")
    entropy_coef: float = _learner_default("entropy_coef")
    actor_gradient: str = _learner_default("actor_gradient")
    slow_critic: float = _learner_default("slow_critic")
    slow_critic_tau: float = _learner_default("slow_critic_tau")
    replay_value_scale: float = _learner_default("replay_value_scale")
    temperature_final: Optional[float] = None
    temperature_decay_every: int = 100


@dataclass
class OptimConfig:
    """``adam`` (three Adams, DreamerV3 2023) or ``dreamerv3`` (TorchRL's LaProp + AGC);
    defaults: :class:`~torchrl_vta.learner.Learner`'s."""

    kind: str = _learner_default("optimizer")
    model_lr: float = _learner_default("model_lr")
    actor_lr: float = _learner_default("actor_lr")
    critic_lr: float = _learner_default("critic_lr")
    model_clip: float = _learner_default("model_clip")
    actor_clip: float = _learner_default("actor_clip")
    critic_clip: float = _learner_default("critic_clip")
    #: Stop with an error after this many consecutive updates with a non-finite part.
    max_skipped_updates: int = _learner_default("max_skipped_updates")


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
    #: local | multiprocess | distributed | ray (torchrl_vta.collectors); null: local for
    #: one env, multiprocess for several.
    backend: Optional[str] = None
    #: distributed / ray: batches between two weight syncs of the acting policy.
    sync_every: int = 1


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
class LearnerConfig:
    """Data-parallel learning: ``ddp=true`` under ``torchrun --nproc_per_node=N`` makes every
    process one rank (its own envs, collector and replay shard; gradients averaged over the
    ranks; rank 0 logs, evaluates and checkpoints). ``collector.total_frames`` and the
    frame intervals count every rank's frames; ``replay.batch_size`` is per rank (the
    effective batch is N times it) and ``collector.train_ratio`` keeps its meaning.
    ``backend``: ``gloo`` (CPU) or ``nccl`` (CUDA); ``null`` picks by device."""

    ddp: bool = False
    backend: Optional[str] = None


@dataclass
class ExploreConfig:
    """Plan2Explore (:class:`~torchrl_vta.objectives.Plan2Explore`).

    ``mode``: ``off`` (the task reward only), ``reward_free`` (the actor follows the
    ensemble's disagreement alone) or ``mixed`` (both critics). ``None`` leaves an option
    at the module's default: ``members`` 8, ``target`` ``embed`` (or ``state``),
    ``layers``/``units`` the preset's head sizes, ``hierarchical`` false (true: also the
    next-segment disagreement at READs, ``levels=2``), ``abs_scale`` 1, weights by mode
    (``reward_free`` 0 / 1, ``mixed`` 1 / 0.1), ``lr`` 1e-4, ``clip`` 100."""

    mode: str = "off"
    members: Optional[int] = None
    target: Optional[str] = None
    layers: Optional[int] = None
    units: Optional[int] = None
    hierarchical: Optional[bool] = None
    abs_scale: Optional[float] = None
    extrinsic_scale: Optional[float] = None
    intrinsic_scale: Optional[float] = None
    lr: Optional[float] = None
    clip: Optional[float] = None

    def module_options(self) -> dict[str, Any]:
        """The options set for :class:`~torchrl_vta.objectives.Plan2Explore`.

        Examples:
            >>> ExploreConfig(mode="mixed", members=4, hierarchical=True).module_options()
            {'members': 4, 'hierarchical': True}
        """
        names = ("members", "target", "layers", "units", "hierarchical", "abs_scale")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


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
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    #: A run directory (or its checkpoints/) whose newest agent (and Plan2Explore parts,
    #: where both runs have them) this run starts from: task fine-tuning after reward-free
    #: pretraining. Only the weights: optimisers, counters and replay start afresh.
    init_from: Optional[str] = None
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    compile_mode: Optional[str] = None
    autocast: Optional[str] = None
    output_dir: Optional[str] = None
    resume: bool = False
    #: Start over in a non-empty output_dir, deleting the previous run's outputs.
    overwrite: bool = False
    #: torch intra-op threads; 0 = auto (half the usable cores, 1 to 8).
    threads: int = 0

    def validate(self) -> "RecipeConfig":
        """Check ranges and choices (:func:`~torchrl_vta.config_checks.validate_recipe`);
        raise ``ValueError`` naming the key and the fix. Returns ``self``."""
        from torchrl_vta.config_checks import validate_recipe

        validate_recipe(self)
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RecipeConfig":
        """A config from nested plain values (e.g. the one saved in a checkpoint).

        Examples:
            >>> RecipeConfig.from_dict({"seed": 3, "replay": {"batch_size": 4}}).replay.batch_size
            4
        """
        cfg = cls()
        for key, value in values.items():
            current = getattr(cfg, key, dataclasses.MISSING)
            if current is dataclasses.MISSING:
                log.warning("Ignoring unknown config key %r.", key)
            elif dataclasses.is_dataclass(current):
                for sub, sub_value in value.items():
                    if hasattr(current, sub):
                        setattr(current, sub, sub_value)
                    else:
                        log.warning("Ignoring unknown config key %r.", f"{key}.{sub}")
            else:
                setattr(cfg, key, value)
        return cfg
