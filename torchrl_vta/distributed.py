"""Data-parallel learning on ``torch.distributed``: what the ranks exchange, and when.

Launched by ``torchrun`` (or SLURM through it), every rank runs the whole recipe: its own
envs and collector, its own replay shard, its own slice batch. :class:`DataParallel` is
what keeps the ranks one model:

* at start, rank 0's parameters and buffers are broadcast (:meth:`DataParallel.broadcast_`);
* in each learner step, after every part's backward and before its gradient clip, the
  gradients are averaged over the ranks (:meth:`DataParallel.average_gradients`), and the
  loss the non-finite guard checks is the ranks' mean, so every rank clips, steps or skips
  alike;
* a loss that is a masked mean (the boundary loss over the steps that were not forced)
  divides by the ranks' mean count (:func:`mean_over_ranks`), so the averaged gradient is
  the combined batch's;
* the running statistics a loss updates from its batch (the surprise histogram of the
  segment policy, the return normaliser's percentiles) are computed from the batch of every
  rank (:func:`gather_statistics`, active inside :func:`collective_statistics`), so they
  stay equal without a second exchange;
* the recipe's decisions that depend on local data (may the replay be sampled, was a stop
  requested) are taken collectively (:meth:`DataParallel.all`, :meth:`DataParallel.any`).

Gradients are averaged by hand rather than by wrapping the modules in
``DistributedDataParallel``: the world-model, actor and critic losses reach parameters of
modules they do not call (the actor's loss backpropagates through the world model's
dynamics, whose gradient is discarded), which DDP's forward-time bookkeeping cannot follow.
The averaged gradient is the one of PyTorch's DDP: the mean over ranks of each rank's batch-
mean loss, i.e. the gradient of the combined batch when the ranks' batches are the same size.

Examples:
    >>> import torch
    >>> parallel = DataParallel.single()      # one process: every exchange is the identity
    >>> parallel.world_size, parallel.rank, parallel.is_main
    (1, 0, True)
    >>> with collective_statistics(parallel):
    ...     gather_statistics(torch.ones(2, 3)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import os
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DataParallel", "collective_statistics", "gather_statistics", "load_agreed_checkpoint",
           "mean_over_ranks"]

log = logging.getLogger(__name__)

_ACTIVE: contextvars.ContextVar["DataParallel | None"] = contextvars.ContextVar(
    "torchrl_vta_data_parallel", default=None
)


class DataParallel:
    """The process group of a data-parallel run and the exchanges the learner makes in it.

    ``DataParallel.from_environment()`` joins the group ``torchrun`` describes (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), with ``gloo`` on CPU and ``nccl`` on
    CUDA unless ``backend`` is given; ``DataParallel.single()`` is the one-process group,
    where every exchange returns its input. :meth:`close` leaves the group.

    Examples:
        >>> import torch
        >>> parallel = DataParallel.single()
        >>> layer = torch.nn.Linear(2, 1)
        >>> layer(torch.ones(1, 2)).sum().backward()
        >>> before = layer.weight.grad.clone()
        >>> parallel.average_gradients(layer.parameters())
        >>> torch.equal(layer.weight.grad, before), parallel.all(True), parallel.any(False)
        (True, True, False)
    """

    def __init__(self, group=None, *, owns_group: bool = False):
        self.group = group
        self._owns_group = owns_group
        distributed = group is not None
        self.world_size = dist.get_world_size(group) if distributed else 1
        self.rank = dist.get_rank(group) if distributed else 0

    @classmethod
    def single(cls) -> "DataParallel":
        """The one-process group (no ``torch.distributed``)."""
        return cls()

    @classmethod
    def from_environment(cls, backend: str | None = None, timeout_s: float = 1800.0
                         ) -> "DataParallel":
        """Join (or reuse) the default process group described by ``torchrun``'s variables."""
        missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
                   if key not in os.environ]
        if missing and not dist.is_initialized():
            raise RuntimeError(
                f"learner.ddp=true needs the process-group variables {missing}: launch with "
                "torchrun, e.g. `torchrun --nproc_per_node=2 examples/vta_dreamer.py "
                "learner.ddp=true ...` (or set learner.ddp=false for one process)."
            )
        owns = not dist.is_initialized()
        if owns:
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                # One GPU per rank of this node.
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
            log.info("Joined the process group as rank %d of %d (%s).",
                     dist.get_rank(), dist.get_world_size(), backend)
        return cls(dist.group.WORLD, owns_group=owns)

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that logs, evaluates and writes the shared checkpoint."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.group is not None and self.world_size > 1

    def _device(self) -> torch.device:
        backend = dist.get_backend(self.group)
        return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
            else torch.device("cpu")

    # ------------------------------------------------------------------ exchanges
    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace every gradient by its mean over the ranks (one flat all-reduce).

        A parameter with a gradient on some ranks and none on others gets the mean with
        zeros; one without a gradient on every rank keeps none (its optimiser skips it, as
        in one process).
        """
        if not self.distributed:
            return
        parameters = [p for p in parameters if p.requires_grad]
        if not parameters:
            return
        device = self._device()
        present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32,
                               device=device)
        dist.all_reduce(present, group=self.group)
        chosen = [p for p, seen in zip(parameters, present.tolist()) if seen > 0]
        if not chosen:
            return
        flat = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(device)
            for p in chosen
        ])
        dist.all_reduce(flat, group=self.group)
        flat /= self.world_size
        offset = 0
        for p in chosen:
            size = p.numel()
            mean = flat[offset:offset + size].view_as(p).to(p.device)
            if p.grad is None:
                p.grad = mean.clone()
            else:
                p.grad.copy_(mean)
            offset += size

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the ranks (detached; non-finite if any rank's is)."""
        value = value.detach()
        if not self.distributed:
            return value
        reduced = value.to(self._device(), torch.float64).clone()
        dist.all_reduce(reduced, group=self.group)
        return (reduced / self.world_size).to(value.device, value.dtype)

    def gather(self, value: torch.Tensor) -> torch.Tensor:
        """Every rank's ``value`` (same shape on every rank) concatenated along dim 0."""
        value = value.detach()
        if not self.distributed:
            return value
        # gloo has no boolean collectives.
        local = value.to(self._device(), torch.uint8 if value.dtype == torch.bool
                         else value.dtype).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local, group=self.group)
        return torch.cat(parts, 0).to(value.device, value.dtype)

    def check_in_step(self, module: nn.Module) -> None:
        """Raise on every rank if ``module``'s parameters or buffers differ between ranks
        (compared by a float64 sum per tensor: cheap enough for every checkpoint).

        Examples:
            >>> DataParallel.single().check_in_step(nn.Linear(2, 2))  # one rank: nothing to compare
        """
        if not self.distributed:
            return
        tensors = [*module.parameters(), *module.buffers()]
        sums = torch.stack([t.detach().double().sum() for t in tensors])
        everyone = self.gather(sums[None].to(self._device())).cpu()
        apart = (everyone != everyone[:1]).any(0).nonzero().flatten().tolist()
        if apart:
            names = [name for name, _ in [*module.named_parameters(), *module.named_buffers()]]
            raise RuntimeError(
                f"the data-parallel ranks' models differ in {len(apart)} tensor(s), e.g. "
                f"{[names[i] for i in apart[:3]]}: a part of the update is not averaged or "
                "a running statistic is taken from one rank's batch only."
            )

    def all(self, flag: bool) -> bool:
        """``flag`` on every rank."""
        return not self.any(not flag)

    def any(self, flag: bool) -> bool:
        """``flag`` on at least one rank."""
        if not self.distributed:
            return bool(flag)
        value = torch.tensor([float(bool(flag))], device=self._device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.group)
        return bool(value.item())

    def gather_object(self, obj) -> list:
        """Every rank's picklable ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        found = [None] * self.world_size
        dist.all_gather_object(found, obj, group=self.group)
        return found

    def broadcast_object(self, obj, src: int = 0):
        """Rank ``src``'s picklable ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, group=self.group)
        return box[0]

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """A block every rank runs: if it raises on any rank, it raises on every rank, so
        no rank is left waiting in a collective for one that failed. The block itself must
        not make collectives.

        Examples:
            >>> parallel = DataParallel.single()
            >>> with parallel.together():
            ...     raise ValueError("bad key")
            Traceback (most recent call last):
            ...
            ValueError: bad key
        """
        error = None
        try:
            yield
        except Exception as caught:  # re-raised below, on every rank
            error = caught
        failures = self.gather_object(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        for rank, message in enumerate(failures):
            if message is not None:
                raise RuntimeError(f"rank {rank} failed: {message}")

    def broadcast_(self, module: nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers into ``module`` on every rank."""
        if not self.distributed:
            return
        device = self._device()
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                staged = tensor.detach().to(device).clone()
                dist.broadcast(staged, src=src, group=self.group)
                tensor.copy_(staged.to(tensor.device))

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            dist.barrier(group=self.group)

    def close(self) -> None:
        """Leave the process group if :meth:`from_environment` created it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"


@contextlib.contextmanager
def collective_statistics(parallel: DataParallel | None) -> Iterator[None]:
    """Within the block, :func:`gather_statistics` gathers over ``parallel``'s ranks.

    Examples:
        >>> import torch
        >>> with collective_statistics(None):
        ...     gather_statistics(torch.zeros(3)).shape
        torch.Size([3])
    """
    token = _ACTIVE.set(parallel)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def gather_statistics(value: torch.Tensor) -> torch.Tensor:
    """The batch a running statistic is updated from: every rank's ``value`` (concatenated
    along dim 0) inside :func:`collective_statistics` of a multi-rank group, else ``value``.
    Detached either way.

    Examples:
        >>> import torch
        >>> gather_statistics(torch.ones(4)).tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    parallel = _ACTIVE.get()
    if parallel is None or not parallel.distributed:
        return value.detach()
    return parallel.gather(value)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The ranks' mean of ``value`` (detached) inside :func:`collective_statistics` of a
    multi-rank group, else ``value``: e.g. the count a masked loss divides by.

    Examples:
        >>> import torch
        >>> mean_over_ranks(torch.tensor(3.0)).item()
        3.0
    """
    parallel = _ACTIVE.get()
    if parallel is None or not parallel.distributed:
        return value
    return parallel.mean(value)


def load_agreed_checkpoint(checkpointer, parallel: DataParallel) -> dict | None:
    """Every rank's newest checkpoint at a frame count all ranks hold (a collective).

    A distributed run saves each rank's generation with ``meta={"frames": ...,
    "world_size": ...}``; a run killed between two ranks' saves leaves the ranks one
    generation apart, and they resume from the last one they share. With one process
    this is ``checkpointer.load()``. Returns ``None`` when no rank holds a checkpoint.

    Examples:
        >>> import tempfile
        >>> from torchrl_vta import Checkpointer
        >>> ckpt = Checkpointer(tempfile.mkdtemp())
        >>> _ = ckpt.save({"step": 1}, meta={"frames": 50, "world_size": 1})
        >>> load_agreed_checkpoint(ckpt, DataParallel.single())
        {'step': 1}
    """
    from torchrl_vta.checkpoint import CheckpointError

    with parallel.together():
        held = [(meta.get("frames"), meta.get("world_size", 1)) for meta in checkpointer.metas()]
    everyone = parallel.gather_object(held)
    sizes = sorted({size for ranks in everyone for _, size in ranks} - {parallel.world_size},
                   key=str)
    if sizes:
        raise ValueError(
            f"the checkpoints in {checkpointer.directory} were written by a run of {sizes} "
            f"rank(s), this one has {parallel.world_size}: resume with the same "
            "`torchrun --nproc_per_node` and learner.ddp (the replay is sharded per rank)."
        )
    if not parallel.distributed:
        return checkpointer.load()
    if not any(everyone):
        return None
    common = set.intersection(*({frames for frames, _ in ranks} for ranks in everyone)) - {None}
    if not common:
        raise CheckpointError(
            "the ranks hold no checkpoint at a common frame count (frames per rank: "
            f"{[[frames for frames, _ in ranks] for ranks in everyone]}); start over with "
            "overwrite=true."
        )
    frames = max(common)
    with parallel.together():
        state = checkpointer.load(accept=lambda meta: meta.get("frames") == frames)
    return state
