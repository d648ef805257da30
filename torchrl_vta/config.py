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
from typing import Any, Iterable, Optional

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
    "SAFE_ON_RESUME",
    "flatten_config",
    "resume_config",
]

log = logging.getLogger(__name__)

#: Keys a resumed run may change (a trailing ``.`` means the whole section).
SAFE_ON_RESUME = ("collector.total_frames", "collector.backend", "collector.sync_every", "logger.", "eval.", "checkpoint.every_frames",
                  "device", "threads", "compile", "compile_mode", "resume", "output_dir",
                  "overwrite")

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
    """The default of :class:`~torchrl_vta.agent.Learner`'s argument ``name``: the learner's
    signature is the one source of these defaults."""
    from torchrl_vta.agent import Learner

    return inspect.signature(Learner.__init__).parameters[name].default


#: Config field -> :class:`~torchrl_vta.agent.Learner` argument, per section (what
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
    :class:`~torchrl_vta.agent.Learner`'s)."""

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
    defaults: :class:`~torchrl_vta.agent.Learner`'s."""

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
        self._check_env_options()
        one_of("model.preset", self.model.preset, PRESETS)
        one_of("model.levels", self.model.levels, (1, 2))
        self._check_model_options()
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
        if self.learner.backend is not None:
            one_of("learner.backend", self.learner.backend, ("gloo", "nccl"))
        self._check_collector_backend()
        self._check_explore()
        if self.init_from is not None:
            from torchrl_vta.pretrained import pretrained_checkpoints

            pretrained_checkpoints(self.init_from)
        for name in ("replay.batch_size", "replay.seq_len", "collector.frames_per_batch",
                     "collector.num_envs", "loss.horizon", "eval.episodes", "eval.max_steps",
                     "eval.every_frames", "checkpoint.every_frames", "logger.log_every",
                     "collector.total_frames", "optim.max_skipped_updates"):
            section, key = name.split(".")
            at_least(name, getattr(getattr(self, section), key), 1)
        at_least("collector.init_random_frames", self.collector.init_random_frames, 0)
        at_least("threads", self.threads, 0)
        if not self.collector.train_ratio > 0:
            raise ValueError(
                f"collector.train_ratio={self.collector.train_ratio} trains nothing: set "
                "collector.train_ratio > 0 (replayed steps per env step, e.g. 32)."
            )
        if self.collector.init_random_frames >= self.collector.total_frames:
            raise ValueError(
                f"collector.init_random_frames ({self.collector.init_random_frames}) >= "
                f"collector.total_frames ({self.collector.total_frames}): the run would end "
                "before its first update. Lower collector.init_random_frames or raise "
                "collector.total_frames."
            )
        at_least("replay.capacity", self.replay.capacity, self.replay.seq_len)
        for name in ("model_lr", "actor_lr", "critic_lr", "model_clip", "actor_clip", "critic_clip"):
            if not getattr(self.optim, name) > 0:
                raise ValueError(f"optim.{name} must be > 0, got {getattr(self.optim, name)}"
                                 + (" (a clip of 0 zeroes every gradient)." if "clip" in name else "."))
        if not 0 < self.loss.gamma <= 1:
            raise ValueError(f"loss.gamma must be in (0, 1], got {self.loss.gamma}.")
        if not 0 <= self.loss.lmbda <= 1:
            raise ValueError(f"loss.lmbda must be in [0, 1], got {self.loss.lmbda}.")
        if self.eval.openloop_context >= self.replay.seq_len:
            raise ValueError(
                f"eval.openloop_context ({self.eval.openloop_context}) must be smaller than "
                f"replay.seq_len ({self.replay.seq_len})."
            )
        episode = self._episode_length()
        if episode is not None and episode < self.replay.seq_len:
            raise ValueError(
                f"replay.seq_len ({self.replay.seq_len}) is longer than every episode of env "
                f"{self.env.name!r} ({episode} steps): lower replay.seq_len or raise "
                "env.options.max_steps."
            )
        if self.replay.batch_size * self.replay.seq_len > self.replay.capacity:
            log.warning("replay.batch_size x replay.seq_len (%d) exceeds replay.capacity (%d): "
                        "each batch repeats stored steps.",
                        self.replay.batch_size * self.replay.seq_len, self.replay.capacity)
        if self.resume and not self.output_dir:
            raise ValueError("resume=true needs output_dir=<the run directory to resume>.")
        if self.resume and self.overwrite:
            raise ValueError("resume=true and overwrite=true exclude each other: pick one.")
        if self.device != "auto":
            from torchrl_vta.recipe import select_device

            select_device(self.device)
        return self

    def _check_collector_backend(self) -> None:
        import importlib.util

        from torchrl_vta.collectors import BACKENDS

        backend = self.collector.backend
        if self.collector.sync_every < 1:
            raise ValueError(f"collector.sync_every must be >= 1, got {self.collector.sync_every}.")
        if backend is None:
            return
        if backend not in BACKENDS:
            raise ValueError(f"collector.backend={backend!r} is not one of {list(BACKENDS)} "
                             "(or null: local for one env, multiprocess for several).")
        if backend == "distributed" and self.learner.ddp:
            raise ValueError(
                "collector.backend=distributed and learner.ddp=true both need this process's "
                "default torch.distributed group: with learner.ddp=true use "
                "collector.backend=local|multiprocess (every rank collects its own data)."
            )
        if backend == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError("collector.backend=ray needs Ray: pip install 'torchrl_vta[ray]', or "
                             "use collector.backend=multiprocess|distributed.")

    def _check_explore(self) -> None:
        from torchrl_vta.objectives.exploration import EXPLORE_TARGETS, mode_scales

        explore = self.explore
        mode_scales(explore.mode, explore.extrinsic_scale, explore.intrinsic_scale)
        if explore.mode == "off":
            given = sorted(k for k, v in dataclasses.asdict(explore).items()
                           if k != "mode" and v is not None)
            if given:
                raise ValueError(f"explore.{given[0]} is set but explore.mode=off: set "
                                 "explore.mode=reward_free|mixed, or drop the explore options.")
            return
        if explore.members is not None and (isinstance(explore.members, bool)
                                            or explore.members < 2):
            raise ValueError(f"explore.members must be an int >= 2 (a disagreement needs two "
                             f"members), got {explore.members!r}.")
        if explore.target is not None and explore.target not in EXPLORE_TARGETS:
            raise ValueError(f"explore.target={explore.target!r} is not one of "
                             f"{list(EXPLORE_TARGETS)}.")
        for name in ("layers", "units"):
            value = getattr(explore, name)
            if value is not None and value < (0 if name == "layers" else 1):
                raise ValueError(f"explore.{name} must be >= {0 if name == 'layers' else 1}, "
                                 f"got {value}.")
        for name in ("lr", "clip"):
            value = getattr(explore, name)
            if value is not None and not value > 0:
                raise ValueError(f"explore.{name} must be > 0, got {value}.")
        if explore.abs_scale is not None and not explore.abs_scale >= 0:
            raise ValueError(f"explore.abs_scale must be >= 0, got {explore.abs_scale}.")
        if explore.hierarchical and self.model.levels < 2:
            raise ValueError("explore.hierarchical=true needs segments: use model.levels=2, or "
                             "explore.hierarchical=false.")

    def _check_env_options(self) -> None:
        from torchrl_vta.envs.registry import env_options

        defaults = env_options(self.env.name)
        for key, value in self.env.options.items():
            default = defaults.get(key)
            if default is None or value is None:
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, (int, float)):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                ok = ok and (isinstance(default, float) or float(value).is_integer())
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ValueError(
                    f"env.options.{key}={value!r} ({type(value).__name__}) should be a "
                    f"{type(default).__name__} like {default!r}."
                )

    def _check_model_options(self) -> None:
        import inspect

        from torchrl_vta.modules import ContinueHead, MultiDecoder, MultiEncoder, RewardHead
        from torchrl_vta.modules.actor import make_actor
        from torchrl_vta.modules.rssm import HierarchicalRSSM
        from torchrl_vta.objectives import WorldModelLoss, make_value_model

        def names(*fns) -> set:
            sets = []
            for fn in fns:
                params = inspect.signature(fn).parameters.values()
                if any(p.kind is p.VAR_KEYWORD for p in params):
                    return set()  # takes anything
                sets.append({p.name for p in params} - {"self"})
            return set.intersection(*sets)

        checks = {
            "model.encoder": (self.model.encoder, names(MultiEncoder.__init__), {"obs_spec", "device"}),
            "model.rssm": (self.model.rssm, names(HierarchicalRSSM.__init__),
                           {"action_dim", "embed_dim", "levels"}),
            "model.decoder": (self.model.decoder, names(MultiDecoder.from_encoder),
                              {"encoder", "in_features", "device"}),
            "model.head": (self.model.head, names(RewardHead.__init__, ContinueHead.__init__),
                           {"in_features", "device"}),
            "model.actor": (self.model.actor, names(make_actor), {"action_spec", "feature_dim"}),
            "model.critic": (self.model.critic, names(make_value_model), {"feature_dim"}),
            "loss.world_model": (self.loss.world_model, names(WorldModelLoss.__init__),
                                 {"world_model"}),
        }
        for section, (options, valid, reserved) in checks.items():
            if not valid:
                continue
            valid = valid - reserved
            unknown = sorted(set(options) - valid)
            if unknown:
                raise ValueError(
                    f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                    f"valid keys of {section}: {', '.join(sorted(valid))}."
                )

    def _episode_length(self) -> int | None:
        """Env steps of the longest possible episode, where the options say it."""
        from torchrl_vta.envs.registry import env_options

        options = {**env_options(self.env.name), **self.env.options}
        if options.get("max_steps") is not None:
            return int(options["max_steps"])
        if self.env.name == "dmc":  # dm_control suite tasks: 1000 control steps
            return 1000 // int(options.get("action_repeat") or 1)
        return None

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


def flatten_config(cfg) -> dict[str, Any]:
    """Dotted leaf keys of a config (a dataclass or nested dicts).

    Examples:
        >>> flatten_config({"env": {"name": "dmc", "options": {"task": "x"}}, "seed": 0})
        {'env.name': 'dmc', 'env.options.task': 'x', 'seed': 0}
    """
    if dataclasses.is_dataclass(cfg):
        cfg = dataclasses.asdict(cfg)
    flat: dict[str, Any] = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(cfg, "")
    return flat


def _safe_on_resume(key: str) -> bool:
    return any(key == safe or (safe.endswith(".") and key.startswith(safe)) for safe in SAFE_ON_RESUME)


def resume_config(saved: dict[str, Any], requested: RecipeConfig,
                  changed: Iterable[str] | None = None) -> RecipeConfig:
    """The config of a resumed run: the run's ``saved`` config plus the safe changes.

    ``changed`` are the keys the user set for this launch (``None``: every key of
    ``requested`` that differs from ``saved``). A changed key outside
    :data:`SAFE_ON_RESUME` whose value differs from the saved one raises
    ``ValueError`` naming it.

    Examples:
        >>> saved = dataclasses.asdict(RecipeConfig())
        >>> requested = RecipeConfig(resume=True, output_dir="run")
        >>> requested.collector.total_frames = 5
        >>> resume_config(saved, requested).collector.total_frames
        5
        >>> requested.replay.seq_len = 7
        >>> resume_config(saved, requested)
        Traceback (most recent call last):
        ...
        ValueError: resume=true continues a run with its saved config; ...replay.seq_len (64 in the run, 7 given)...
    """
    saved_flat, wanted = flatten_config(saved), flatten_config(requested)
    keys = set(changed) if changed is not None else set(wanted)
    conflicts, applied = [], {}
    for key in sorted(keys):
        if key not in wanted:
            continue
        if key in saved_flat and wanted[key] == saved_flat[key]:
            continue
        if _safe_on_resume(key):
            applied[key] = wanted[key]
        elif key in saved_flat or wanted[key] not in (None, {}):
            conflicts.append(f"{key} ({saved_flat.get(key, '<unset>')!r} in the run, {wanted[key]!r} given)")
    if conflicts:
        raise ValueError(
            "resume=true continues a run with its saved config; these keys cannot change on "
            f"resume: {', '.join(conflicts)}. Drop them from the command line (the saved "
            "values are used), or start a new run in another output_dir. Keys that may "
            f"change: {', '.join(k + '*' if k.endswith('.') else k for k in SAFE_ON_RESUME)}."
        )
    merged = dataclasses.asdict(RecipeConfig.from_dict(saved))
    for key, value in applied.items():
        node = merged
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    for key in ("resume", "output_dir", "overwrite"):
        merged[key] = getattr(requested, key)
    return RecipeConfig.from_dict(merged)
