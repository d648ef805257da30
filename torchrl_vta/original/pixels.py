"""The original VTA's frames: 32x32 RGB, quantised to a few bits and scaled to [-1, 1].

Example:
    >>> x = preprocess_pixels(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8), dequantize=False)
    >>> postprocess_pixels(x).max().item()
    251
"""

from __future__ import annotations

import torch

from torchrl_vta.modules.latent import _check_int

__all__ = ["postprocess_pixels", "preprocess_pixels"]

IMAGE_SIZE = 32


def preprocess_pixels(
    pixels: torch.Tensor, bits: int = 5, *, dequantize: bool = True
) -> torch.Tensor:
    """uint8 pixels -> floats in ``[-1, 1]`` on ``2 ** bits`` levels (the original VTA input).

    Each value is reduced to ``bits`` bits (``floor(p / 2 ** (8 - bits))``), then placed at
    ``(level + u) / 2 ** bits`` and mapped to ``[-1, 1]``. With ``dequantize`` (training),
    ``u ~ U(0, 1)`` (uniform dequantisation noise of one level, 1/32 of the range for 5
    bits); without it, ``u = 0.5`` (the level's centre), so the output is deterministic and
    takes exactly ``2 ** bits`` values.

    Examples:
        >>> x = preprocess_pixels(torch.arange(256, dtype=torch.uint8), dequantize=False)
        >>> x.unique().numel(), x.min().item(), x.max().item()
        (32, -0.96875, 0.96875)
        >>> bool(preprocess_pixels(torch.zeros(4, dtype=torch.uint8)).lt(-15 / 16).all())
        True
    """
    if pixels.dtype != torch.uint8:
        raise ValueError(f"pixels must be uint8, got dtype {pixels.dtype}.")
    _check_int("bits", bits)
    if bits > 8:
        raise ValueError(f"bits must be in [1, 8], got {bits}.")
    levels = 2**bits
    level = torch.div(pixels, 2 ** (8 - bits), rounding_mode="floor").float()
    offset = torch.rand_like(level) if dequantize else torch.full_like(level, 0.5)
    return (level + offset) / levels * 2.0 - 1.0


def postprocess_pixels(x: torch.Tensor) -> torch.Tensor:
    """Floats in ``[-1, 1]`` (model space) -> uint8 pixels, for viewing.

    Examples:
        >>> postprocess_pixels(torch.tensor([-1.0, 0.0, 1.0, 3.0])).tolist()
        [0, 128, 255, 255]
    """
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _check_frames(name: str, x: torch.Tensor, channels: int) -> None:
    expected = (channels, IMAGE_SIZE, IMAGE_SIZE)
    if x.dim() < 4 or tuple(x.shape[-3:]) != expected:
        raise ValueError(
            f"{name} must have shape [..., {channels}, 32, 32] (the original VTA CNN reads "
            f"32x32 frames), got {tuple(x.shape)}."
        )
