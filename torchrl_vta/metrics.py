"""Boundary-quality metrics: how well predicted segment boundaries match ground-truth events.

All functions take boolean tensors shaped ``[..., T]`` (any number of leading sequence
dimensions, time last) and evaluate every sequence separately before pooling the counts
over sequences (micro-averaging).

Conventions shared by every function:

* Position ``t = 0`` is never evaluated. The first step of a sequence always starts a
  segment (the forced first READ) and no event can be observed there, so both predicted
  boundaries and true events at ``t = 0`` are dropped.
* ``exclude`` marks *forced* predicted boundaries (segment-limit forcing, context frames
  forced to READ). They are removed from the predictions only. True events at excluded
  positions stay in the recall denominator, so that recall measures the events of the data,
  whatever the forcing did: a model forced at every step cannot shrink its own denominator.
* An empty denominator (no predictions for precision, no events for recall, neither for F1)
  gives ``zero_division`` (``0.0`` by default, ``float("nan")`` to flag it instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "boundary_scores",
    "boundary_auc",
    "boundary_offsets",
    "boundary_rates",
    "event_triggered_average",
    "periodic_boundaries",
    "per_tolerance_table",
]


def _check_time(name: str, tensor: torch.Tensor) -> None:
    # A trailing singleton (e.g. an env's event of shape [..., T, 1]) would silently be read as T = 1.
    if tensor.ndim == 0 or tensor.shape[-1] < 2:
        raise ValueError(
            f"{name} must be shaped [..., T] with time last and T >= 2, got {tuple(tensor.shape)}; "
            "squeeze a trailing singleton dimension first (e.g. event[..., 0])"
        )


def _as_bool(name: str, value, shape: torch.Size | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.dtype != torch.bool:
        if tensor.is_floating_point() or tensor.is_complex():
            raise ValueError(f"{name} must be a bool (or 0/1 integer) tensor, got dtype {tensor.dtype}")
        if ((tensor != 0) & (tensor != 1)).any():
            raise ValueError(f"{name} must only hold 0/1 values")
        tensor = tensor.bool()
    _check_time(name, tensor)
    if shape is not None and tensor.shape != shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    return tensor.detach().cpu()


def _prepare(pred, true, exclude) -> tuple[np.ndarray, np.ndarray]:
    """Flattens to ``[S, T]`` numpy arrays with t = 0 and excluded predictions removed."""
    pred = _as_bool("pred", pred)
    true = _as_bool("true", true, pred.shape)
    if exclude is not None:
        pred = pred & ~_as_bool("exclude", exclude, pred.shape)
    pred = pred.reshape(-1, pred.shape[-1]).numpy().copy()
    true = true.reshape(-1, true.shape[-1]).numpy().copy()
    pred[:, 0] = False
    true[:, 0] = False
    return pred, true


def _count_matches(pred_times: np.ndarray, true_times: np.ndarray, tolerance: int) -> int:
    """Size of a maximum one-to-one matching with ``|p - e| <= tolerance``.

    Each prediction is an interval ``[p - tol, p + tol]`` and each event a point. All
    intervals have the same width, so sorting by ``p`` sorts both their ends; handing each
    interval, in that order, the earliest free event inside it is then optimal (exchange
    argument: an optimal matching can always be rewritten to use the earliest free event
    for the interval that ends first, without losing a match). Nearest-event or
    smallest-distance-first greedy rules are *not* optimal; see the tests.
    """
    matches = 0
    j = 0
    for p in pred_times:
        while j < len(true_times) and true_times[j] < p - tolerance:
            j += 1
        if j < len(true_times) and true_times[j] <= p + tolerance:
            matches += 1
            j += 1
    return matches


def _ratio(num: float, den: float, zero_division: float) -> float:
    return float(num) / float(den) if den > 0 else float(zero_division)


def boundary_scores(
    pred,
    true,
    tolerance: int = 1,
    exclude=None,
    *,
    zero_division: float = 0.0,
) -> dict:
    """Precision, recall and F1 of predicted boundaries against true events within ``±tolerance``.

    Predictions and events are matched one-to-one per sequence (a maximum matching, so each
    event validates at most one prediction and vice versa); counts are summed over sequences.

    Args:
        pred: bool ``[..., T]``, predicted boundaries (READ = True).
        true: bool ``[..., T]``, ground-truth events.
        tolerance: largest allowed ``|t_pred - t_event|`` for a match (``>= 0``).
        exclude: optional bool ``[..., T]`` of forced boundaries, removed from ``pred``.
        zero_division: value returned for a ratio with an empty denominator.

    Returns:
        ``dict(precision, recall, f1, tp, fp, fn)``.

    Example:
        >>> pred = torch.tensor([[0, 0, 1, 0, 0, 1, 0, 0]], dtype=torch.bool)
        >>> true = torch.tensor([[0, 1, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
        >>> s = boundary_scores(pred, true, tolerance=1)
        >>> s["tp"], s["fp"], s["fn"], round(s["f1"], 3)
        (1, 1, 1, 0.5)
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int, got {tolerance!r}")
    pred, true = _prepare(pred, true, exclude)
    tp = 0
    for p_row, t_row in zip(pred, true):
        tp += _count_matches(np.flatnonzero(p_row), np.flatnonzero(t_row), int(tolerance))
    n_pred = int(pred.sum())
    n_true = int(true.sum())
    fp = n_pred - tp
    fn = n_true - tp
    return {
        "precision": _ratio(tp, n_pred, zero_division),
        "recall": _ratio(tp, n_true, zero_division),
        # 2tp / (2tp + fp + fn) equals the harmonic mean whenever both are defined.
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, zero_division),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def per_tolerance_table(
    pred,
    true,
    tolerances: Sequence[int] = (0, 1, 2),
    exclude=None,
    *,
    zero_division: float = 0.0,
) -> list[dict]:
    """:func:`boundary_scores` at several tolerances, one row (with a ``tolerance`` key) each.

    Example:
        >>> pred = torch.tensor([[0, 0, 1, 0, 0]], dtype=torch.bool)
        >>> true = torch.tensor([[0, 0, 0, 1, 0]], dtype=torch.bool)
        >>> [row["f1"] for row in per_tolerance_table(pred, true, tolerances=(0, 1))]
        [0.0, 1.0]
    """
    if len(tolerances) == 0:
        raise ValueError("tolerances must not be empty")
    return [
        {"tolerance": int(tol), **boundary_scores(pred, true, tol, exclude, zero_division=zero_division)}
        for tol in tolerances
    ]


def boundary_auc(read_prob, true, exclude=None) -> float:
    """ROC AUC of the READ probability as a detector of true events (rank-based, ties count 1/2).

    Positions ``t = 0`` and excluded (forced) positions are dropped entirely: the model's
    probability there is not what decided the boundary. Returns ``nan`` when the remaining
    positions hold only events or only non-events.

    Example:
        >>> prob = torch.tensor([[0.0, 0.9, 0.1, 0.8, 0.2]])
        >>> true = torch.tensor([[0, 1, 0, 1, 0]], dtype=torch.bool)
        >>> boundary_auc(prob, true)
        1.0
        >>> boundary_auc(1 - prob, true)
        0.0
    """
    prob = torch.as_tensor(read_prob).detach().cpu()
    if not prob.is_floating_point():
        raise ValueError(f"read_prob must be a floating-point tensor, got dtype {prob.dtype}")
    _check_time("read_prob", prob)
    true = _as_bool("true", true, prob.shape)
    keep = torch.ones_like(true)
    keep[..., 0] = False
    if exclude is not None:
        keep &= ~_as_bool("exclude", exclude, prob.shape)
    scores = prob[keep].double()
    labels = true[keep]
    if torch.isnan(scores).any():
        raise ValueError("read_prob contains NaN")
    n_pos = int(labels.sum())
    n_neg = int(labels.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Mann-Whitney U with mid-ranks for tied scores.
    values, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mid_ranks = ends - (counts.double() - 1.0) / 2.0
    pos_rank_sum = mid_ranks[inverse][labels].sum().item()
    return float((pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def boundary_rates(pred, true, exclude=None) -> dict:
    """Predicted-boundary rate, event rate and mean predicted segment length.

    ``boundary_rate`` and ``event_rate`` are counts per step over positions ``t >= 1``
    (forced boundaries removed from the first, per the module conventions), so they compare
    directly. ``mean_segment_length`` describes the segmentation the model actually used:
    every boundary counts, forced ones included, plus the segment opened at ``t = 0``.

    Example:
        >>> pred = torch.tensor([[1, 0, 1, 0, 1, 0, 0, 0, 0]], dtype=torch.bool)
        >>> true = torch.tensor([[0, 0, 0, 0, 1, 0, 0, 0, 0]], dtype=torch.bool)
        >>> boundary_rates(pred, true)
        {'boundary_rate': 0.25, 'event_rate': 0.125, 'mean_segment_length': 3.0}
    """
    raw_pred = _as_bool("pred", pred)
    free_pred, true = _prepare(raw_pred, true, exclude)
    raw_pred = raw_pred.reshape(-1, raw_pred.shape[-1])
    num_seq, length = raw_pred.shape
    steps = num_seq * (length - 1)
    segments = num_seq + int(raw_pred[:, 1:].sum())
    return {
        "boundary_rate": _ratio(free_pred.sum(), steps, float("nan")),
        "event_rate": _ratio(true.sum(), steps, float("nan")),
        "mean_segment_length": _ratio(num_seq * length, segments, float("nan")),
    }


def periodic_boundaries(
    shape: Sequence[int],
    *,
    count=None,
    period: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Evenly spaced boundaries: the periodic baseline at a given count or period.

    Args:
        shape: output shape ``[..., T]``.
        count: boundaries per sequence at ``t >= 1``, either an int or an integer tensor of
            shape ``shape[:-1]`` (e.g. a model's own per-sequence counts, to compare at the
            same number of boundaries). Boundaries go at ``floor(j * T / (count + 1))``,
            ``j = 1..count``, splitting each sequence into ``count + 1`` near-equal segments.
        period: alternatively, a boundary every ``period`` steps (``t = period, 2 period, ...``).
        device: device of the result.

    Returns:
        bool tensor of ``shape``; ``t = 0`` is always False.

    Example:
        >>> periodic_boundaries((1, 10), count=2).int().tolist()
        [[0, 0, 0, 1, 0, 0, 1, 0, 0, 0]]
        >>> periodic_boundaries((10,), period=4).int().tolist()
        [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    """
    shape = torch.Size(shape)
    if len(shape) == 0 or shape[-1] < 1:
        raise ValueError(f"shape must be [..., T] with T >= 1, got {tuple(shape)}")
    length = shape[-1]
    if (count is None) == (period is None):
        raise ValueError("pass exactly one of count and period")
    t = torch.arange(length, device=device)
    if period is not None:
        if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
            raise ValueError(f"period must be a positive int, got {period!r}")
        row = (t % int(period) == 0) & (t > 0)
        return row.expand(shape).clone()
    count = torch.as_tensor(count, device=device)
    if count.is_floating_point() or count.dtype == torch.bool:
        raise ValueError(f"count must be an int or integer tensor, got dtype {count.dtype}")
    count = count.expand(shape[:-1]) if count.ndim == 0 else count
    if count.shape != shape[:-1]:
        raise ValueError(f"count has shape {tuple(count.shape)}, expected {tuple(shape[:-1])}")
    if (count < 0).any() or (count > length - 1).any():
        raise ValueError(f"count must lie in [0, T - 1] = [0, {length - 1}]")
    count = count.long().unsqueeze(-1)
    j = torch.arange(1, length, device=device)
    # Positions floor(j T / (count + 1)) are distinct and in [1, T - 1] because count <= T - 1.
    positions = torch.div(j * length, count + 1, rounding_mode="floor")
    positions = torch.where(j <= count, positions, torch.zeros_like(positions))
    out = torch.zeros(shape, dtype=torch.bool, device=device)
    out.scatter_(-1, positions, torch.ones_like(positions, dtype=torch.bool))
    out[..., 0] = False
    return out


def boundary_offsets(pred, true, exclude=None, max_offset: int = 3) -> dict:
    """Histogram of the signed offset from each predicted boundary to its nearest event.

    A systematic offset (boundaries one or two steps before or after the events) shows up
    here as a peak away from 0, where F1 only shows lost matches. The offset is
    ``boundary time - event time`` (negative: the boundary comes first) to the nearest event
    of the same sequence; a tie goes to the earlier event. Keys ``-max_offset..max_offset``
    count boundaries at that offset, ``"far"`` those farther away or in a sequence without
    events. Module conventions apply (``t = 0`` dropped, ``exclude`` removes predictions).

    Example:
        >>> pred = torch.tensor([[0, 1, 0, 0, 0, 0, 1, 0, 0, 1]], dtype=torch.bool)
        >>> true = torch.tensor([[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
        >>> counts = boundary_offsets(pred, true, max_offset=2)
        >>> counts[-2], counts["far"]
        (1, 2)
    """
    if isinstance(max_offset, bool) or not isinstance(max_offset, (int, np.integer)) or max_offset < 0:
        raise ValueError(f"max_offset must be an int >= 0, got {max_offset!r}")
    pred, true = _prepare(pred, true, exclude)
    counts: dict = {offset: 0 for offset in range(-max_offset, max_offset + 1)}
    counts["far"] = 0
    for row_pred, row_true in zip(pred, true):
        events = np.flatnonzero(row_true)
        for p in np.flatnonzero(row_pred):
            if len(events) == 0:
                counts["far"] += 1
                continue
            distance = p - events
            offset = int(distance[np.argmin(np.abs(distance))])
            counts[offset if abs(offset) <= max_offset else "far"] += 1
    return counts


def event_triggered_average(signal, true, lags: Sequence[int] = (-3, -2, -1, 0, 1, 2, 3)) -> dict:
    """Mean of a per-step ``signal`` at ``event time + lag``, for each lag.

    Shows where a boundary score (surprise, P(READ)) peaks relative to the labelled events:
    a peak at lag -2 means the score rises two steps before the label. Only positions
    inside the sequence count; events at ``t = 0`` are dropped (module conventions).
    A lag with no valid position gives ``nan``.

    Example:
        >>> signal = torch.tensor([[0., 0., 5., 1., 0., 0.]])
        >>> true = torch.tensor([[0, 0, 0, 1, 0, 0]], dtype=torch.bool)
        >>> event_triggered_average(signal, true, lags=(-1, 0, 1))
        {-1: 5.0, 0: 1.0, 1: 0.0}
    """
    true = _as_bool("true", true)
    true = true.reshape(-1, true.shape[-1]).numpy().copy()
    true[:, 0] = False
    signal = torch.as_tensor(signal, dtype=torch.float64).detach().cpu()
    if signal.shape[-1] != true.shape[-1] or signal.numel() != true.size:
        raise ValueError(f"signal has shape {tuple(signal.shape)}, expected the shape of true")
    signal = signal.reshape(true.shape).numpy()
    rows, times = np.nonzero(true)
    out = {}
    for lag in lags:
        at = times + int(lag)
        valid = (at >= 0) & (at < true.shape[-1])
        out[int(lag)] = float(signal[rows[valid], at[valid]].mean()) if valid.any() else float("nan")
    return out
