"""Frames as pictures and files: tensors to uint8 frames, PNG images and animated GIFs (as
files or bytes), written with ``imageio`` (``pip install "torchrl_vta[video]"``); an optional
dependency missing names the extra that has it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from torchrl_vta.pixels import to_uint8

__all__ = ["gif_bytes", "save_gif", "save_png", "to_uint8_frames"]


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """``[T, C, H, W]`` (uint8, or float in [0, 1]) to ``[T, H, W, 3]`` uint8.

    Examples:
        >>> to_uint8_frames(torch.ones(2, 3, 4, 4)).shape
        (2, 4, 4, 3)
    """
    frames = frames.detach().cpu()
    if frames.is_floating_point():
        frames = to_uint8(frames)
    frames = frames.permute(0, 2, 3, 1).numpy()
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    return frames


def save_png(path: str | Path, image: np.ndarray, *, scale: int = 2) -> Path:
    """Write ``image`` ``[H, W, 3]`` uint8 as a PNG, upscaled ``scale`` times (nearest).

    Needs ``imageio`` (``pip install "torchrl_vta[video]"``).

    Examples:
        >>> import tempfile, os
        >>> image = np.zeros((4, 6, 3), np.uint8)
        >>> path = save_png(os.path.join(tempfile.mkdtemp(), "strip.png"), image)
        >>> _imageio().imread(path).shape
        (8, 12, 3)
    """
    imageio = _imageio()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.repeat(np.repeat(image, scale, 0), scale, 1)
    imageio.imwrite(path, image)
    return path


def save_gif(path: str | Path, frames: torch.Tensor, *, fps: int = 15, scale: int = 2) -> Path:
    """Write frames ``[T, C, H, W]`` as an animated GIF (needs ``imageio``).

    Examples:
        >>> import tempfile, os
        >>> path = save_gif(os.path.join(tempfile.mkdtemp(), "ep.gif"), torch.rand(3, 3, 4, 4))
        >>> len(_imageio().mimread(path))
        3
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gif_bytes(frames, fps=fps, scale=scale))
    return path


def gif_bytes(frames: torch.Tensor, *, fps: int = 15, scale: int = 2) -> bytes:
    """Frames ``[T, C, H, W]`` (uint8, or float in [0, 1]) encoded as an animated GIF,
    upscaled ``scale`` times (needs ``imageio``).

    Examples:
        >>> gif_bytes(torch.rand(3, 3, 4, 4))[:6]
        b'GIF89a'
    """
    array = to_uint8_frames(frames)
    array = np.repeat(np.repeat(array, scale, 1), scale, 2)
    return _imageio().mimwrite("<bytes>", list(array), format="GIF", duration=1000 / fps,
                               loop=0)


def _optional_import(module: str, purpose: str, extra: str):
    """Import ``module`` or fail with the ``pip install`` line of the extra that has it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - exercised without the extra
        package = module.split(".")[0]
        raise ImportError(
            f'{purpose} needs {package}: pip install "torchrl_vta[{extra}]".'
        ) from err


def _imageio():
    return _optional_import("imageio.v2", "Writing pictures", "video")

