"""Builders of the training recipe, usable from any script or test.

``examples/vta_dreamer.py`` reads top to bottom with these: build the envs,
the agent and its learner, a TorchRL collector and a slice replay buffer, a
logger; then collect, update, evaluate (:mod:`torchrl_vta.evaluation`), draw and checkpoint.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, SliceSampler, TensorDictReplayBuffer
from torchrl.envs import EnvBase, RewardSum, TransformedEnv

from torchrl_vta.agent import Agent
from torchrl_vta.collectors import make_collector
from torchrl_vta.config import LEARNER_ARGUMENTS, RecipeConfig
from torchrl_vta.envs import make_env
from torchrl_vta.learner import Learner
from torchrl_vta.modules.boundary_ops import TemperatureSchedule
from torchrl_vta.modules.world_model import PRESETS

__all__ = [
    "TRAJ_KEY",
    "configure_threads",
    "explore_options",
    "make_agent",
    "make_collector",
    "make_env_factory",
    "make_learner",
    "make_logger",
    "make_replay_buffer",
    "longest_trajectory",
    "replay_keys",
    "select_device",
]

log = logging.getLogger(__name__)

#: Trajectory id written by TorchRL collectors, used by the slice sampler.
TRAJ_KEY = ("collector", "traj_ids")


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unavailable device raises ``ValueError``.

    Examples:
        >>> select_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise ValueError(f"device={name}: {why}; use device=cpu or device=auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name}: only {torch.cuda.device_count()} CUDA device(s) "
                             "are visible; use device=cuda:0 or device=auto.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name}: MPS is not available here; use device=cpu or device=auto.")
    return device


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads: ``threads``, or for 0 half the usable cores (1 to 8).

    Torch's own default (every core) competes with the env and any other job on the
    machine: on a shared 2-core CPU a tiny update took 2.8 s with it vs 80 ms with one
    thread. Returns the number set.

    Examples:
        >>> configure_threads(1)
        1
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = auto), got {threads}.")
    if threads == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, min(8, (cores or 1) // 2))
    torch.set_num_threads(threads)
    return threads


def make_env_factory(cfg: RecipeConfig, *, seed_offset: int = 0) -> Callable[[], EnvBase]:
    """A picklable-enough callable building the configured env (for collectors), with
    TorchRL's ``RewardSum``: ``("next", "episode_reward")`` holds the return so far, so a
    step where ``done`` is set carries the episode's return.

    Examples:
        >>> factory = make_env_factory(RecipeConfig())
        >>> "episode_reward" in factory().observation_spec.keys()
        True
    """
    name, options = cfg.env.name, dict(cfg.env.options)
    seed = cfg.seed + seed_offset

    def factory() -> EnvBase:
        env = make_env(name, **{"seed": seed, **options})
        if isinstance(env, TransformedEnv):
            if not any(isinstance(t, RewardSum) for t in env.transform):
                env.append_transform(RewardSum())
            return env
        return TransformedEnv(env, RewardSum())

    return factory


def make_agent(env: EnvBase, cfg: RecipeConfig) -> Agent:
    """The agent sized by ``cfg.model`` for ``env`` (call before adding the primer).

    Examples:
        >>> cfg = RecipeConfig()
        >>> cfg.model.preset = "test"
        >>> agent = make_agent(make_env("maze", image_size=16), cfg)
        >>> agent.world_model.rssm.levels
        2
    """
    model = cfg.model
    return Agent.from_env(
        env,
        preset=model.preset,
        levels=model.levels,
        encoder=dict(model.encoder),
        rssm=dict(model.rssm),
        decoder=dict(model.decoder),
        head=dict(model.head),
        actor=dict(model.actor),
        critic=dict(model.critic),
    )


def make_learner(agent: Agent, cfg: RecipeConfig, data_parallel=None) -> Learner:
    """The learner with ``cfg.loss`` and ``cfg.optim`` (one rank of a data-parallel learner
    with ``data_parallel``, a :class:`~torchrl_vta.distributed.DataParallel`).

    With ``loss.temperature_final`` set, the RSSM's segment policy gets a
    :class:`TemperatureSchedule` from its current temperature to that value, which the
    learner follows after each update.

    Examples:
        >>> cfg = RecipeConfig()
        >>> cfg.model.preset, cfg.optim.kind = "test", "dreamerv3"
        >>> cfg.loss.temperature_final = 0.1
        >>> learner = make_learner(make_agent(make_env("maze", image_size=16), cfg), cfg)
        >>> type(learner.optimizers[0]).__name__
        'DreamerV3Optimizer'
        >>> schedule = learner.agent.world_model.rssm.segment_policy.schedule
        >>> schedule(0), round(schedule(10**7), 3)
        (1.0, 0.1)
    """
    loss, optim = cfg.loss, cfg.optim
    policy = agent.world_model.rssm.segment_policy
    if loss.temperature_final is not None and agent.world_model.rssm.levels > 1:
        policy.schedule = TemperatureSchedule(
            initial=policy.temperature, final=loss.temperature_final,
            every=loss.temperature_decay_every,
        )
    sections = {"loss": loss, "optim": optim}
    return Learner(
        agent,
        **{argument: getattr(sections[section], name)
           for section, names in LEARNER_ARGUMENTS.items() for name, argument in names.items()},
        world_model_loss=dict(loss.world_model),
        compile=cfg.compile,
        compile_mode=cfg.compile_mode,
        autocast=cfg.autocast,
        data_parallel=data_parallel,
        **explore_options(cfg),
    )


def explore_options(cfg: RecipeConfig) -> dict:
    """:class:`Learner` keyword arguments of ``cfg.explore`` (ensemble members sized like the
    preset's heads unless ``explore.layers``/``explore.units`` say otherwise).

    Examples:
        >>> cfg = RecipeConfig()
        >>> cfg.explore.mode, cfg.model.preset = "mixed", "test"
        >>> explore_options(cfg)["explore"]
        {'layers': 1, 'units': 16}
    """
    explore = cfg.explore
    if explore.mode == "off":
        return {}
    # The agent's head sizes (Agent.from_env): the preset's, with model.head's overrides.
    head = {**PRESETS[cfg.model.preset]["head"], **cfg.model.head}
    options = {"layers": head["layers"], "units": head["units"], **explore.module_options()}
    learner = {"explore_lr": explore.lr, "explore_clip": explore.clip,
               "extrinsic_scale": explore.extrinsic_scale, "intrinsic_scale": explore.intrinsic_scale}
    return {"explore_mode": explore.mode, "explore": options,
            **{k: v for k, v in learner.items() if v is not None}}


def replay_keys(observation_keys) -> list:
    """What the learner needs of a collected batch (root observations are dropped: the
    world model reads ``("next", obs)``), and the ground truth of envs that have it, never
    read by the learner: ``("next", "event")`` and, in worlds with nested events,
    ``("next", "scene_event")`` (the boundary pictures and
    :func:`~torchrl_vta.evaluation.replay_boundary_scores` score each level against them) and
    ``("next", "pose")`` (``maze``: ``benchmarks/exploration.py`` counts distinct poses).

    Examples:
        >>> replay_keys(["pixels"])[-1]
        ('next', 'pixels')
    """
    keys = ["action", "is_init", TRAJ_KEY, ("next", "reward"), ("next", "terminated"),
            ("next", "done"), ("next", "truncated"), ("next", "event"), ("next", "scene_event"),
            ("next", "pose")]
    return keys + [("next", key) for key in observation_keys]


def make_replay_buffer(cfg: RecipeConfig, scratch_dir: str | Path | None) -> TensorDictReplayBuffer:
    """Slice replay over trajectory ids: batches of ``batch_size`` slices of ``seq_len`` steps.

    ``num_envs > 1`` stores ``[num_envs, time]`` (``ndim=2``).

    Examples:
        >>> cfg = RecipeConfig()
        >>> cfg.replay.storage, cfg.replay.batch_size, cfg.replay.seq_len = "memory", 2, 4
        >>> buffer = make_replay_buffer(cfg, None)
        >>> data = make_env("maze", image_size=16).rollout(10, break_when_any_done=False)
        >>> data[TRAJ_KEY] = torch.zeros(10, dtype=torch.long)
        >>> _ = buffer.extend(data)
        >>> buffer.sample().reshape(2, 4).shape
        torch.Size([2, 4])
    """
    replay = cfg.replay
    ndim = 1 if cfg.collector.num_envs == 1 else 2
    if replay.storage == "memmap":
        # existsok: a resumed run reuses its scratch files before loading the checkpoint.
        storage = LazyMemmapStorage(
            replay.capacity, scratch_dir=scratch_dir, ndim=ndim, existsok=True
        )
    else:
        storage = LazyTensorStorage(replay.capacity, ndim=ndim)
    sampler = SliceSampler(slice_len=replay.seq_len, traj_key=TRAJ_KEY, strict_length=True)
    return TensorDictReplayBuffer(
        storage=storage,
        sampler=sampler,
        batch_size=replay.batch_size * replay.seq_len,
    )


def longest_trajectory(buffer: TensorDictReplayBuffer) -> int:
    """Steps of the longest stored run of one trajectory id (0 when empty).

    The slice sampler needs one of at least ``replay.seq_len`` steps.

    Examples:
        >>> from tensordict import TensorDict
        >>> buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> ids = torch.tensor([0, 0, 1, 1, 1, 2])
        >>> _ = buffer.extend(TensorDict({TRAJ_KEY: ids}, [6]))
        >>> longest_trajectory(buffer)
        3
    """
    storage = buffer._storage
    if len(storage) == 0:
        return 0
    ids = storage._storage[: storage._len_along_dim0].get(TRAJ_KEY).as_subclass(torch.Tensor)
    ids = ids.reshape(ids.shape[0], -1).T  # one row per env
    longest = 0
    for row in ids:
        _, counts = torch.unique_consecutive(row, return_counts=True)
        longest = max(longest, int(counts.max()))
    return longest


def make_logger(
    cfg: RecipeConfig, log_dir: str | Path, experiment_name: str, *, resume_step: int | None = None
):
    """A ``torchrl.record`` logger (``None`` for ``logger.backend=none``).

    ``resume_step`` (a resumed run's checkpoint frame count): the CSV backend first
    drops the rows a killed run logged after that step, which belong to a history
    the resumed run no longer has, so each CSV stays one increasing curve.

    Examples:
        >>> import tempfile
        >>> logger = make_logger(RecipeConfig(), tempfile.mkdtemp(), "demo")
        >>> type(logger).__name__
        'CSVLogger'
    """
    backend = cfg.logger.backend
    if backend == "none":
        return None
    if backend == "csv" and resume_step is not None:
        _drop_csv_rows_after(Path(log_dir) / experiment_name / "scalars", resume_step)
    from torchrl.record.loggers import get_logger

    kwargs: dict[str, Any] = {}
    if backend == "wandb":
        if importlib.util.find_spec("wandb") is None:
            raise ImportError('logger.backend=wandb needs wandb: pip install "torchrl_vta[wandb]".')
        # torchrl's get_logger reads wandb options from `wandb_kwargs` only (the run
        # directory is its `logger_name`).
        kwargs = dict(wandb_kwargs=dict(project=cfg.logger.project,
                                        offline=cfg.logger.mode == "offline"))
    if backend == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ImportError('logger.backend=tensorboard needs tensorboard: '
                          'pip install "torchrl_vta[tensorboard]".')
    return get_logger(backend, logger_name=str(log_dir), experiment_name=experiment_name, **kwargs)


def _drop_csv_rows_after(scalars_dir: Path, step: int) -> None:
    for csv in scalars_dir.glob("**/*.csv"):
        rows = csv.read_text().splitlines(keepends=True)
        kept = [row for row in rows if row.strip() and float(row.split(",", 1)[0]) <= step]
        if len(kept) != len(rows):
            csv.write_text("".join(kept))
