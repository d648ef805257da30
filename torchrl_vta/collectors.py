"""The recipe's collector on one of TorchRL's engines (``collector.backend``).

=================  ====================================================================
``local``          ``Collector`` in this process (``num_envs > 1``: a ``SerialEnv``)
``multiprocess``   ``MultiSyncCollector``: one process per env on this machine
``distributed``    ``DistributedSyncCollector`` (``torch.distributed``, workers launched
                   as local processes): one worker per env, batches sent over gloo
``ray``            ``RayCollector``: one remote collector per env (the ``ray`` extra), on
                   the cluster ``RAY_ADDRESS`` names, else on a local one
=================  ====================================================================

``null`` (the default) is ``local`` for one env and ``multiprocess`` for several. Every
backend returns batches of the same layout (``[num_envs, frames_per_batch]`` for several
envs), every env carries the agent's primer (the recurrent acting state), and trajectory
ids are unique across envs. The acting policy's weights follow the learner's: after every
batch for ``local``/``multiprocess`` (:func:`sync_policy_weights`), and every
``collector.sync_every`` batches through TorchRL's weight-sync scheme for ``distributed``
and ``ray``; ``ray`` workers act with weights at most that many batches old.
``distributed`` workers do not wait for the learner: a batch's ``isend`` returns at once, so
a worker can run several batches ahead when the learner is slow, and the lag is not
bounded by ``sync_every``. On one machine they hold the policy in shared memory and see
each update when it lands; each sent batch is its own copy, so a batch never mixes two
rollouts.
"""

from __future__ import annotations

import os
import socket
from typing import Callable

import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.collectors.distributed import DistributedSyncCollector, RayCollector
from torchrl.envs import EnvBase, SerialEnv

from torchrl_vta.config import RecipeConfig

__all__ = ["BACKENDS", "make_collector", "resolve_backend", "sync_policy_weights"]

#: The values of ``collector.backend`` (``None``: ``local`` for one env, else ``multiprocess``).
BACKENDS = ("local", "multiprocess", "distributed", "ray")

_TRAJ_KEY = ("collector", "traj_ids")


def resolve_backend(cfg: RecipeConfig) -> str:
    """The backend ``cfg`` asks for, with ``None`` resolved by the number of envs.

    Examples:
        >>> cfg = RecipeConfig()
        >>> resolve_backend(cfg), cfg.collector.num_envs
        ('local', 1)
        >>> cfg.collector.num_envs = 4
        >>> resolve_backend(cfg)
        'multiprocess'
    """
    backend = cfg.collector.backend
    if backend is None:
        return "local" if cfg.collector.num_envs == 1 else "multiprocess"
    return backend


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _WorkerTrajectoryIds:
    """Postprocessing of the distributed engines' stacked batches: trajectory ids unique
    across workers and stable across batches, ``local * workers + i`` for worker ``i``.
    Each worker numbers its own trajectories from 0; ``RayCollector`` stacks them as they
    are, and ``DistributedSyncCollector`` offsets worker ``i``'s ids by the largest id of
    worker ``i - 1`` *in the same batch*, which changes from batch to batch and would cut
    a trajectory that spans batches (``offset_by_batch``: undo that first)."""

    def __init__(self, workers: int, *, offset_by_batch: bool):
        self.workers = workers
        self.offset_by_batch = offset_by_batch

    def __call__(self, data: TensorDictBase) -> TensorDictBase:
        ids = data.get(_TRAJ_KEY).clone()
        if self.offset_by_batch:
            for worker in range(self.workers - 1, 0, -1):
                ids[worker] -= ids[worker - 1].max()
        index = torch.arange(self.workers, device=ids.device).view(-1, *[1] * (ids.ndim - 1))
        data.set(_TRAJ_KEY, ids * self.workers + index)
        return data


class _DistributedSyncCollector(DistributedSyncCollector):
    """``DistributedSyncCollector`` with one receive buffer per worker. TorchRL's is an
    ``expand`` of one pseudo batch, so every worker's ``irecv`` lands in the same memory
    (a batch would hold the last worker's data in every row), and a pseudo batch that
    ended an episode holds strided leaves, which gloo refuses to receive into."""

    def _make_container(self):
        super()._make_container()
        out = self._tensordict_out.unlock_().apply(
            lambda leaf: leaf.clone(memory_format=torch.contiguous_format))
        self._single_tds = out.unbind(0)
        self._tensordict_out = out.lock_()


def _contiguous(data: TensorDictBase) -> TensorDictBase:
    # A worker's batch goes out with torch.distributed's isend, which takes contiguous
    # tensors only (a batch where an episode ended holds strided ones) and reads them
    # after the call returns, while the worker's collector (return_same_td) already
    # writes the next batch into the same memory: each batch gets its own copy.
    return data.apply(lambda leaf: leaf.clone(memory_format=torch.contiguous_format))


def _ray_init_config(envs: int) -> dict:
    # With RAY_ADDRESS set (a cluster started with `ray start`, or a SLURM allocation) Ray
    # joins that cluster, which refuses a CPU count; else a local one sized for the envs.
    if os.environ.get("RAY_ADDRESS"):
        return dict(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    return dict(num_cpus=envs + 1, include_dashboard=False, log_to_driver=False)


def make_collector(
    cfg: RecipeConfig,
    policy: Callable,
    *,
    remaining_frames: int,
    init_random_frames: int,
    primer_factory: Callable,
    device: torch.device,
    seed_offset: int = 0,
):
    """The TorchRL collector of ``collector.backend`` over ``collector.num_envs`` envs.

    Env ``i`` is seeded ``cfg.seed + seed_offset + i`` (a data-parallel run gives each
    rank its own offset) and gets ``primer_factory()``, the agent's primer, so the
    recurrent acting state is carried. The distributed engines split whole batches over
    their workers, so they round ``remaining_frames`` up to whole batches.

    Examples:
        >>> from torchrl_vta import RecipeConfig, make_agent, make_env_factory
        >>> cfg = RecipeConfig()
        >>> cfg.model.preset = "test"
        >>> cfg.env.name, cfg.env.options = "maze", {"image_size": 16}
        >>> agent = make_agent(make_env_factory(cfg)(), cfg)
        >>> collector = make_collector(cfg, agent.policy, remaining_frames=10, init_random_frames=0,
        ...                            primer_factory=agent.make_primer, device=torch.device("cpu"))
        >>> batch = next(iter(collector))
        >>> batch["boundary"].shape[-1], ("collector", "traj_ids") in batch.keys(True)
        (1, True)
        >>> collector.shutdown()
    """
    from torchrl_vta.recipe import make_env_factory

    creator = os.getpid()

    def env_with_primer(offset: int) -> Callable[[], EnvBase]:
        base = make_env_factory(cfg, seed_offset=offset)

        def factory() -> EnvBase:
            if os.getpid() != creator:
                # A worker process: one intra-op thread, as TorchRL's multiprocess collectors
                # give theirs. The distributed engine's workers otherwise keep torch's default
                # and oversubscribe the cores (2 workers on 2 cores: 48 against 715 steps/s).
                torch.set_num_threads(1)
            env = base()
            env.append_transform(primer_factory())
            return env

        return factory

    backend = resolve_backend(cfg)
    envs = cfg.collector.num_envs
    per_batch = cfg.collector.frames_per_batch * envs
    factories = [env_with_primer(seed_offset + i) for i in range(envs)]
    options = dict(
        frames_per_batch=per_batch,
        total_frames=remaining_frames,
        init_random_frames=init_random_frames,
    )
    if backend == "local":
        env = factories[0]() if envs == 1 else SerialEnv(envs, factories)
        return Collector(env, policy, policy_device=device, storing_device="cpu",
                         env_device="cpu", **options)
    if backend == "multiprocess":
        return MultiSyncCollector(factories, policy, cat_results="stack", policy_device=device,
                                  storing_device="cpu", env_device="cpu", **options)
    # The distributed engines split whole batches over their workers.
    options["total_frames"] = -(-remaining_frames // per_batch) * per_batch
    options["init_random_frames"] = init_random_frames - init_random_frames % envs
    if backend == "distributed":
        return _DistributedSyncCollector(
            factories, policy, launcher="mp", tcp_port=_free_port(), backend="gloo",
            update_interval=cfg.collector.sync_every,
            postproc=_WorkerTrajectoryIds(envs, offset_by_batch=True),
            device="cpu", storing_device="cpu", env_device="cpu", policy_device="cpu",
            collector_kwargs={"postproc": _contiguous}, **options,
        )
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                "collector.backend=ray needs Ray: pip install 'torchrl_vta[ray]' (or pick "
                "collector.backend=multiprocess|distributed)."
            ) from error
        return RayCollector(
            factories, policy, collector_class=Collector, num_collectors=envs, sync=True,
            postproc=_WorkerTrajectoryIds(envs, offset_by_batch=False),
            max_weight_update_interval=cfg.collector.sync_every,
            collector_kwargs=dict(device="cpu", storing_device="cpu", env_device="cpu",
                                  policy_device="cpu"),
            ray_init_config=_ray_init_config(envs),
            **options,
        )
    raise ValueError(f"collector.backend={backend!r} is not one of {list(BACKENDS)}.")


def sync_policy_weights(collector) -> None:
    """Give the collector's acting policy the learner's weights where the backend does it
    per batch (``local``, ``multiprocess``); the distributed engines sync on their own
    schedule (``collector.sync_every``).

    Examples:
        >>> sync_policy_weights(object())  # no per-batch update method: nothing to do
    """
    if isinstance(collector, (DistributedSyncCollector, RayCollector)):
        return
    update = getattr(collector, "update_policy_weights_", None)
    if update is not None:
        update()
