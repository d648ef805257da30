"""Pictures people read faster than numbers: boundary strips (open-loop predictions under
their boundaries) and the labelled canvases of the video experiments, in the package's one
boundary colour convention.

A boundary strip is a grid of frames, one row per source (e.g. truth, then the
model's reconstruction/prediction), time left to right. Under every column a
bar shows the boundaries: red where the model READs (starts a segment), orange
where a READ was forced (first step, episode start, segment limit), green where
the ground truth has an event. A white vertical line separates the context
(filtered) from the open-loop prediction.

Frames as PNG / GIF files: :mod:`~torchrl_vta.viz_files`; learning curves:
:mod:`~torchrl_vta.viz_curves`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from torchrl_vta.viz_curves import plot_learning_curves, read_scalar_log
from torchrl_vta.viz_files import gif_bytes, save_gif, save_png, to_uint8_frames

__all__ = [
    "Canvas",
    "EVENT_COLOUR",
    "FORCED_COLOUR",
    "READ_COLOUR",
    "SCORE_COLOUR",
    "boundary_strip",
    "gif_bytes",
    "plot_learning_curves",
    "read_scalar_log",
    "save_gif",
    "save_png",
    "to_uint8_frames",
]

# The package's one boundary colour convention (every strip, also examples/vta_video.py).
READ_COLOUR = (230, 40, 40)
FORCED_COLOUR = (255, 160, 0)
EVENT_COLOUR = (40, 200, 60)
#: Bar heights of a READ score (P(READ), normalised surprise).
SCORE_COLOUR = (70, 140, 255)
_BAR = 4


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
        read: ``[T]`` model boundaries (READ = 1), or ``[T, L]`` one column per level
            (level 1 first); drawn red under the frames, one bar per level.
        forced: ``[T]`` (or ``[T, L]``, as ``read``) forced boundaries, drawn orange
            (over red).
        events: ``[T]`` ground-truth events, or ``[T, K]`` one column per level of
            events; drawn green, one bar per column, under the READ bars.
        context: number of filtered steps before the open-loop prediction; a
            white line marks the split.

    Examples:
        >>> image = boundary_strip([torch.zeros(5, 3, 8, 8)], read=torch.tensor([1, 0, 0, 1, 0]),
        ...                        events=torch.tensor([0, 0, 0, 1, 0]), context=2)
        >>> image.shape, image[8 + 1, 3 * 8 + 3].tolist()
        ((16, 40, 3), [230, 40, 40])
        >>> two_levels = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 0], [1, 1]])
        >>> boundary_strip([torch.zeros(5, 3, 8, 8)], read=two_levels, events=two_levels).shape
        (24, 40, 3)
    """
    frames = [to_uint8_frames(row) for row in rows]
    steps, height, width, _ = frames[0].shape
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError("every row must have the same [T, C, H, W] shape.")
    grid = [np.concatenate(list(row), axis=1) for row in frames]

    def columns(x):
        if x is None:
            return [None]
        x = torch.as_tensor(x).reshape(steps, -1).bool().cpu().numpy()
        return [x[:, j] for j in range(x.shape[1])]

    reads, forces = columns(read), columns(forced)
    forces += [None] * (len(reads) - len(forces))
    for level_read, level_forced in zip(reads, forces):
        grid.append(_bar([(level_read, READ_COLOUR), (level_forced, FORCED_COLOUR)], steps,
                         width))
    if events is not None:
        for level_events in columns(events):
            grid.append(_bar([(level_events, EVENT_COLOUR)], steps, width))
    image = np.concatenate(grid, axis=0)
    if context is not None and 0 < context < steps:
        image[:, context * width - 1 : context * width] = 255
    return image


_CANVAS_SCALE = 2
_CANVAS_GAP = 2
_CANVAS_BAR = 10
_CANVAS_LABEL = 64


def _canvas_frame(image: np.ndarray, dim: bool = False) -> np.ndarray:
    """uint8 [3, H, W] -> upscaled [H', W', 3]; ``dim`` darkens context frames."""
    frame = image.transpose(1, 2, 0).repeat(_CANVAS_SCALE, 0).repeat(_CANVAS_SCALE, 1)
    return (frame * 0.45).astype(np.uint8) if dim else frame


class Canvas:
    """Labelled rows of frames and coloured marker bars under a title, drawn with PIL
    (``pip install "torchrl_vta[video]"``): the video experiments' strips and generations.

    Example:
        >>> import tempfile, os
        >>> canvas = Canvas(columns=3, frame_size=8, title="demo")
        >>> canvas.frames("seq 0", np.zeros((3, 3, 8, 8), np.uint8))
        >>> canvas.bar("READ", [READ_COLOUR, None, FORCED_COLOUR])
        >>> canvas.bar("P(READ)", [SCORE_COLOUR] * 3, heights=[0.1, 0.5, 1.0])
        >>> path = canvas.save(os.path.join(tempfile.mkdtemp(), "c.png"))
        >>> path.suffix
        '.png'
    """

    def __init__(self, columns: int, frame_size: int, title: str):
        self.cell = frame_size * _CANVAS_SCALE + _CANVAS_GAP
        self.width = _CANVAS_LABEL + columns * self.cell
        self.rows: list[np.ndarray] = []
        self.labels: list[tuple[int, str]] = []
        self.title = title
        self.height = 14 * (title.count("\n") + 1) + 4

    def frames(self, label: str, frames: np.ndarray, dim=None, offset: int = 0) -> None:
        """A row of uint8 frames ``[T, 3, H, W]`` from column ``offset``; ``dim[t]`` darkens."""
        row = np.zeros((self.cell, self.width, 3), np.uint8)
        for i, image in enumerate(frames):
            x = _CANVAS_LABEL + (offset + i) * self.cell
            tile = _canvas_frame(image, bool(dim[i]) if dim is not None else False)
            row[: tile.shape[0], x : x + tile.shape[1]] = tile
        self._add(row, label)

    def bar(self, label: str, colours: list, heights=None) -> None:
        """A bar row: one colour (or ``None``) per column, of ``heights`` in [0, 1] if given."""
        tall = 2 * _CANVAS_BAR if heights is not None else _CANVAS_BAR
        row = np.full((tall + _CANVAS_GAP, self.width, 3), 20, np.uint8)
        for i, colour in enumerate(colours):
            if colour is None:
                continue
            x = _CANVAS_LABEL + i * self.cell
            filled = tall if heights is None else max(1, round(float(heights[i]) * tall))
            row[tall - filled : tall, x : x + self.cell - _CANVAS_GAP] = colour
        self._add(row, label)

    def space(self, pixels: int = 8) -> None:
        """An empty row between groups."""
        self._add(np.zeros((pixels, self.width, 3), np.uint8), "")

    def _add(self, row: np.ndarray, label: str) -> None:
        self.labels.append((self.height + sum(r.shape[0] for r in self.rows), label))
        self.rows.append(row)

    def save(self, path: str | Path) -> Path:
        """Write the canvas as PNG; returns the path."""
        from PIL import Image, ImageDraw

        rows = np.concatenate([np.zeros((self.height, self.width, 3), np.uint8), *self.rows])
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        title_width = int(max(probe.textlength(line) for line in self.title.split("\n"))) + 8
        image = Image.new("RGB", (max(self.width, title_width), rows.shape[0]))
        image.paste(Image.fromarray(rows), (0, 0))
        draw = ImageDraw.Draw(image)
        draw.multiline_text((4, 2), self.title, fill=(255, 255, 255), spacing=3)
        for y, label in self.labels:
            if label:
                draw.text((2, y), label, fill=(220, 220, 220))
        image.save(path)
        return Path(path)
