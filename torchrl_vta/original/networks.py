"""The original VTA's networks: the convolutional frame encoder/decoder for 32x32 frames and
the non-causal Conv1d boundary posterior.

Frames in and out are in the package's model space, floats in ``[0, 1]``
(:mod:`torchrl_vta.pixels`); the convolutions compute on the paper's ``[-1, 1]``, mapped at
the encoder's input and the decoder's output."""

from __future__ import annotations

import torch
from torch import nn

from torchrl_vta.modules.latent import _check_int

__all__ = ["ConvBoundaryPosterior", "IMAGE_SIZE", "VTADecoder", "VTAEncoder"]

#: The original VTA's CNN reads and writes 32x32 frames.
IMAGE_SIZE = 32


def _check_frames(name: str, x: torch.Tensor, channels: int) -> None:
    expected = (channels, IMAGE_SIZE, IMAGE_SIZE)
    if x.dim() < 4 or tuple(x.shape[-3:]) != expected:
        raise ValueError(
            f"{name} must have shape [..., {channels}, 32, 32] (the original VTA CNN reads "
            f"32x32 frames), got {tuple(x.shape)}."
        )


class VTAEncoder(nn.Module):
    """4 x (Conv2d k4 + BatchNorm + ELU), strides 2, 2, 2, 1: 32x32 frames -> ``features``.

    Examples:
        >>> encoder = VTAEncoder(features=16)
        >>> encoder(torch.rand(2, 5, 3, 32, 32)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, channels: int = 3, features: int = 128):
        super().__init__()
        _check_int("channels", channels)
        _check_int("features", features)
        self.channels = channels
        self.features = features
        layers: list[nn.Module] = []
        width = channels
        # 32 -> 16 -> 8 -> 4 with (stride 2, pad 1), then a 4x4 valid conv down to 1x1.
        for stride, padding in ((2, 1), (2, 1), (2, 1), (1, 0)):
            layers += [
                nn.Conv2d(width, features, 4, stride, padding, bias=False),
                nn.BatchNorm2d(features),
                nn.ELU(),
            ]
            width = features
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Embed frames ``[..., C, 32, 32]`` (floats in ``[0, 1]``) to ``[..., features]``."""
        _check_frames("frames", frames, self.channels)
        batch = frames.shape[:-3]
        out = self.net(frames.reshape(-1, *frames.shape[-3:]) * 2.0 - 1.0)
        return out.reshape(*batch, self.features)


class VTADecoder(nn.Module):
    """``in_features`` -> 32x32 frames in ``[0, 1]``: 4 x ConvTranspose2d(k4) (1 -> 4 -> 8 ->
    16 -> 32) with BatchNorm + ELU between, Tanh last (the paper's ``[-1, 1]``, then mapped).

    An input width other than ``features`` is first mapped by Linear + ELU.

    Examples:
        >>> decoder = VTADecoder(8, features=16)
        >>> frames = decoder(torch.randn(2, 5, 8))
        >>> frames.shape, bool(frames.ge(0).all() and frames.le(1).all())
        (torch.Size([2, 5, 3, 32, 32]), True)
    """

    def __init__(self, in_features: int, features: int = 128, channels: int = 3):
        super().__init__()
        _check_int("in_features", in_features)
        _check_int("features", features)
        _check_int("channels", channels)
        self.features = features
        self.channels = channels
        self.project = (
            nn.Identity()
            if in_features == features
            else nn.Sequential(nn.Linear(in_features, features), nn.ELU())
        )
        layers: list[nn.Module] = []
        for stride, padding in ((1, 0), (2, 1), (2, 1)):
            layers += [
                nn.ConvTranspose2d(features, features, 4, stride, padding, bias=False),
                nn.BatchNorm2d(features),
                nn.ELU(),
            ]
        layers += [nn.ConvTranspose2d(features, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Decode ``[..., in_features]`` to frames ``[..., C, 32, 32]``."""
        batch = feature.shape[:-1]
        hidden = self.project(feature.reshape(-1, feature.shape[-1]))
        out = (self.net(hidden.reshape(-1, self.features, 1, 1)) + 1.0) / 2.0
        return out.reshape(*batch, *out.shape[-3:])


class ConvBoundaryPosterior(nn.Module):
    """The original non-causal boundary posterior over a sequence of embeddings.

    ``layers`` x (Conv1d k3 pad 1 without bias + BatchNorm + ELU), then Conv1d k3 -> 2
    logits (``READ``, ``COPY``): each step sees ``layers + 1`` frames on either side
    (+-4 with the default 3 layers). The ends of the sequence are zero-padded.

    Examples:
        >>> posterior = ConvBoundaryPosterior(6, layers=3)
        >>> posterior(torch.randn(2, 9, 6)).shape
        torch.Size([2, 9, 2])
        >>> posterior.half_window
        4
    """

    def __init__(self, embed_dim: int, *, layers: int = 3, hidden: int | None = None):
        super().__init__()
        _check_int("embed_dim", embed_dim)
        _check_int("layers", layers, minimum=0)
        hidden = embed_dim if hidden is None else _check_int("hidden", hidden)
        self.half_window = layers + 1
        modules: list[nn.Module] = []
        width = embed_dim
        for _ in range(layers):
            modules += [
                nn.Conv1d(width, hidden, 3, padding=1, bias=False),
                nn.BatchNorm1d(hidden),
                nn.ELU(),
            ]
            width = hidden
        modules.append(nn.Conv1d(width, 2, 3, padding=1))
        self.net = nn.Sequential(*modules)

    def forward(self, embed: torch.Tensor) -> torch.Tensor:
        """Boundary logits ``[*B, T, 2]`` for embeddings ``[*B, T, E]``."""
        if embed.dim() < 2:
            raise ValueError(f"embed must have shape [*B, T, E], got {tuple(embed.shape)}.")
        flat = embed.reshape(-1, *embed.shape[-2:]).transpose(1, 2)
        return self.net(flat).transpose(1, 2).reshape(*embed.shape[:-1], 2)
