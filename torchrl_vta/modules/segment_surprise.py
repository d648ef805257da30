"""The surprise criterion of the :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`:
the causal peak test, its trough, and the running statistics it normalises by.

The running scale is a buffer (like BatchNorm's running statistics) derived from an EMA
histogram of ``log(1 + surprise)`` over training sequences (updated *after* each sequence was
decided), in nats, frozen in eval mode and at acting time. ``surprise_reference`` chooses it:

* ``"split"`` (default): the minimum-error split of the histogram into "expected" and
  "event" (:func:`split_surprise`), with threshold 1: a READ is a peak above the split. It
  adapts to each world's surprise levels and is robust to the heavy tail of large events.
* ``"split_interior"``: ``"split"``, except where its capped search ends on the half-mass
  bound (a cut at the edge of the range searched, not a minimum of the criterion): there the
  lowest interior minimum of the criterion above it (:func:`split_surprise` with
  ``interior=True``). On the recorded histograms of maze seed 1 it keeps the cut at 19.5–24.5
  nats (13–14 % above) where the split fell onto the walking mode at update 4,150; on seed 0
  it differs at one early update only. Measured online in ``benchmarks/BOUNDARY_QUALITY.md``.
* ``"split3"``: the upper cut of a three-class minimum-error split (quiet, a shoulder of
  smaller expected changes, events; :func:`split_surprise3`), falling back to ``"split"``
  where the middle class is only a sliver of the event tail. For worlds whose expected
  changes (a new wall edge while walking) form a shoulder with no gap before the events.
* ``"clusters"``: ``"split"``, raised to the upper cut of Otsu's three-class split where
  the histogram holds three clusters (:func:`split_surprise_clusters`): quiet steps, a
  mode of expected changes, events. For worlds whose expected steps form two modes, where
  the two-class split can jump between the two cuts during training (maze seed 1).
* ``"max"``: a running maximum, the ``surprise_quantile`` (0.99) quantile of the histogram,
  with threshold 0 and prominence 0.1 (SUNTA's max-normalised peaks). It copes with a
  multi-modal surprise where no split falls before the events (the maze's view changes),
  but it ties the READs to the largest events: where their tail is long (one_ball) it
  misses the smaller ones, and in training the READ rate then falls (see
  ``benchmarks/BOUNDARY_QUALITY.md``).
"""

from __future__ import annotations

import torch

from torchrl_vta.modules.surprise_split import (
    BINS,
    LOG_MAX,
    histogram_quantile,
    split_surprise,
    split_surprise3,
    split_surprise_clusters,
)

__all__ = ["SURPRISE_FEATURES", "SURPRISE_REARMS", "SURPRISE_REFERENCES", "SurpriseCriterion"]

# The running scale of the surprise criterion, and the threshold (in units of that scale)
# each uses unless one is given.
SURPRISE_REFERENCES = {"split": 1.0, "split_interior": 1.0, "split3": 1.0, "clusters": 1.0,
                       "max": 0.0}
# What the trough restarts from after a READ (``surprise_rearm``; or a fraction in (0, 1)).
SURPRISE_REARMS = ("rise", "typical")
# Surprise features fed to the learned posterior of "learned+surprise": log(1 + KL), the
# normalised surprise and its rise above the segment's trough.
SURPRISE_FEATURES = 3


def _check_fraction(name: str, value: float, *, low: float = 0.0, high: float | None = None):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low or (
        high is not None and value > high
    ):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}.")
    return float(value)


def _refresh_after_load(module, incompatible_keys) -> None:
    # A module-level function, not a lambda: policies are pickled to collector workers.
    module._refresh_typical()


class SurpriseCriterion:
    """The surprise part of :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy` (a
    mixin of that ``nn.Module``: its options, its ``surprise_scale`` and
    ``surprise_histogram`` buffers and the methods below).

    Example:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
        >>> policy = SegmentPolicy(kind="surprise", surprise_init_scale=2.0)
        >>> policy.surprise_read(torch.tensor([1.0, 5.0]), torch.zeros(2))[0].tolist()
        [False, True]
    """

    def _init_surprise(self, surprise_reference, surprise_threshold, surprise_prominence,
                       surprise_quantile, surprise_min_nats, surprise_momentum,
                       surprise_init_scale) -> None:
        if surprise_reference not in SURPRISE_REFERENCES:
            raise ValueError(
                f"surprise_reference={surprise_reference!r} is not one of "
                f"{tuple(SURPRISE_REFERENCES)}."
            )
        self.surprise_reference = surprise_reference
        if surprise_threshold is None:
            surprise_threshold = SURPRISE_REFERENCES[surprise_reference]
        self.surprise_threshold = _check_fraction("surprise_threshold", surprise_threshold)
        self.surprise_prominence = _check_fraction("surprise_prominence", surprise_prominence)
        self.surprise_quantile = _check_fraction(
            "surprise_quantile", surprise_quantile, low=0.0, high=1.0
        )
        if not 0.5 <= self.surprise_quantile < 1.0:
            raise ValueError(
                f"surprise_quantile must be in [0.5, 1) (a high quantile of the surprise), "
                f"got {surprise_quantile!r}."
            )
        self.surprise_min_nats = _check_fraction("surprise_min_nats", surprise_min_nats)
        self.surprise_momentum = _check_fraction(
            "surprise_momentum", surprise_momentum, low=0.0, high=1.0
        )
        init = _check_fraction("surprise_init_scale", surprise_init_scale)
        if init <= 0:
            raise ValueError(f"surprise_init_scale must be > 0, got {surprise_init_scale!r}.")
        self.register_buffer("surprise_scale", torch.tensor(init))
        self.register_buffer("surprise_histogram", torch.zeros(BINS))
        # Derived from the two above once per update, not on every RSSM step; not in the
        # state dict (older ones load unchanged), so a load refreshes it.
        self.register_buffer("surprise_typical", torch.tensor(0.0), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def _init_rearm(self, surprise_rearm) -> None:
        rearm = surprise_rearm
        fraction = isinstance(rearm, (int, float)) and not isinstance(rearm, bool)
        if not (0 < rearm < 1 if fraction else rearm in SURPRISE_REARMS):
            raise ValueError(f"surprise_rearm={surprise_rearm!r} is not one of "
                             f"{SURPRISE_REARMS} or a fraction in (0, 1).")
        self.surprise_rearm = float(surprise_rearm) if fraction else surprise_rearm
        # "rise" and "typical" are the ends of the fraction's range (see surprise_trough).
        self._rearm_fraction = float(rearm) if fraction else {"rise": 1.0, "typical": 0.0}[rearm]

    def _init_warmup(self, surprise_warmup) -> None:
        if not isinstance(surprise_warmup, int) or isinstance(surprise_warmup, bool) or (
            surprise_warmup < 0
        ):
            raise ValueError(f"surprise_warmup must be an int >= 0 (training sequences), got "
                             f"{surprise_warmup!r}.")
        if surprise_warmup and self.kind != "surprise":
            raise ValueError(f"surprise_warmup={surprise_warmup} needs boundary kind "
                             f"'surprise' (the criterion it holds back), got {self.kind!r}; "
                             f"set surprise_warmup=0 or the kind to 'surprise'.")
        self.surprise_warmup = surprise_warmup
        if surprise_warmup:
            # Only with a warm-up, so the state dicts of runs without one are unchanged.
            self.register_buffer("surprise_updates", torch.zeros((), dtype=torch.long))

    def warming_up(self) -> torch.Tensor | bool:
        """Whether the criterion is still held back by ``surprise_warmup`` (a bool tensor,
        so that deciding stays free of data-dependent branches).

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(kind="surprise", surprise_warmup=1)
            >>> bool(policy.warming_up())
            True
            >>> policy.update_statistics(torch.tensor([1.0, 2.0]))
            >>> bool(policy.warming_up())
            False
        """
        if not self.surprise_warmup:
            return False
        return self.surprise_updates < self.surprise_warmup

    def normalise(self, surprise: torch.Tensor) -> torch.Tensor:
        """Surprise (nats) in units of the running scale.

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> SegmentPolicy(surprise_init_scale=4.0).normalise(torch.tensor(2.0)).item()
            0.5
        """
        return surprise / self.surprise_scale

    def surprise_read(
        self, surprise: torch.Tensor, trough: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The causal peak criterion: ``(read, normalised)`` from ``surprise`` (nats) and
        the lowest normalised surprise since the last READ (``trough``; 0 after a reset).

        READ iff ``u >= surprise_threshold``, ``u - trough >= surprise_prominence`` and
        ``surprise >= surprise_min_nats``, with ``u = surprise / scale``; never during the
        ``surprise_warmup``.

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(kind="surprise", surprise_init_scale=2.0)
            >>> read, normalised = policy.surprise_read(torch.tensor([0.5, 3.0]), torch.zeros(2))
            >>> read.tolist(), normalised.tolist()
            ([False, True], [0.25, 1.5])
        """
        normalised = self.normalise(surprise.detach())
        read = (normalised >= self.surprise_threshold) & (
            normalised - trough >= self.surprise_prominence
        )
        if self.surprise_min_nats > 0:
            read = read & (surprise.detach() >= self.surprise_min_nats)
        if self.surprise_warmup:
            read = read & ~self.warming_up()
        return read, normalised

    def surprise_trough(
        self,
        normalised: torch.Tensor,
        read: torch.Tensor,
        trough: torch.Tensor,
        structural: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The trough carried out of a step: the lower of ``trough`` and ``normalised``
        where it COPYs. After a READ (whatever forced it), with ``surprise_rearm="rise"``
        (default) it is ``normalised``, so the next READ needs a rise above the READ's own
        surprise (a plateau READs once, and so does a smaller event right after a larger
        one); with ``"typical"`` it is the typical surprise (the histogram's median,
        normalised; ``normalised`` if lower), so the next step READs if it is itself a
        peak above what a step usually brings (back-to-back events both READ; before the
        first statistics update it rearms as ``"rise"``). A fraction ``f`` in (0, 1) sits
        between the two (``"rise"`` is ``f = 1``, ``"typical"`` ``f = 0``): the trough
        restarts at ``f * normalised`` (the typical surprise if higher), so a second event
        of comparable size READs, a smaller after-shock of the first does not; like
        ``"typical"``, a plateau above the split READs on every step. After a
        structural READ, whose surprise is not defined (no continued belief), it is the
        typical surprise either way.

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy()
            >>> policy.surprise_trough(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]),
            ...                        torch.tensor([0.2, 0.2])).tolist()
            [0.5, 0.20000000298023224]
        """
        read = read.detach().reshape(normalised.shape).to(torch.bool)
        restart = normalised
        if self._rearm_fraction < 1:
            typical = self.typical_surprise()
            floor = torch.maximum(typical, self._rearm_fraction * normalised)
            # No statistics yet (typical 0): a restart at 0 would READ every step above the
            # initial scale, so the untrained policy rearms as "rise" does.
            restart = torch.where(typical > 0, torch.minimum(normalised, floor), normalised)
        carried = torch.where(read, restart, torch.minimum(trough, normalised))
        if structural is not None:
            carried = torch.where(structural.reshape(carried.shape), self.typical_surprise(),
                                  carried)
        return carried.detach()

    def event_split(self) -> torch.Tensor:
        """The split (nats) of the surprise histogram that its ``surprise_reference`` uses
        (the two-class minimum-error split for ``"max"``): above it a step is an event
        candidate. ``inf`` before any training sequence.

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(surprise_reference="max", surprise_momentum=0.0)
            >>> policy.event_split().item()
            inf
            >>> policy.update_statistics(torch.tensor([1.0] * 90 + [50.0] * 10))
            >>> 1.0 < policy.event_split().item() < 50.0
            True
        """
        seen = self.surprise_histogram.sum() > 0
        # The split references hold it as their scale already (set with the histogram).
        split = (split_surprise(self.surprise_histogram) if self.surprise_reference == "max"
                 else self.surprise_scale)
        return torch.where(seen, split, float("inf"))

    def typical_surprise(self) -> torch.Tensor:
        """The median of the surprise histogram in units of the scale (0 before any
        training sequence), kept with the scale whenever the histogram changes.

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(surprise_reference="max", surprise_momentum=0.0)
            >>> policy.typical_surprise().item()
            0.0
            >>> policy.update_statistics(torch.tensor([1.0] * 60 + [50.0] * 40))
            >>> 0.02 < policy.typical_surprise().item() < 0.03
            True
        """
        return self.surprise_typical

    @torch.no_grad()
    def _refresh_typical(self) -> None:
        median = histogram_quantile(self.surprise_histogram, 0.5)
        seen = self.surprise_histogram.sum() > 0
        self.surprise_typical.copy_(torch.where(seen, median / self.surprise_scale, 0.0))

    def surprise_features(
        self, surprise: torch.Tensor, normalised: torch.Tensor, trough: torch.Tensor
    ) -> torch.Tensor:
        """Inputs ``[..., 3]`` of a surprise-informed learned posterior (all detached).

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> SegmentPolicy().surprise_features(torch.zeros(2), torch.zeros(2),
            ...                                   torch.zeros(2)).shape
            torch.Size([2, 3])
        """
        return torch.stack(
            [surprise.detach().clamp_min(0).log1p(), normalised, normalised - trough], -1
        ).detach()

    @torch.no_grad()
    def update_statistics(self, surprise: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Add ``surprise`` (entries where ``valid``) to the EMA histogram and set the scale
        from it (its minimum-error split, or its ``surprise_quantile`` quantile for
        ``surprise_reference="max"``). Called by the RSSM after a training sequence was
        decided (never while acting).

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(surprise_momentum=0.0)
            >>> quiet, events = torch.full((90,), 2.0), torch.full((10,), 40.0)
            >>> values, valid = torch.cat([quiet, events, torch.tensor([500.0])]), torch.arange(101) < 100
            >>> policy.update_statistics(values, valid)
            >>> 2.0 < policy.surprise_scale.item() <= 40.0
            True
            >>> maximum = SegmentPolicy(surprise_reference="max", surprise_momentum=0.0)
            >>> maximum.update_statistics(values, valid)
            >>> 40.0 <= maximum.surprise_scale.item() < 45.0
            True
        """
        values = surprise.detach().reshape(-1)
        if valid is not None:
            values = values[valid.reshape(-1)]
        if self.surprise_warmup:
            self.surprise_updates.add_(1)
        if values.numel() == 0:
            return
        logs = values.float().clamp_min(0).log1p().clamp_max(LOG_MAX)
        counts = torch.histc(logs, BINS, 0.0, LOG_MAX).to(self.surprise_histogram)
        fresh = self.surprise_histogram.sum() == 0
        momentum = 0.0 if fresh else self.surprise_momentum
        self.load_histogram(
            momentum * self.surprise_histogram + (1 - momentum) * counts / counts.sum()
        )

    @torch.no_grad()
    def load_histogram(self, histogram: torch.Tensor) -> None:
        """Set the EMA histogram (``[128]``, of ``log(1 + surprise)``) and derive the scale
        from it as :meth:`update_statistics` does, e.g. to replay a stored model's statistics.

        Examples:
            >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> import math
            >>> values = torch.tensor([1.0] * 90 + [40.0] * 10).log1p()
            >>> policy = SegmentPolicy(surprise_reference="max")
            >>> policy.load_histogram(torch.histc(values, 128, 0.0, math.log1p(1e4)))
            >>> 40.0 <= policy.surprise_scale.item() < 45.0
            True
        """
        if histogram.shape != self.surprise_histogram.shape:
            raise ValueError(
                f"histogram must have shape {tuple(self.surprise_histogram.shape)}, "
                f"got {tuple(histogram.shape)}."
            )
        self.surprise_histogram.copy_(histogram)
        if self.surprise_reference == "max":
            scale = histogram_quantile(self.surprise_histogram, self.surprise_quantile)
        elif self.surprise_reference == "split_interior":
            scale = split_surprise(self.surprise_histogram, interior=True)
        elif self.surprise_reference == "split3":
            scale = split_surprise3(self.surprise_histogram)
        elif self.surprise_reference == "clusters":
            scale = split_surprise_clusters(self.surprise_histogram)
        else:
            scale = split_surprise(self.surprise_histogram)
        self.surprise_scale.copy_(scale)
        self._refresh_typical()
