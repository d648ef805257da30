"""Pictures people read faster than numbers: boundary strips, open-loop predictions, videos.

A boundary strip is a grid of frames, one row per source (e.g. truth, then the
model's reconstruction/prediction), time left to right. Under every column a
bar shows the boundaries: red where the model READs (starts a segment), orange
where a READ was forced (first step, episode start, segment limit), green where
the ground truth has an event. A white vertical line separates the context
(filtered) from the open-loop prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["boundary_strip", "save_gif", "save_png", "to_uint8_frames"]

_READ = (230, 40, 40)
_FORCED = (255, 160, 0)
_EVENT = (40, 200, 60)
_BAR = 4


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """``[T, C, H, W]`` (uint8, or float in [0, 1]) to ``[T, H, W, 3]`` uint8.

    Examples:
        >>> to_uint8_frames(torch.ones(2, 3, 4, 4)).shape
        (2, 4, 4, 3)
    """
    frames = frames.detach().cpu()
    if frames.is_floating_point():
        frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    frames = frames.permute(0, 2, 3, 1).numpy()
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    return frames


def _bar(marks: Sequence[tuple[np.ndarray | None, tuple[int, int, int]]], steps: int, width: int):
    bar = np.zeros((_BAR, steps * width, 3), np.uint8)
    for flags, colour in marks:
        if flags is None:
            continue
        for t in np.flatnonzero(np.asarray(flags, bool)):
            bar[:, t * width + 1 : (t + 1) * width - 1] = colour
    return bar


def boundary_strip(
    rows: Sequence[torch.Tensor],
    *,
    read: torch.Tensor | None = None,
    forced: torch.Tensor | None = None,
    events: torch.Tensor | None = None,
    context: int | None = None,
) -> np.ndarray:
    """One image: frame rows over time, with READ / forced / event bars.

    Args:
        rows: frame sequences ``[T, C, H, W]`` of equal shape (truth first).
        read: ``[T]`` model boundaries (READ = 1); drawn red under the frames.
        forced: ``[T]`` forced boundaries, drawn orange (over red).
        events: ``[T]`` ground-truth events, drawn green in a second bar.
        context: number of filtered steps before the open-loop prediction; a
            white line marks the split.

    Examples:
        >>> image = boundary_strip([torch.zeros(5, 3, 8, 8)], read=torch.tensor([1, 0, 0, 1, 0]),
        ...                        events=torch.tensor([0, 0, 0, 1, 0]), context=2)
        >>> image.shape, image[8 + 1, 3 * 8 + 3].tolist()
        ((16, 40, 3), [230, 40, 40])
    """
    frames = [to_uint8_frames(row) for row in rows]
    steps, height, width, _ = frames[0].shape
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError("every row must have the same [T, C, H, W] shape.")
    grid = [np.concatenate(list(row), axis=1) for row in frames]

    def flags(x):
        return None if x is None else torch.as_tensor(x).reshape(-1).bool().cpu().numpy()

    grid.append(_bar([(flags(read), _READ), (flags(forced), _FORCED)], steps, width))
    if events is not None:
        grid.append(_bar([(flags(events), _EVENT)], steps, width))
    image = np.concatenate(grid, axis=0)
    if context is not None and 0 < context < steps:
        image[:, context * width - 1 : context * width] = 255
    return image


def save_png(path: str | Path, image: np.ndarray, *, scale: int = 2) -> Path:
    """Write ``image`` ``[H, W, 3]`` uint8 as a PNG, upscaled ``scale`` times (nearest).

    Needs ``imageio`` (``pip install "torchrl_vta[video]"``).
    """
    imageio = _imageio()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.repeat(np.repeat(image, scale, 0), scale, 1)
    imageio.imwrite(path, image)
    return path


def save_gif(path: str | Path, frames: torch.Tensor, *, fps: int = 15, scale: int = 2) -> Path:
    """Write frames ``[T, C, H, W]`` as an animated GIF (needs ``imageio``)."""
    imageio = _imageio()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = to_uint8_frames(frames)
    array = np.repeat(np.repeat(array, scale, 1), scale, 2)
    imageio.mimsave(path, list(array), duration=1000 / fps, loop=0)
    return path


def _imageio():
    try:
        import imageio.v2 as imageio
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError(
            'Writing pictures needs imageio: pip install "torchrl_vta[video]".'
        ) from err
    return imageio
