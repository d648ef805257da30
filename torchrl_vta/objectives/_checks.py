"""Argument and input checks shared by the losses (private)."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def nonnegative(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is finite and >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def entry(loss, tensordict: TensorDictBase, name: str) -> torch.Tensor:
    """The entry the loss reads as ``name`` (``loss.tensor_keys.<name>``), or a KeyError
    naming the key and the ``set_keys`` fix."""
    key: NestedKey = getattr(loss.tensor_keys, name)
    value = tensordict.get(key, None)
    if value is None:
        raise KeyError(
            f"{type(loss).__name__} needs {key!r} ({name}) in the input TensorDict; if it "
            f"lives under another key, call loss.set_keys({name}=<that key>)."
        )
    return value


def total_loss(losses: TensorDictBase) -> torch.Tensor:
    """Sum of the ``loss_*`` entries of a loss output (what the optimiser minimises).

    Examples:
        >>> from tensordict import TensorDict
        >>> total_loss(TensorDict(loss_a=torch.tensor(2.0), kl=torch.tensor(5.0)))
        tensor(2.)
    """
    return sum(value for key, value in losses.items() if key.startswith("loss_"))
