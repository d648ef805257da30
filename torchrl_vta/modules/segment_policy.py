"""Where segment boundaries are decided: one :class:`SegmentPolicy` for every model.

Every READ/COPY decision of the agent RSSM (:class:`~torchrl_vta.modules.rssm.HierarchicalRSSM`)
and of the original VTA (:class:`~torchrl_vta.original.model.OriginalVTA`) goes through
this class: structural READs (first step of a sequence, ``is_init``), segment limits and the
roles they force (posterior, prior, imagination), the Gumbel temperature and its annealing,
straight-through sampling, the segment counters, and the criterion a boundary comes from:

* ``"learned"``: sampled from the boundary posterior's logits (VTA);
* ``"surprise"``: READ where the observation level's surprise (the KL between its posterior
  and prior computed on the *continued* belief, before deciding) is a causal peak: divided by
  a running scale it is at least ``surprise_threshold`` and has risen by at least
  ``surprise_prominence`` above its lowest value since the last READ (a peak's prominence
  measured on its left side only, so there is no look-ahead and the acting filter decides
  exactly as the training rollout);
* ``"learned+surprise"``: sampled from the boundary posterior, whose input includes the
  surprise features of :meth:`SegmentPolicy.surprise_features`.

The segment limits, the roles they force and the segment counters:
:mod:`~torchrl_vta.modules.segment_limits`.
The surprise criterion's running scale and statistics: :mod:`~torchrl_vta.modules.segment_surprise`.

Decisions never carry gradient into the surprise (it is computed from detached statistics),
so the boundary criterion cannot be trained away; dividing by the running scale keeps peaks
visible when the overall surprise falls as the model improves (the "hierarchical collapse"
of SUNTA).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from torchrl_vta.modules.boundary_ops import (
    READ,
    BoundarySample,
    TemperatureSchedule,
    force_logits,
    force_sample,
    sample_boundary,
)
from torchrl_vta.modules.segment_limits import LIMIT_MODES, SegmentLimits
from torchrl_vta.modules.segment_surprise import (
    SURPRISE_FEATURES,
    SURPRISE_REFERENCES,
    SurpriseCriterion,
)

__all__ = [
    "BOUNDARY_KINDS",
    "LIMIT_MODES",
    "SURPRISE_REFERENCES",
    "BoundaryDecision",
    "SegmentPolicy",
]

BOUNDARY_KINDS = ("learned", "surprise", "learned+surprise")


class BoundaryDecision(NamedTuple):
    """One step's (or sequence's) boundary.

    ``onehot [..., 2]`` has exact 0/1 forward values (straight-through gradient for
    sampled rows, none for forced or criterion rows); ``logits`` are the logits it was
    decided from after forcing (a criterion decision is written as ``±FORCE_LOGIT``);
    ``log_sample`` is the relaxed log-sample (for the Concrete KL); ``forced [...]`` marks
    structural and limit-forced rows (excluded from the boundary loss and the metrics).

    Examples:
        >>> policy = SegmentPolicy()
        >>> decision = policy.decide(torch.tensor([[3.0, -3.0]]), role="posterior",
        ...                          deterministic=True)
        >>> decision.read.tolist(), decision.forced.tolist()
        ([[1.0]], [False])
    """

    onehot: torch.Tensor
    logits: torch.Tensor
    log_sample: torch.Tensor
    forced: torch.Tensor

    @property
    def read(self) -> torch.Tensor:
        """READ indicator ``[..., 1]`` (0/1, straight-through)."""
        return self.onehot[..., READ : READ + 1]


class SegmentPolicy(SegmentLimits, SurpriseCriterion, nn.Module):
    """Every boundary decision of a hierarchical model (see the module docstring).

    Keyword Args:
        kind: ``"learned"`` (default), ``"surprise"`` or ``"learned+surprise"``.
        max_seg_len / max_seg_num: segment limits (``None`` disables one); length wins.
        limit_mode: ``"prior"`` forces the prior (filtering targets and imagination) only,
            as the original VTA; ``"both"`` also forces the posterior; ``"off"`` forces
            nothing. Structural READs happen regardless.
        temperature: Gumbel-softmax temperature, or a :class:`TemperatureSchedule` that
            :meth:`anneal` follows (the ``schedule`` attribute; it can be set later).
        surprise_reference: the running scale, ``"split"`` (default), ``"split_interior"``,
            ``"split3"``, ``"clusters"`` or ``"max"`` (see
            :mod:`~torchrl_vta.modules.segment_surprise`).
        surprise_threshold: a surprise READ needs ``surprise / scale >= threshold``
            (``None``: 1.0 with the splits, at or above the split; 0.0 with ``"max"``).
        surprise_prominence: ... and a rise of at least this much (in units of the scale)
            above the lowest normalised surprise since the last READ, so a plateau READs
            once and a new peak has to come out of a trough.
        surprise_quantile: the quantile used as running maximum (``"max"`` only).
        surprise_min_nats: a surprise READ also needs at least this much surprise in nats
            (0: no floor). An absolute amount of new information, so it depends on the
            observations and the latent sizes: a per-world option, not a default.
        surprise_momentum: EMA momentum of the surprise histogram.
        surprise_init_scale: the scale before any training sequence (nats).
        surprise_rearm: where the trough restarts after a READ: ``"rise"`` (default) at
            the READ's own surprise, so the next READ needs a rise above it (a plateau READs
            once; so does a smaller event right after a larger one); ``"typical"`` at the
            typical surprise, so a step right after a READ READs if it is itself a peak
            (back-to-back events both READ); a fraction ``f`` in (0, 1) at ``f`` times the
            READ's surprise (at least the typical one), so a comparable second event READs
            and a smaller after-shock does not (a plateau above the split READs on every
            step, as with ``"typical"``).
        surprise_warmup: training sequences (statistics updates) during which the surprise
            criterion never READs (structural READs still happen) while its statistics
            are gathered: the level below trains first, as SUNTA trains its low level
            before the high one. 0 (default): no warm-up. Surprise kinds only.

    Examples:
        >>> policy = SegmentPolicy(kind="surprise", surprise_init_scale=1.5)
        >>> surprise = torch.tensor([0.5, 6.0, 5.0, 0.4, 0.3, 2.0])   # nats, one sequence
        >>> trough = torch.zeros(())
        >>> reads = []
        >>> for value in surprise:
        ...     read, normalised = policy.surprise_read(value, trough)
        ...     trough = policy.surprise_trough(normalised, read, trough)
        ...     reads.append(bool(read))
        >>> reads
        [False, True, False, False, False, True]
    """

    def __init__(
        self,
        *,
        kind: str = "learned",
        max_seg_len: int | None = None,
        max_seg_num: int | None = None,
        limit_mode: str = "prior",
        temperature: float | TemperatureSchedule = 1.0,
        surprise_reference: str = "split",
        surprise_threshold: float | None = None,
        surprise_prominence: float = 0.1,
        surprise_quantile: float = 0.99,
        surprise_min_nats: float = 0.0,
        surprise_momentum: float = 0.99,
        surprise_init_scale: float = 1.0,
        surprise_rearm: str | float = "rise",
        surprise_warmup: int = 0,
    ):
        super().__init__()
        if kind not in BOUNDARY_KINDS:
            raise ValueError(f"boundary kind {kind!r} is not one of {BOUNDARY_KINDS}.")
        self.kind = kind
        self.limit_mode = limit_mode
        self.max_seg_len = max_seg_len
        self.max_seg_num = max_seg_num
        self.schedule = temperature if isinstance(temperature, TemperatureSchedule) else None
        self.temperature = self.schedule.initial if self.schedule else temperature
        self._init_surprise(surprise_reference, surprise_threshold, surprise_prominence,
                            surprise_quantile, surprise_min_nats, surprise_momentum,
                            surprise_init_scale)
        self._init_rearm(surprise_rearm)
        self._init_warmup(surprise_warmup)

    # ------------------------------------------------------------ options
    @property
    def temperature(self) -> float:
        """Gumbel-softmax temperature (settable; :meth:`anneal` sets it from the schedule);
        a follower's is its leader's (:meth:`follow`)."""
        leader = self.__dict__.get("_leader")
        return leader.temperature if leader is not None else self._temperature

    def follow(self, leader: "SegmentPolicy") -> "SegmentPolicy":
        """Take ``leader``'s temperature and limit mode from now on (the levels of a stack
        above level 1 follow level 1's policy, so annealing it or ``leader.limits(...)``
        acts on every level). Not a submodule: the state dict is unchanged.

        Examples:
            >>> leader = SegmentPolicy()
            >>> upper = SegmentPolicy().follow(leader)
            >>> with leader.limits("off"):
            ...     upper.limit_mode
            'off'
        """
        self.__dict__["_leader"] = leader
        return self

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not isinstance(value, torch.Tensor) and not value > 0:
            raise ValueError(f"temperature must be > 0, got {value!r}.")
        self._temperature = float(value) if not isinstance(value, torch.Tensor) else value

    def anneal(self, step: int) -> float:
        """Set the temperature of training step ``step`` from the schedule (if any).

        Examples:
            >>> policy = SegmentPolicy(temperature=TemperatureSchedule(1.0, 0.5, 0.5, 1))
            >>> policy.anneal(1)
            0.75
        """
        if self.schedule is not None:
            self.temperature = self.schedule(step)
        return self.temperature

    @property
    def uses_surprise(self) -> bool:
        """Whether decisions need the observation-level surprise."""
        return self.kind != "learned"

    @property
    def surprise_feature_dim(self) -> int:
        """Extra inputs of the learned posterior (``learned+surprise`` only)."""
        return SURPRISE_FEATURES if self.kind == "learned+surprise" else 0

    # ---------------------------------------------------------- deciding
    def decide(
        self,
        logits: torch.Tensor,
        *,
        role: str,
        deterministic: bool,
        seg_len: torch.Tensor | None = None,
        seg_num: torch.Tensor | None = None,
        structural: torch.Tensor | None = None,
        criterion_read: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
    ) -> BoundaryDecision:
        """Force, then decide, the boundary of one step (or of independent rows).

        Args:
            logits: ``[..., 2]`` boundary logits (posterior, or prior in imagination).
            role: ``"posterior"`` (filtering), ``"prior"`` or ``"imagine"``; selects
                whether the segment limits apply (see ``limit_mode``).
            deterministic: take the argmax instead of a Gumbel sample.
            seg_len, seg_num: counters ``[...]`` carried into the step (``None``: no limits).
            structural: ``[...]`` bool, READ regardless (sequence or episode start).
            criterion_read: ``[...]`` bool decision of a non-learned criterion (the
                ``surprise`` kind); replaces sampling, carries no gradient.
            allowed: ``[...]`` bool, where this level may READ (a level above the first:
                where the level below READs); COPY is forced elsewhere.

        Examples:
            >>> policy = SegmentPolicy(max_seg_len=2, limit_mode="both")
            >>> decision = policy.decide(torch.tensor([[-5.0, 5.0], [-5.0, 5.0]]),
            ...                          role="posterior", deterministic=True,
            ...                          seg_len=torch.tensor([2.0, 1.0]),
            ...                          seg_num=torch.tensor([1.0, 1.0]))
            >>> decision.read[:, 0].tolist(), decision.forced.tolist()
            ([1.0, 0.0], [True, False])
        """
        force_read, force_copy = self.forcing(
            seg_len, seg_num, role=role, structural=structural,
            shape=logits.shape[:-1], device=logits.device, allowed=allowed,
        )
        if criterion_read is not None:
            criterion_read = criterion_read.reshape(force_read.shape).to(torch.bool)
            logits = force_logits(logits.detach(), criterion_read, ~criterion_read)
        logits = force_logits(logits, force_read, force_copy)
        if criterion_read is not None:
            deterministic = True
        sample = sample_boundary(logits, self.temperature, deterministic=deterministic)
        if criterion_read is not None:
            sample = force_sample(sample, criterion_read, ~criterion_read)
        sample = force_sample(sample, force_read, force_copy)
        return BoundaryDecision(sample.onehot, logits, sample.log_sample, force_read | force_copy)

    def decide_sequence(
        self,
        logits: torch.Tensor,
        *,
        role: str,
        deterministic: bool,
        structural: torch.Tensor,
        first: int = 0,
    ) -> BoundaryDecision:
        """Decide a whole sequence ``logits [N, T, 2]`` whose logits do not depend on the decisions.

        Samples every step at once; where the limits apply to ``role`` they are then
        walked in time from step ``first`` (a READ: one segment of length one), so the
        counters follow the decisions. ``structural [N, T]`` steps are READ.

        Examples:
            >>> policy = SegmentPolicy(max_seg_len=3, limit_mode="both")
            >>> structural = torch.zeros(1, 8, dtype=torch.bool); structural[:, 0] = True
            >>> decision = policy.decide_sequence(torch.tensor([-5.0, 5.0]).expand(1, 8, 2),
            ...     role="posterior", deterministic=True, structural=structural)
            >>> decision.read[0, :, 0].int().tolist()
            [1, 0, 0, 1, 0, 0, 1, 0]
        """
        decision = self.decide(
            logits, role=role, deterministic=deterministic, structural=structural
        )
        if not self._limited(role):
            return decision
        columns = list(decision.onehot.unbind(-2))
        logit_columns = list(decision.logits.unbind(-2))
        forced = decision.forced.clone()
        seg_len = torch.ones_like(columns[first][..., READ])
        seg_num = torch.ones_like(seg_len)
        for t in range(first + 1, len(columns)):
            force_read, force_copy = self.forcing(
                seg_len, seg_num, role=role, structural=structural[..., t]
            )
            sample = force_sample(BoundarySample(columns[t], decision.log_sample[..., t, :]),
                                  force_read, force_copy)
            columns[t] = sample.onehot
            logit_columns[t] = force_logits(logit_columns[t], force_read, force_copy)
            forced[..., t] = forced[..., t] | force_read | force_copy
            seg_len, seg_num = self.advance(columns[t][..., READ], seg_len, seg_num)
        return BoundaryDecision(
            torch.stack(columns, -2), torch.stack(logit_columns, -2), decision.log_sample, forced
        )

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, limit_mode={self.limit_mode!r}, max_seg_len={self.max_seg_len}, "
            f"max_seg_num={self.max_seg_num}, temperature={self.temperature}, "
            f"surprise_reference={self.surprise_reference!r}"
        )
