"""Checkpoints of a video run, and resuming one (``resume=true``) where it stopped.

A run writes its training state (model, optimiser, the window sampler's and torch's random
states, the step and the training time so far) with the package's crash-safe
:class:`~torchrl_vta.checkpoint.Checkpointer` into ``<run dir>/checkpoints`` every
``checkpoint_every_min`` minutes and when training ends. The same command with
``resume=true`` (and the same ``hydra.run.dir``) continues from the newest checkpoint, bit
for bit as if it had never stopped; the time budget counts the training time of every
session. Only the keys of :data:`SAFE_ON_RESUME` may change on resume (more ``steps``, a
longer ``time_budget_min``, threads, device, the evaluation); any other difference names
the key before anything is trained.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from torchrl_vta.checkpoint import Checkpointer
from torchrl_vta.config_resume import flatten_config
from torchrl_vta.video.config import VideoConfig

__all__ = ["SAFE_ON_RESUME", "VideoCheckpoints", "config_dict"]

log = logging.getLogger(__name__)

#: Keys a resumed video run may change (a trailing ``.`` means the whole section).
SAFE_ON_RESUME = ("run.steps", "run.time_budget_min", "run.threads", "run.device",
                  "run.log_every", "run.data_dir", "run.resume", "run.checkpoint_every_min",
                  "eval.")


def config_dict(config: VideoConfig) -> dict:
    """The sections of ``config`` as plain dicts (what ``metrics.json`` and checkpoints hold).

    Example:
        >>> from torchrl_vta.video import validate_config
        >>> sorted(config_dict(validate_config({"model": {"name": "agent"}})))
        ['dataset', 'eval', 'model', 'optim', 'run', 'temperature']
    """
    return {name: asdict(getattr(config, name))
            for name in ("run", "dataset", "model", "optim", "temperature", "eval")}


def _safe(key: str) -> bool:
    return any(key == safe or (safe.endswith(".") and key.startswith(safe))
               for safe in SAFE_ON_RESUME)


class VideoCheckpoints:
    """The checkpoints of one video run directory.

    ``start(config)`` returns the state to resume from (``None`` for a fresh start), after
    checking that ``config`` may continue it; ``write(state, config)`` saves one.

    Example:
        >>> import tempfile
        >>> from torchrl_vta.video import validate_config
        >>> config = validate_config({"model": {"name": "agent"}, "resume": True})
        >>> checkpoints = VideoCheckpoints(tempfile.mkdtemp())
        >>> checkpoints.start(config) is None   # nothing saved yet: a fresh start
        True
        >>> checkpoints.write({"step": 5}, config)
        >>> checkpoints.start(config)["step"]
        5
        >>> config.optim.lr = 0.1
        >>> checkpoints.start(config)
        Traceback (most recent call last):
        ...
        ValueError: resume=true continues a run with its saved config; these keys differ: optim.lr ...
    """

    def __init__(self, run_dir: str | Path):
        self.directory = Path(run_dir) / "checkpoints"
        self.checkpointer = Checkpointer(self.directory)

    def start(self, config: VideoConfig) -> dict | None:
        """The saved training state to continue (``resume=true``), or ``None``.

        Raises ``ValueError`` when the run directory already holds a checkpoint and
        ``resume`` is false (a new run would mix with the old one), or when a key outside
        :data:`SAFE_ON_RESUME` differs from the saved run's.
        """
        saved = bool(self.checkpointer.generations())
        if not config.run.resume:
            if saved:
                raise ValueError(
                    f"{self.directory} holds a checkpoint of an earlier run: add resume=true to "
                    "continue it, or give another hydra.run.dir for a new run.")
            return None
        state = self.checkpointer.load() if saved else None
        if state is None:
            log.info("resume=true: no checkpoint in %s yet, starting from step 0", self.directory)
            return None
        before, now = flatten_config(state["config"]), flatten_config(config_dict(config))
        differ = [f"{key} ({before.get(key)!r} in the run, {now.get(key)!r} given)"
                  for key in sorted(set(before) | set(now))
                  if not _safe(key) and before.get(key) != now.get(key)]
        if differ:
            raise ValueError(
                "resume=true continues a run with its saved config; these keys differ: "
                f"{', '.join(differ)}. Use the run's values, or start a new run in another "
                f"hydra.run.dir. Keys that may change: "
                f"{', '.join(k + '*' if k.endswith('.') else k for k in SAFE_ON_RESUME)}.")
        log.info("resuming %s at step %d (%.1f min trained)", self.directory, state["step"],
                 state.get("train_time_s", 0.0) / 60)
        return state

    def write(self, state: dict, config: VideoConfig) -> None:
        """Save ``state`` (with ``config``) as the newest checkpoint."""
        self.checkpointer.save({**state, "config": config_dict(config)},
                               meta={"step": int(state["step"])})
