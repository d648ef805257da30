"""Prediction heads on latent features: reward, value and continue.

- :class:`TwoHotHead` (and its named forms :class:`RewardHead`,
  :class:`ValueHead`): a :class:`~torchrl.modules.DreamerV3MLP` producing logits
  over TorchRL's :class:`~torchrl.modules.SymExpTwoHot` support (255 bins,
  symexp-spaced on ``[-20, 20]`` in symlog space), trained by two-hot cross
  entropy. The output layer starts at zero, as in DreamerV3, so a fresh head
  predicts exactly 0 instead of a large random return.
- :class:`ContinueHead`: a Bernoulli logit of "the episode goes on".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchrl.modules import DreamerV3MLP, SymExpTwoHot

from torchrl_vta.modules.encoders import _positive_int

__all__ = ["ContinueHead", "RewardHead", "TwoHotHead", "ValueHead"]


class TwoHotHead(nn.Module):
    """Scalar head with a symlog two-hot output: ``features -> logits [*, num_bins]``.

    Args:
        in_features (int): input size (inputs given to ``forward`` are concatenated).

    Keyword Args:
        layers (int): hidden layers. Defaults to 2.
        units (int): hidden width. Defaults to 256.
        num_bins (int): support size. Defaults to 255.
        zero_init (bool): zero the output layer so the initial prediction is
            exactly 0. Defaults to ``True``.
        device (torch.device, optional): device of the parameters.

    Examples:
        >>> import torch
        >>> head = TwoHotHead(6, units=16)
        >>> logits = head(torch.randn(4, 10, 6))
        >>> logits.shape
        torch.Size([4, 10, 255])
        >>> bool((head.mean(logits) == 0).all())
        True
        >>> head.loss(logits, torch.ones(4, 10)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        in_features: int,
        *,
        layers: int = 2,
        units: int = 256,
        num_bins: int = 255,
        zero_init: bool = True,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}.")
        # Recorded so a head of the same shape can be built (the intrinsic critic).
        self.layers, self.units, self.num_bins = layers, units, num_bins
        self.mlp = DreamerV3MLP(
            self.in_features,
            num_bins,
            depth=_positive_int("layers", layers),
            num_cells=_positive_int("units", units),
            outscale=0.0 if zero_init else 1.0,
            device=device,
        )
        self.two_hot = SymExpTwoHot(num_bins).to(device)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        """Return logits ``[*, num_bins]``."""
        return self.mlp(*features)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """Decode logits to the expected raw value, shape ``[*, 1]``."""
        return self.two_hot(logits)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Two-hot cross entropy against raw targets ``[*]`` or ``[*, 1]``; returns ``[*]``."""
        return self.two_hot.loss(logits, target.to(logits.dtype))


class RewardHead(TwoHotHead):
    """Reward predictor: a :class:`TwoHotHead` (zero-initialised by default).

    Examples:
        >>> import torch
        >>> head = RewardHead(6, units=16)
        >>> head.mean(head(torch.randn(3, 6))).shape
        torch.Size([3, 1])
    """


class ValueHead(TwoHotHead):
    """Critic: a :class:`TwoHotHead` (zero-initialised by default).

    Examples:
        >>> import torch
        >>> head = ValueHead(6, units=16)
        >>> head.mean(head(torch.randn(3, 6))).shape
        torch.Size([3, 1])
    """


class ContinueHead(nn.Module):
    """Bernoulli head for the continue flag (``1 - terminated``): ``features -> logit [*, 1]``.

    Args:
        in_features (int): input size (inputs given to ``forward`` are concatenated).

    Keyword Args:
        layers (int): hidden layers. Defaults to 2.
        units (int): hidden width. Defaults to 256.
        device (torch.device, optional): device of the parameters.

    Examples:
        >>> import torch
        >>> head = ContinueHead(6, units=16)
        >>> logit = head(torch.randn(4, 6))
        >>> logit.shape, head.prob(logit).shape
        (torch.Size([4, 1]), torch.Size([4, 1]))
        >>> head.loss(logit, torch.ones(4, dtype=torch.bool)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        in_features: int,
        *,
        layers: int = 2,
        units: int = 256,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.mlp = DreamerV3MLP(
            self.in_features,
            1,
            depth=_positive_int("layers", layers),
            num_cells=_positive_int("units", units),
            device=device,
        )

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        """Return the continue logit ``[*, 1]``."""
        return self.mlp(*features)

    def prob(self, logit: torch.Tensor) -> torch.Tensor:
        """Probability that the episode continues, ``[*, 1]``."""
        return torch.sigmoid(logit)

    def loss(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross entropy per sample, ``[*]``; target bool/float ``[*]`` or ``[*, 1]``."""
        if target.shape == logit.shape[:-1]:
            target = target.unsqueeze(-1)
        if target.shape != logit.shape:
            raise ValueError(
                f"target must have shape {tuple(logit.shape[:-1])} or "
                f"{tuple(logit.shape)}, got {tuple(target.shape)}."
            )
        return F.binary_cross_entropy_with_logits(
            logit, target.to(logit.dtype), reduction="none"
        ).squeeze(-1)
