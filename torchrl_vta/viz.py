"""Pictures people read faster than numbers: boundary strips, open-loop predictions, videos,
learning curves.

A boundary strip is a grid of frames, one row per source (e.g. truth, then the
model's reconstruction/prediction), time left to right. Under every column a
bar shows the boundaries: red where the model READs (starts a segment), orange
where a READ was forced (first step, episode start, segment limit), green where
the ground truth has an event. A white vertical line separates the context
(filtered) from the open-loop prediction.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

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


def read_scalar_log(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one scalar of TorchRL's ``CSVLogger`` (``step,value`` lines) as two arrays.

    A resumed run logs again from its checkpoint's frame count, so the file can
    step backwards; the entries the killed run wrote past that point are dropped
    (they belong to a history the resumed run no longer has).

    Examples:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "return.csv")
        >>> _ = open(path, "w").write("2000,1.0\\n4000,2.0\\n5000,9.0\\n4000,3.0\\n6000,4.0\\n")
        >>> steps, values = read_scalar_log(path)
        >>> steps.tolist(), values.tolist()
        ([2000.0, 4000.0, 6000.0], [1.0, 3.0, 4.0])
    """
    steps: list[float] = []
    values: list[float] = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            step, value = (float(field) for field in line.split(","))
        except ValueError as err:
            raise ValueError(
                f"{path}:{line_number}: expected 'step,value' (TorchRL CSVLogger), got {line!r}."
            ) from err
        while steps and steps[-1] >= step:
            steps.pop()
            values.pop()
        steps.append(step)
        values.append(value)
    return np.asarray(steps), np.asarray(values)


def plot_learning_curves(
    runs: Mapping[str, str | Path],
    path: str | Path,
    *,
    scalars: Sequence[str] | None = None,
    references: Mapping[str, float] | None = None,
    marks: Mapping[str, float] | None = None,
    window: int = 16,
    title: str | None = None,
) -> Path:
    """Plot the CSV logs of several recipe runs side by side, one panel per scalar.

    Each run is an ``output_dir`` of ``examples/vta_dreamer.py`` (or any directory
    with ``logs/<exp>/scalars/<scalar>.csv``). ``scalars`` defaults to those of
    ``eval/return`` and ``train/episode_return`` that some run has logged (a short
    run may not have finished an episode yet); named scalars must exist. Noisy
    scalars with more than ``window`` points (training-episode returns) are drawn
    as faint dots plus a trailing moving average. ``references`` adds labelled
    horizontal lines (e.g. the return of random or zero actions), ``marks``
    labelled vertical lines at env steps (e.g. where a run was resumed with a
    changed option). Needs matplotlib (``pip install "torchrl_vta[plot]"``).

    Examples:
        >>> import tempfile, os
        >>> run = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(run, "logs", "exp", "scalars", "eval"))
        >>> _ = open(os.path.join(run, "logs", "exp", "scalars", "eval", "return.csv"), "w").write(
        ...     "2000,100\\n4000,300\\n")
        >>> plot_learning_curves({"flat": run}, os.path.join(run, "curves.png"),
        ...                      scalars=["eval/return"], references={"random": 50},
        ...                      marks={"resumed": 3000}).name
        'curves.png'
    """
    figure_class = _matplotlib_figure()
    if not runs:
        raise ValueError("plot_learning_curves needs at least one run (label -> output_dir).")
    logs = {label: _scalar_files(label, Path(run_dir)) for label, run_dir in runs.items()}
    if scalars is None:
        logged = {name for files in logs.values() for name in files}
        scalars = [name for name in _DEFAULT_CURVES if name in logged]
        if not scalars:
            raise KeyError(f"No run logged any of {list(_DEFAULT_CURVES)}; pass scalars=[...].")
    # A bare Figure (no pyplot) leaves the caller's matplotlib backend and state alone.
    figure = figure_class(figsize=(5.5 * len(scalars), 3.8))
    axes = figure.subplots(1, len(scalars), squeeze=False)
    for axis, scalar in zip(axes[0], scalars):
        plotted = False
        for index, (label, files) in enumerate(logs.items()):
            colour = _COLOURS[index % len(_COLOURS)]
            if scalar not in files:
                continue
            steps, values = read_scalar_log(files[scalar])
            if len(values) > window:
                axis.scatter(steps, values, s=6, color=colour, alpha=0.25, linewidths=0)
                kernel = np.ones(window) / window
                axis.plot(steps[window - 1 :], np.convolve(values, kernel, "valid"), color=colour,
                          label=f"{label} (mean of {window})")
            else:
                axis.plot(steps, values, "o-", color=colour, label=label)
            plotted = True
        if not plotted:
            known = sorted({name for files in logs.values() for name in files})
            raise KeyError(f"No run logged {scalar!r}; logged scalars: {known}.")
        for name, value in (references or {}).items():
            axis.axhline(value, color="grey", linestyle="--", linewidth=1)
            axis.annotate(name, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8,
                          color="grey", va="bottom")
        for name, step in (marks or {}).items():
            axis.axvline(step, color="black", linestyle=":", linewidth=1)
            axis.annotate(name, (step, 0.99), xycoords=("data", "axes fraction"), fontsize=8,
                          rotation=90, ha="right", va="top")
        axis.set_xlabel("env steps")
        axis.set_title(scalar)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


_DEFAULT_CURVES = ("eval/return", "train/episode_return")
_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def _scalar_files(label: str, run_dir: Path) -> dict[str, Path]:
    """``{"eval/return": path, ...}`` for every scalar CSV under ``run_dir/logs``."""
    files = {}
    for csv in sorted(run_dir.glob("logs/*/scalars/**/*.csv")):
        scalars_dir = next(parent for parent in csv.parents if parent.name == "scalars")
        files[csv.relative_to(scalars_dir).with_suffix("").as_posix()] = csv
    if not files:
        raise FileNotFoundError(
            f"Run {label!r}: no CSV scalars under {run_dir}/logs/*/scalars/; pass the "
            "output_dir of a run made with logger.backend=csv."
        )
    return files


def _matplotlib_figure():
    return _optional_import("matplotlib.figure", "Plotting learning curves", "plot").Figure
