"""Learning curves of recipe runs: TorchRL ``CSVLogger`` scalars read back
(:func:`read_scalar_log`, a killed-and-resumed run as one history) and plotted side by side with
matplotlib (:func:`plot_learning_curves`, ``pip install "torchrl_vta[plot]"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from torchrl_vta.viz_files import _optional_import

__all__ = ["plot_learning_curves", "read_scalar_log"]


def read_scalar_log(path: str | Path, *, keep_ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one scalar of TorchRL's ``CSVLogger`` (``step,value`` lines) as two arrays.

    A resumed run logs again from its checkpoint's frame count, so the file can
    step backwards; the entries the killed run wrote past that point are dropped
    (they belong to a history the resumed run no longer has). By default the steps are
    strictly increasing (one point per step, for curves); ``keep_ties=True`` keeps
    consecutive entries of one step (several episodes that ended in one batch), for counts.

    Examples:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "return.csv")
        >>> _ = open(path, "w").write("2000,1.0\\n4000,2.0\\n5000,9.0\\n4000,3.0\\n6000,4.0\\n")
        >>> steps, values = read_scalar_log(path)
        >>> steps.tolist(), values.tolist()
        ([2000.0, 4000.0, 6000.0], [1.0, 3.0, 4.0])
        >>> _ = open(path, "w").write("2000,1.0\\n2000,0.0\\n4000,2.0\\n3000,5.0\\n")
        >>> read_scalar_log(path, keep_ties=True)[1].tolist()
        [1.0, 0.0, 5.0]
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
        rewind = bool(steps) and (steps[-1] > step or (steps[-1] == step and not keep_ties))
        while rewind and steps and steps[-1] >= step:
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
