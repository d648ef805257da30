"""What a checkpoint is made of, below the :class:`~torchrl_vta.checkpoint.Checkpointer`:
its errors, the free-space and finiteness checks done before writing, durable (fsynced)
writes and checksums, and the filled part of a replay buffer as plain tensors.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict

__all__ = [
    "CheckpointError",
    "InsufficientDiskSpaceError",
    "NonFiniteStateError",
    "check_free_space",
    "load_replay_state",
    "replay_state",
]


class CheckpointError(RuntimeError):
    """No usable checkpoint: each candidate is named with what is wrong.

    Examples:
        >>> import tempfile, pathlib
        >>> directory = pathlib.Path(tempfile.mkdtemp())
        >>> (directory / "gen_000001").mkdir()
        >>> from torchrl_vta.checkpoint import Checkpointer
        >>> Checkpointer(directory).load()
        Traceback (most recent call last):
        ...
        torchrl_vta.checkpoint_files.CheckpointError: no usable checkpoint in ...
    """


class InsufficientDiskSpaceError(OSError):
    """Not enough free disk space for a checkpoint (or the replay memmap)."""


class NonFiniteStateError(ValueError):
    """A state to be checkpointed holds NaN/inf values."""


def check_free_space(directory: str | Path, needed: int, what: str = "the checkpoint") -> None:
    """Raise :class:`InsufficientDiskSpaceError` if ``directory``'s disk has < ``needed`` bytes free.

    Examples:
        >>> import tempfile
        >>> check_free_space(tempfile.gettempdir(), 1)
        >>> check_free_space(tempfile.gettempdir(), 10**18)
        Traceback (most recent call last):
        ...
        torchrl_vta.checkpoint_files.InsufficientDiskSpaceError: ...
    """
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise InsufficientDiskSpaceError(
            errno.ENOSPC,
            f"not enough disk space for {what} in {directory}: {needed:,} bytes needed, "
            f"{free:,} free. Free some space (older runs, other files) or point output_dir "
            "to a larger disk, then resume (resume=true output_dir=<run dir>).",
        )


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 64


def _check_finite(obj, path: str = "") -> None:
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise NonFiniteStateError(
                f"refusing to checkpoint non-finite values in {path or 'the state'}; "
                "the previous checkpoint is kept."
            )
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_finite(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _check_finite(value, f"{path}[{index}]")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, write) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------- replay (filled part only)
def replay_state(buffer) -> dict[str, Any]:
    """The filled part of ``buffer``'s storage and its cursors, as plain tensors.

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
        >>> _ = buffer.extend(TensorDict({"x": torch.arange(5.)}, [5]))
        >>> replay_state(buffer)["data"]["x"].shape
        torch.Size([5])
    """
    storage = buffer._storage
    state: dict[str, Any] = {"len": len(storage), "writer": dict(buffer._writer.state_dict())}
    if len(storage) == 0 or not storage.initialized:
        state["data"] = None
        return state
    filled = storage._storage[: storage._len_along_dim0]
    state["batch_size"] = list(filled.batch_size)
    state["data"] = {
        key: value.as_subclass(torch.Tensor)
        for key, value in filled.flatten_keys("/").items(include_nested=True, leaves_only=True)
    }
    cursor = storage._last_cursor_index
    state["last_cursor"] = cursor if cursor is None or isinstance(cursor, torch.Tensor) else int(cursor)
    return state


def load_replay_state(buffer, state: dict[str, Any]) -> None:
    """Write a :func:`replay_state` back into an empty ``buffer`` (same storage kind and capacity).

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> source = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
        >>> _ = source.extend(TensorDict({"x": torch.arange(5.)}, [5]))
        >>> target = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
        >>> load_replay_state(target, replay_state(source))
        >>> len(target), target._writer._cursor
        (5, 5)
    """
    if state["data"] is None:
        return
    storage = buffer._storage
    filled = TensorDict(state["data"], batch_size=state["batch_size"]).unflatten_keys("/")
    if filled.shape[0] > storage.max_size:
        raise CheckpointError(
            f"the checkpoint's replay holds {filled.shape[0]} steps but replay.capacity is "
            f"{storage.max_size}: resume with the run's replay.capacity."
        )
    storage.set(slice(0, filled.shape[0]), filled)
    storage._len = int(state["len"])
    if state.get("last_cursor") is not None:
        storage._set_last_cursor(state["last_cursor"])
    buffer._writer.load_state_dict(state["writer"])
