"""Graceful stop on SIGTERM / SIGINT: finish the current step, checkpoint, exit 0.

Inside ``with GracefulStop() as stop:`` the first SIGTERM or SIGINT only sets
``stop.requested`` (the training loop checks it between updates, writes a
checkpoint, closes the collector and logger and returns); a second one exits
the process at once (status 128 + signal number). The previous handlers are
restored on exit. Outside the main thread it does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

__all__ = ["GracefulStop"]

log = logging.getLogger(__name__)


class GracefulStop:
    """Turn the first SIGTERM/SIGINT into a flag; the second exits immediately.

    Examples:
        >>> import os, signal
        >>> with GracefulStop() as stop:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     bool(stop)
        True
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict = {}

    def __bool__(self) -> bool:
        return self.requested is not None

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            log.warning("Second %s: exiting now without a checkpoint.", signal.Signals(signum).name)
            os._exit(128 + signum)
        self.requested = signum
        log.warning("%s received: finishing the current step, checkpointing, then exiting "
                    "(send it again to exit now).", signal.Signals(signum).name)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
