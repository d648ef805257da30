"""An ensemble of K MLPs evaluated as one batched network, and its disagreement.

Plan2Explore (Sekar et al. 2020) rewards the agent where an ensemble of one-step predictors
disagrees: where the world model has seen too little to agree on what comes next.
:class:`EnsembleMLP` holds the K members' weights stacked (``[K, in, out]`` per layer), so
all members run in one batched matrix product instead of K small ones; each member is
initialised independently, which is all that makes them disagree off the data.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from torchrl_vta.modules.encoders import _positive_int

__all__ = ["EnsembleMLP", "disagreement"]


def disagreement(predictions: torch.Tensor) -> torch.Tensor:
    """Variance across the members (dim 0), averaged over the features: ``[*B, 1]``.

    Zero where every member predicts the same, growing with their spread.

    Examples:
        >>> import torch
        >>> disagreement(torch.ones(5, 3, 4)).flatten().tolist()
        [0.0, 0.0, 0.0]
        >>> disagreement(torch.tensor([[[1.0, 1.0]], [[-1.0, -1.0]]])).item()
        1.0
    """
    return predictions.var(0, unbiased=False).mean(-1, keepdim=True)


class EnsembleMLP(nn.Module):
    """``members`` independent MLPs of one shape, run as one batched network.

    Each member: ``layers`` hidden layers (Linear, LayerNorm, SiLU; DreamerV3's block) of
    ``units`` units, then a linear output. ``forward(x)`` maps ``x [*B, in_features]`` (the
    same input for every member) to ``[members, *B, out_features]``.

    Args:
        in_features (int): input size.
        out_features (int): prediction size.

    Keyword Args:
        members (int): ensemble size K. Defaults to 8.
        layers (int): hidden layers per member. Defaults to 2.
        units (int): hidden width. Defaults to 256.

    Examples:
        >>> import torch
        >>> ensemble = EnsembleMLP(6, 3, members=4, units=16)
        >>> ensemble(torch.randn(2, 5, 6)).shape
        torch.Size([4, 2, 5, 3])
        >>> ensemble.disagreement(torch.randn(2, 5, 6)).shape
        torch.Size([2, 5, 1])
    """

    def __init__(self, in_features: int, out_features: int, *, members: int = 8,
                 layers: int = 2, units: int = 256):
        super().__init__()
        self.members = _positive_int("members", members)
        if members < 2:
            raise ValueError(f"members must be >= 2 (a disagreement needs two), got {members}.")
        _positive_int("in_features", in_features)
        _positive_int("out_features", out_features)
        _positive_int("units", units)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise ValueError(f"layers must be an int >= 0, got {layers!r}.")
        sizes = [in_features] + [units] * layers + [out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            weight = torch.empty(members, fan_in, fan_out)
            for member in weight:  # nn.Linear's initialisation, drawn per member
                nn.init.kaiming_uniform_(member.T, a=math.sqrt(5))
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self.norm_weights = nn.ParameterList(
            nn.Parameter(torch.ones(members, 1, units)) for _ in range(layers))
        self.norm_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, 1, units)) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(self.members, -1, -1)
        hidden = len(self.norm_weights)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias, h, weight)
            if i < hidden:
                h = F.layer_norm(h, h.shape[-1:])
                h = F.silu(h * self.norm_weights[i] + self.norm_biases[i])
        return h.reshape(self.members, *batch, h.shape[-1])

    def disagreement(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`disagreement` of the members' predictions at ``x``: ``[*B, 1]``."""
        return disagreement(self(x))
