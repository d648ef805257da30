"""Non-finite guard: skip an optimiser step whose loss or gradient norm is NaN/inf.

One NaN in a replay batch (a reward, an observation) would otherwise turn every
weight to NaN in one step. :class:`NonFiniteGuard` lets the learner check each
part (world model, actor, critic) before its optimiser steps: a non-finite part
is skipped with no parameter, optimiser-state or buffer change (buffers such as
the return normaliser's EMA are restored), the skip is counted and logged, and
after ``max_consecutive`` updates in a row with a skipped part it raises
:class:`NonFiniteUpdateError`.
"""

from __future__ import annotations

import logging
import torch
from torch import nn

__all__ = ["NonFiniteGuard", "NonFiniteUpdateError"]

log = logging.getLogger(__name__)


class NonFiniteUpdateError(RuntimeError):
    """Too many consecutive learner updates had non-finite losses or gradients.

    Examples:
        >>> issubclass(NonFiniteUpdateError, RuntimeError)
        True
    """


class NonFiniteGuard(nn.Module):
    """Per-part skip counters (saved in the learner's ``state_dict``) and the checks.

    Examples:
        >>> guard = NonFiniteGuard(["model"], max_consecutive=2)
        >>> guard.finite("model", torch.tensor(1.0), torch.tensor(2.0))
        True
        >>> guard.finite("model", torch.tensor(float("nan")), torch.tensor(2.0))
        False
        >>> guard.end_update(); int(guard.skipped[0]), int(guard.consecutive)
        (1, 1)
        >>> _ = guard.finite("model", torch.tensor(float("inf")), torch.tensor(0.0)); guard.end_update()
        Traceback (most recent call last):
        ...
        torchrl_vta.guard.NonFiniteUpdateError: 2 consecutive learner updates ...
    """

    def __init__(self, parts: list[str], *, max_consecutive: int = 10):
        super().__init__()
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}.")
        self.parts = list(parts)
        self.max_consecutive = max_consecutive
        self.register_buffer("skipped", torch.zeros(len(parts), dtype=torch.long))
        self.register_buffer("consecutive", torch.zeros((), dtype=torch.long))
        self._skipped_now: list[str] = []
        self._last: dict[str, tuple[float, float]] = {}

    def finite(self, part: str, loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        """Whether ``part`` may step; a ``False`` is counted as a skip."""
        ok = bool(torch.isfinite(loss.detach()).all() & torch.isfinite(grad_norm.detach()).all())
        if not ok:
            index = self.parts.index(part)
            self.skipped[index] += 1
            self._skipped_now.append(part)
            self._last[part] = (float(loss.detach().float().sum()), float(grad_norm.detach().float()))
            log.warning("Non-finite %s update skipped (loss %s, grad norm %s); %d skipped so far.",
                        part, *self._last[part], int(self.skipped[index]))
        return ok

    def end_update(self) -> None:
        """Close one learner update: count consecutive skips, raise after ``max_consecutive``."""
        skipped, self._skipped_now = self._skipped_now, []
        if not skipped:
            self.consecutive.zero_()
            return
        self.consecutive += 1
        if int(self.consecutive) >= self.max_consecutive:
            detail = ", ".join(f"{part} loss {loss} grad norm {norm}"
                               for part, (loss, norm) in self._last.items())
            raise NonFiniteUpdateError(
                f"{int(self.consecutive)} consecutive learner updates had non-finite losses or "
                f"gradients (last: {detail}); the weights are those of the last finite update "
                "and no non-finite weights were checkpointed. Look for NaN/inf in the replay "
                "data (rewards, observations) or lower the learning rates; the limit is "
                "optim.max_skipped_updates."
            )

    @staticmethod
    def snapshot_buffers(module: nn.Module):
        """Copy ``module``'s floating buffers; returns a callable that writes them back."""
        buffers = {name: buf for name, buf in module.named_buffers() if buf.is_floating_point()}
        snapshot = {name: buf.detach().clone() for name, buf in buffers.items()}

        def restore() -> None:
            with torch.no_grad():
                for name, value in snapshot.items():
                    buffers[name].copy_(value)

        return restore
