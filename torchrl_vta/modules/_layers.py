"""Small layer factories shared by the RSSM modules (private)."""

from __future__ import annotations

from torch import nn

_NORMS = ("layer", "rms", "none")
_ACTS = ("silu", "elu")


def make_norm(kind: str, dim: int) -> nn.Module:
    """Return the normalisation layer named ``kind`` for ``dim`` features."""
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "rms":
        return nn.RMSNorm(dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r} is not one of {_NORMS}.")


def make_act(kind: str) -> nn.Module:
    """Return the activation named ``kind``."""
    if kind == "silu":
        return nn.SiLU()
    if kind == "elu":
        return nn.ELU()
    raise ValueError(f"act={kind!r} is not one of {_ACTS}.")


def dense_block(in_features: int, out_features: int, norm: str, act: str) -> nn.Sequential:
    """Linear, then norm, then activation (the DreamerV3 hidden layer)."""
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=norm == "none"),
        make_norm(norm, out_features),
        make_act(act),
    )
