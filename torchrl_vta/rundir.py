"""A run directory claimed by one live run: a lock file, and no silent overwrite.

``claim_run_dir(path, resume=..., overwrite=...)`` takes an exclusive
``fcntl.flock`` on ``<path>/.lock`` (released when the process exits, even on
``kill -9``) and refuses a directory that already holds a run's outputs unless
the run is resumed (``resume=true``) or ``overwrite=true`` (which deletes the
outputs this recipe writes, and refuses if anything else is there).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

__all__ = ["RUN_OUTPUTS", "RunDirectoryError", "claim_run_dir"]

#: What the recipe writes into a run directory (deleted by ``overwrite=true``).
RUN_OUTPUTS = ("checkpoints", "logs", "replay_storage", "videos", "pictures", "checkpoint")
#: Entries ignored when deciding whether a directory is empty (Hydra's own files, the lock).
_IGNORED = (".hydra", ".lock")
LOCK_FILE = ".lock"


class RunDirectoryError(RuntimeError):
    """The run directory is in use, or holds a run that would be overwritten."""


def _is_ignored(entry: Path) -> bool:
    return entry.name in _IGNORED or (entry.suffix == ".log" and entry.is_file())


def claim_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False):
    """Lock ``path`` for this process and check it may be (re)used; returns the open lock file.

    Keep the returned file object open while the run is live (closing it releases
    the lock).

    Examples:
        >>> import tempfile, pathlib
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> lock = claim_run_dir(run)
        >>> (run / "logs").mkdir()
        >>> lock.close()
        >>> claim_run_dir(run)
        Traceback (most recent call last):
        ...
        torchrl_vta.rundir.RunDirectoryError: output_dir ... already holds a run (logs)...
        >>> claim_run_dir(run, overwrite=True).close(); sorted(p.name for p in run.iterdir())
        ['.lock']
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock = open(path / LOCK_FILE, "a+")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "unknown"
        lock.close()
        raise RunDirectoryError(
            f"output_dir {path} is in use by another live run (pid {owner}, lock {path / LOCK_FILE}). "
            "Wait for it to finish, stop it, or choose another output_dir."
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    if resume:
        return lock
    entries = sorted(p for p in path.iterdir() if not _is_ignored(p))
    if not entries:
        return lock
    names = ", ".join(p.name for p in entries)
    if not overwrite:
        lock.close()
        raise RunDirectoryError(
            f"output_dir {path} already holds a run ({names}). Continue it with resume=true "
            f"output_dir={path}, start over with overwrite=true (deletes those outputs), or "
            "choose another output_dir."
        )
    unknown = [p.name for p in entries if p.name not in RUN_OUTPUTS]
    if unknown:
        lock.close()
        raise RunDirectoryError(
            f"overwrite=true would delete files this recipe did not write in {path} "
            f"({', '.join(unknown)}): move them away or choose another output_dir."
        )
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return lock
