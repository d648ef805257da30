"""Cuts of a histogram of ``log(1 + surprise)``: the running scales of the surprise criterion.

The :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy` keeps an EMA histogram of
the observation level's surprise (128 bins of ``log(1 + nats)`` up to 1e4 nats, ~7% apart)
and derives its scale from it with one of these functions: a high quantile
(:func:`histogram_quantile`, a running maximum), the two-class minimum-error split
(:func:`split_surprise`), a three-class one (:func:`split_surprise3`) or the split that
switches to the three-class Otsu cut where the histogram has three clusters
(:func:`split_surprise_clusters`). All take ``[128]`` histograms (any scale) and return
nats.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "BINS",
    "LOG_MAX",
    "histogram_quantile",
    "split_surprise",
    "split_surprise3",
    "split_surprise_clusters",
]

# 128 bins of log(1 + surprise) up to 1e4 nats (~7% apart).
BINS = 128
LOG_MAX = math.log1p(1e4)


def _bin_edges(like: torch.Tensor) -> torch.Tensor:
    # The edges of the histogram bins of log(1 + surprise), on like's device and dtype.
    return torch.linspace(0.0, LOG_MAX, BINS + 1, device=like.device, dtype=like.dtype)


def histogram_quantile(histogram: torch.Tensor, quantile: float) -> torch.Tensor:
    """The ``quantile`` (nats) of a histogram of ``log(1 + surprise)``, as the upper edge of
    the bin where the cumulative mass reaches it (a running maximum for ``quantile`` near 1).

    Examples:
        >>> values = torch.tensor([1.0] * 95 + [30.0] * 4 + [900.0])
        >>> hist = torch.histc(values.log1p(), BINS, 0, LOG_MAX)
        >>> 30.0 <= histogram_quantile(hist, 0.99).item() < 33.0
        True
    """
    cdf = histogram.cumsum(0) / histogram.sum().clamp_min(1e-12)
    edges = _bin_edges(cdf)
    # The tolerance keeps float round-off in the cumulative sum from skipping a bin.
    index = torch.searchsorted(cdf, torch.tensor(quantile - 1e-6, dtype=cdf.dtype,
                                                 device=cdf.device)).clamp_max(BINS - 1)
    return torch.expm1(edges[index + 1]).clamp_min(1e-6)


def split_surprise(histogram: torch.Tensor, *, interior: bool = False) -> torch.Tensor:
    """The minimum-error split (nats) of a histogram of ``log(1 + surprise)``.

    Kittler and Illingworth's threshold: the cut whose two sides, each fitted by a
    Gaussian, classify the histogram with the least error,
    ``argmin_t P1 log(s1 / P1) + P2 log(s2 / P2)``, searched at or below Otsu's split and
    with at least half of the mass below the cut. Unlike Otsu's split alone (two classes
    of equal spread) it stays close to a tight "expected" mode when the "event" side is
    broad, as surprise is. Returned as the upper edge of the last "expected" bin.

    ``interior=True``: where that search ends on its lower bound (the half-mass cut, so not a
    minimum of the criterion but the edge of the range searched, which happens when Otsu's
    split drops between two modes of expected steps), the lowest interior local minimum of
    the criterion above it is taken instead, if one is lower than the bound's value.

    Examples:
        >>> hist = torch.histc(torch.tensor([1.0] * 50 + [5.0] * 5).log1p(), BINS, 0, LOG_MAX)
        >>> 1.0 < split_surprise(hist).item() <= 5.0
        True
        >>> steps = [0.5] * 23 + [1.5] * 12 + [3.0] * 16 + [6.0] * 16 + [12.0] * 18 + [22.0] * 15
        >>> hist = torch.histc(torch.tensor(steps + [90.0] * 14).log1p(), BINS, 0, LOG_MAX)
        >>> split_surprise(hist).item() < 12.0, 22.0 < split_surprise(hist, interior=True).item() < 90.0
        (True, True)
    """
    p = histogram / histogram.sum().clamp_min(1e-12)
    edges = _bin_edges(p)
    centres = (edges[:-1] + edges[1:]) / 2
    # A floor of one bin width on the spreads keeps a class of one bin finite.
    floor = (edges[1] - edges[0]) ** 2 / 12
    p1 = p.cumsum(0)
    m1 = (p * centres).cumsum(0)
    q1 = (p * centres.square()).cumsum(0)
    p2, m2, q2 = 1 - p1, m1[-1] - m1, q1[-1] - q1
    var1 = (q1 / p1.clamp_min(1e-12) - (m1 / p1.clamp_min(1e-12)).square()).clamp_min(floor)
    var2 = (q2 / p2.clamp_min(1e-12) - (m2 / p2.clamp_min(1e-12)).square()).clamp_min(floor)
    error = p1 * (0.5 * var1.log() - p1.clamp_min(1e-12).log()) + p2 * (
        0.5 * var2.log() - p2.clamp_min(1e-12).log()
    )
    # The criterion has degenerate minima where one side is a sliver of the tail (its
    # spread is tiny). Events are the minority, so the cut keeps at least half of the mass
    # below it, and it refines Otsu's split (the cut maximising the between-class
    # variance, never degenerate) downwards only.
    between = (m1[-1] * p1 - m1).square() / (p1 * p2).clamp_min(1e-12)
    between = torch.where((p1 > 1e-6) & (p2 > 1e-6), between, -1.0)
    otsu = between.argmax()
    index = torch.arange(p.numel(), device=p.device)
    valid = (p1 >= 0.5) & (p2 > 1e-6)
    allowed = valid & (index <= otsu)
    cut = torch.where(allowed, error, float("inf")).argmin() if allowed.any() else otsu
    if interior and allowed.any():
        low = index[allowed].min()
        inside = torch.zeros_like(valid)
        inside[1:-1] = (error[1:-1] <= error[:-2]) & (error[1:-1] <= error[2:])
        minima = valid & inside & (index > low) & (error < error[low]) & (cut == low)
        cut = index[minima].min() if minima.any() else cut
    return torch.expm1(edges[cut + 1]).clamp_min(1e-6)


def _class_costs(histogram: torch.Tensor) -> torch.Tensor:
    # cost[i, j]: Kittler-Illingworth term P log(sigma / P) of the class of bins [i, j),
    # +inf for an empty class; from cumulative moments, so every class at once.
    p = histogram / histogram.sum().clamp_min(1e-12)
    edges = _bin_edges(p)
    centres = (edges[:-1] + edges[1:]) / 2
    zero = p.new_zeros(1)
    moments = [torch.cat([zero, (p * centres**k).cumsum(0)]) for k in range(3)]
    mass, first, second = (m[None, :] - m[:, None] for m in moments)
    safe = mass.clamp_min(1e-12)
    var = (second / safe - (first / safe).square()).clamp_min((edges[1] - edges[0]) ** 2 / 12)
    return torch.where(mass > 1e-6, mass * (0.5 * var.log() - safe.log()), float("inf"))


def split_surprise3(histogram: torch.Tensor) -> torch.Tensor:
    """The upper cut (nats) of the three-class minimum-error split of a histogram of
    ``log(1 + surprise)``: quiet steps, a shoulder of smaller expected changes, events.

    The two cuts minimise the summed Kittler-Illingworth terms of the three classes, with at
    least half of the mass below the upper cut. Where the middle class holds less mass than
    the top one it is a sliver of the event tail, not a mode of expected steps, and the
    two-class :func:`split_surprise` is returned instead. That rule is a heuristic: a broad
    event mode (log-uniform over a decade) can split into two halves of similar mass, and
    the cut then falls inside the events. Hence an option, not the default.

    Examples:
        >>> values = torch.tensor([1.0] * 60 + [8.0] * 26 + [200.0] * 14).log1p()
        >>> hist = torch.histc(values, BINS, 0, LOG_MAX)
        >>> split_surprise(hist).item() < 8.0 < split_surprise3(hist).item() <= 200.0
        True
    """
    cost = _class_costs(histogram)
    total = cost[0, :, None] + cost + cost[:, -1][None, :]
    cut = torch.arange(BINS + 1, device=histogram.device)
    mass_below = (histogram / histogram.sum().clamp_min(1e-12)).cumsum(0)
    below = torch.cat([mass_below.new_zeros(1), mass_below])
    allowed = (cut[:, None] < cut[None, :]) & (below[None, :] >= 0.5)
    flat = torch.where(allowed, total, float("inf")).argmin()
    low, high = flat // (BINS + 1), flat % (BINS + 1)
    if not torch.isfinite(total[low, high]) or below[high] - below[low] < 1 - below[high]:
        return split_surprise(histogram)
    return torch.expm1(_bin_edges(histogram)[high]).clamp_min(1e-6)


# The within-class variance three equal classes leave of a uniform distribution, relative to
# two (1/9 over 1/4): a unimodal shape splits no better; a Gaussian leaves 0.52.
_UNIFORM_WITHIN_RATIO = 4 / 9


def _otsu_within(histogram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Otsu's two- and three-class splits from cumulative moments: the within-class variance
    # each leaves (two, three classes) and the upper cut (edge index) of the three classes.
    p = histogram / histogram.sum().clamp_min(1e-12)
    edges = _bin_edges(p)
    centres = (edges[:-1] + edges[1:]) / 2
    zero = p.new_zeros(1)
    mass = torch.cat([zero, p.cumsum(0)])
    first = torch.cat([zero, (p * centres).cumsum(0)])
    second = (p * centres.square()).sum()

    def between(w, m):  # the sum of m^2 / w over a class, -inf where it is empty
        return torch.where(w > 1e-6, m.square() / w.clamp_min(1e-12), float("-inf"))

    two = between(mass, first) + between(1 - mass, first[-1] - first)
    low, high = mass[:, None], mass[None, :]
    three = (between(low, first[:, None]) + between(high - low, first[None, :] - first[:, None])
             + between(1 - high, first[-1] - first[None, :]))
    flat = three.argmax()
    return second - two.max(), second - three.max(), flat % (BINS + 1)


def split_surprise_clusters(histogram: torch.Tensor) -> torch.Tensor:
    """:func:`split_surprise`, or the upper cut of Otsu's three-class split where the
    histogram of ``log(1 + surprise)`` holds three clusters (nats).

    Three clusters: the three classes leave less than 4/9 of the within-class variance the
    best two leave, the ratio of a uniform distribution (a Gaussian leaves 0.52), so a
    single mode keeps the two-class split. Then the events are the top cluster: a world
    whose expected steps form two modes (the maze's standing and walking views) has two
    candidate two-class cuts, and the minimum-error split can jump from the upper one to
    the lower one as the modes' masses drift in training. The cut only ever raises the
    split and keeps at least half of the mass below it.

    Examples:
        >>> values = torch.tensor([1.0] * 50 + [8.0] * 36 + [200.0] * 14).log1p()
        >>> hist = torch.histc(values, BINS, 0, LOG_MAX)
        >>> split_surprise(hist).item() < 8.0 < split_surprise_clusters(hist).item() <= 200.0
        True
        >>> quantiles = torch.linspace(0.001, 0.999, 999)
        >>> gaussian = 3 + 0.5 * 2**0.5 * torch.erfinv(2 * quantiles - 1)  # one mode
        >>> one = torch.histc(gaussian, BINS, 0, LOG_MAX)
        >>> bool(split_surprise_clusters(one) == split_surprise(one))
        True
    """
    two = split_surprise(histogram)
    within2, within3, high = _otsu_within(histogram)
    p = histogram / histogram.sum().clamp_min(1e-12)
    above = p[high:].sum()
    cut = torch.expm1(_bin_edges(p)[high]).clamp_min(1e-6)
    clustered = (within3 < _UNIFORM_WITHIN_RATIO * within2) & (above <= 0.5) & (cut > two)
    return torch.where(clustered, cut, two)
