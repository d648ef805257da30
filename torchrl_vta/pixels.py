"""One pixel convention for the whole package.

* **Exchange** (envs, datasets, replay, pictures, metrics): ``uint8`` frames
  ``[..., C, H, W]`` in ``[0, 255]``.
* **Model space** (what every model reads and writes, and what every reconstruction loss
  compares): floats in ``[0, 1]``. The agent world model, the original VTA and the losses
  all take frames this way; a ``uint8`` input is mapped by :func:`to_unit`.

The original VTA's networks compute on ``[-1, 1]`` as in the paper; that map lives inside
its encoder and decoder and is not visible at its interface.

Example:
    >>> import torch
    >>> frames = torch.tensor([0, 128, 255], dtype=torch.uint8)
    >>> to_unit(frames)[[0, 2]].tolist(), to_uint8(to_unit(frames)).tolist()
    ([0.0, 1.0], [0, 128, 255])
"""

from __future__ import annotations

import torch

from torchrl_vta.modules.latent import _check_int

__all__ = ["quantize_pixels", "to_uint8", "to_unit"]


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """Model-space frames: ``uint8`` divided by 255; floats are taken as already in ``[0, 1]``.

    Example:
        >>> to_unit(torch.full((2,), 255, dtype=torch.uint8)).tolist()
        [1.0, 1.0]
        >>> to_unit(torch.tensor([0.25])).tolist()
        [0.25]
    """
    return pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Model-space frames (floats, clamped to ``[0, 1]``) as ``uint8`` pixels, for pictures.

    Example:
        >>> to_uint8(torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0])).tolist()
        [0, 0, 128, 255, 255]
    """
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


def quantize_pixels(pixels: torch.Tensor, bits: int = 5, *, dequantize: bool = True) -> torch.Tensor:
    """``uint8`` pixels reduced to ``bits`` bits, as model-space floats on ``2 ** bits`` levels.

    Each value becomes ``level = floor(p / 2 ** (8 - bits))`` and is placed at
    ``(level + u) / 2 ** bits``. With ``dequantize`` (training) ``u ~ U(0, 1)``, uniform noise
    of one level (the original VTA's input); without it ``u = 0.5``, the level's centre, so
    the output is deterministic and takes exactly ``2 ** bits`` values.

    Examples:
        >>> x = quantize_pixels(torch.arange(256, dtype=torch.uint8), dequantize=False)
        >>> x.unique().numel(), x.min().item(), x.max().item()
        (32, 0.015625, 0.984375)
        >>> bool(quantize_pixels(torch.zeros(4, dtype=torch.uint8)).lt(1 / 32).all())
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
    return (level + offset) / levels
