"""The segment limits of :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`: the
limit mode and the roles it forces, ``max_seg_len`` / ``max_seg_num``, the READ / COPY masks
and the forced prior logits they give, and the segment counters they are checked on.
"""

from __future__ import annotations

import contextlib

import torch

from torchrl_vta.modules.boundary_ops import (
    force_logits,
    limit_segments,
    update_segment_counters,
)

__all__ = ["LIMIT_MODES", "SegmentLimits"]

LIMIT_MODES = ("prior", "both", "off")
_ROLES = ("posterior", "prior", "imagine")


class SegmentLimits:
    """The segment-limit part of :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`
    (a mixin of that ``nn.Module``: its ``limit_mode``, ``max_seg_len`` and ``max_seg_num``
    options and the methods below). A policy that follows another (``SegmentPolicy.follow``)
    reads its leader's ``limit_mode``.

    Example:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
        >>> policy = SegmentPolicy(max_seg_len=2, limit_mode="both")
        >>> read, copy = policy.forcing(torch.tensor([2.0]), torch.ones(1), role="posterior")
        >>> read.tolist(), copy.tolist()
        ([True], [False])
    """

    @property
    def limit_mode(self) -> str:
        """``"prior"``, ``"both"`` or ``"off"`` (settable, checked); a follower's is its
        leader's (:meth:`follow`)."""
        leader = self.__dict__.get("_leader")
        return leader.limit_mode if leader is not None else self._limit_mode

    @limit_mode.setter
    def limit_mode(self, value: str) -> None:
        if value not in LIMIT_MODES:
            raise ValueError(f"limit_mode={value!r} is not one of {LIMIT_MODES}.")
        self._limit_mode = value

    @property
    def max_seg_len(self) -> int | None:
        """Longest segment before a READ is forced (``None``: no limit)."""
        return self._max_seg_len

    @max_seg_len.setter
    def max_seg_len(self, value: int | None) -> None:
        self._max_seg_len = self._check_limit("max_seg_len", value)

    @property
    def max_seg_num(self) -> int | None:
        """Segments per sequence before COPY is forced (``None``: no limit)."""
        return self._max_seg_num

    @max_seg_num.setter
    def max_seg_num(self, value: int | None) -> None:
        self._max_seg_num = self._check_limit("max_seg_num", value)

    @staticmethod
    def _check_limit(name: str, value):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}.")
        return value

    @contextlib.contextmanager
    def limits(self, mode: str):
        """Temporarily use another ``limit_mode`` (e.g. scoring with forcing on and off).

        Examples:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(max_seg_len=4)
            >>> with policy.limits("both"):
            ...     policy.limit_mode
            'both'
            >>> policy.limit_mode
            'prior'
        """
        previous = self.limit_mode
        self.limit_mode = mode
        try:
            yield self
        finally:
            self.limit_mode = previous

    # ---------------------------------------------------------- forcing
    def _limited(self, role: str) -> bool:
        # Checked on every call (not only when counters are given): a misspelt role
        # must not silently mean "no limits".
        if role not in _ROLES:
            raise ValueError(f"role={role!r} is not one of {_ROLES}.")
        if self.limit_mode == "off":
            return False
        return role != "posterior" or self.limit_mode == "both"

    def forcing(
        self,
        seg_len: torch.Tensor | None,
        seg_num: torch.Tensor | None,
        *,
        role: str,
        structural: torch.Tensor | None = None,
        shape: torch.Size | None = None,
        device=None,
        allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(force_read, force_copy)`` bool masks for one step.

        Counters ``[...]`` are those carried *into* the step; ``structural`` (bool ``[...]``)
        READs win over everything. Without counters no limit applies. ``allowed`` (bool
        ``[...]``, a level above the first: where the level below READs) forces COPY
        elsewhere, so a higher segment always starts at a lower boundary.

        Examples:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(max_seg_len=3, max_seg_num=2)
            >>> read, copy = policy.forcing(torch.tensor([3., 1.]), torch.tensor([1., 2.]),
            ...                             role="prior")
            >>> read.tolist(), copy.tolist()
            ([True, False], [False, True])
        """
        limited = self._limited(role)
        if seg_len is not None and limited:
            force_read, force_copy = limit_segments(
                seg_len, seg_num, max_seg_len=self.max_seg_len, max_seg_num=self.max_seg_num
            )
        else:
            if shape is None:
                shape = seg_len.shape if seg_len is not None else structural.shape
            never = torch.zeros(shape, dtype=torch.bool, device=device)
            force_read = force_copy = never
        if structural is not None:
            structural = structural.reshape(force_read.shape).to(torch.bool)
            force_read = force_read | structural
            force_copy = force_copy & ~structural
        if allowed is not None:
            allowed = allowed.reshape(force_read.shape).to(torch.bool)
            force_read = force_read & allowed
            force_copy = force_copy | ~allowed
        return force_read, force_copy

    def force_prior_logits(
        self,
        logits: torch.Tensor,
        seg_len: torch.Tensor | None,
        seg_num: torch.Tensor | None,
        *,
        structural: torch.Tensor | None = None,
        role: str = "prior",
    ) -> torch.Tensor:
        """Prior boundary logits ``[..., 2]`` with the forced rows set to ``±FORCE_LOGIT``.

        Examples:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(max_seg_len=2)
            >>> policy.force_prior_logits(torch.zeros(2, 2), torch.tensor([2., 1.]),
            ...                           torch.ones(2)).argmax(-1).tolist()
            [0, 0]
        """
        read, copy = self.forcing(
            seg_len, seg_num, role=role, structural=structural,
            shape=logits.shape[:-1], device=logits.device,
        )
        return force_logits(logits, read, copy)

    def force_prior_sequence(self, logits: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
        """Force prior logits ``[N, S, 2]`` (predicting step ``i + 1``) by the counters after
        the decisions ``read [N, S]`` of steps ``0..i`` (counting from zero segments).

        Examples:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> policy = SegmentPolicy(max_seg_len=2)
            >>> read = torch.tensor([[1.0, 0.0, 0.0]])
            >>> copy = torch.tensor([-1.0, 1.0]).expand(1, 3, 2)
            >>> policy.force_prior_sequence(copy, read).argmax(-1).tolist()
            [[1, 0, 0]]
        """
        seg_len = torch.zeros_like(read[..., 0])
        seg_num = torch.zeros_like(seg_len)
        rows = []
        for i in range(logits.shape[-2]):
            seg_len, seg_num = self.advance(read[..., i], seg_len, seg_num)
            rows.append(self.force_prior_logits(logits[..., i, :], seg_len, seg_num))
        return torch.stack(rows, -2)

    @staticmethod
    def advance(read: torch.Tensor, seg_len: torch.Tensor, seg_num: torch.Tensor):
        """Counters after a decision: READ -> ``(1, n + 1)``, COPY -> ``(len + 1, n)``.

        Examples:
        >>> from torchrl_vta.modules.segment_policy import SegmentPolicy
            >>> SegmentPolicy.advance(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 3.0]),
            ...                       torch.tensor([1.0, 1.0]))
            (tensor([1., 4.]), tensor([2., 1.]))
        """
        return update_segment_counters(read.detach(), seg_len, seg_num)
