"""Sequences through the hierarchical RSSM: filtering (:meth:`observe`), imagining
(:meth:`imagine`) and open-loop generation (:meth:`generate`), each a loop over the one-step
functions of :mod:`~torchrl_vta.modules.rssm_steps`, and the surprise statistics a training
sequence updates.
"""

from __future__ import annotations

from typing import Callable

import torch

from torchrl_vta.distributed import gather_statistics
from torchrl_vta.modules.rssm_state import RSSMState, append_step

__all__ = ["StackSequences"]


class StackSequences:
    """The sequence methods of :class:`~torchrl_vta.modules.rssm.HierarchicalRSSM` (a mixin).

    Example:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> out, last = rssm.observe(torch.randn(3, 5, 16), torch.randn(3, 5, 2))
        >>> out["upper_boundary"].shape, rssm.imagine(last, torch.zeros(3, 4, 2))[0]["belief"].shape
        (torch.Size([3, 5, 1]), torch.Size([3, 4, 8]))
    """

    def imagination_start(self, state: RSSMState) -> RSSMState:
        """``state`` with its segment counters restarted: an imagined rollout is a new
        sequence for the segment limits, its start state the first step of its
        first segment (``seg_len = seg_num = 1``), so it does not open with a READ
        forced by the length of the filtered segment it starts in, and the learned
        boundary prior decides where imagined segments end.

        Examples:
            >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
            >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> state = rssm.initial_state([3])._replace(seg_len=torch.full((3, 1), 9.0))
            >>> rssm.imagination_start(state).seg_len.sum().item()
            3.0
        """
        return state._replace(
            seg_len=torch.ones_like(state.seg_len), seg_num=torch.ones_like(state.seg_num)
        )

    # -------------------------------------------------------------- sequences
    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        is_init: torch.Tensor | None = None,
        state: RSSMState | None = None,
    ) -> tuple[dict[str, torch.Tensor], RSSMState]:
        """Filter a sequence: ``embed [*B, T, E]``, ``action [*B, T, A]``, ``is_init [*B, T]``.

        Returns the stacked per-step states and statistics (``[*B, T, ...]``)
        and the final :class:`RSSMState`. The first step is READ. Without
        ``state`` the sequence starts from zeros.
        """
        *batch, steps, _ = embed.shape
        if action.shape[:-1] != embed.shape[:-1]:
            raise ValueError(
                f"action batch/time shape {tuple(action.shape[:-1])} does not match the "
                f"embedding's {tuple(embed.shape[:-1])}."
            )
        resets = [False] * steps
        if is_init is not None:
            is_init = is_init.reshape(*batch, steps).bool()
            # One host read per sequence; steps without an episode start then
            # skip the reset masking altogether.
            resets = is_init.reshape(-1, steps).any(0).tolist()
        fresh = state is None
        if fresh:
            state = self.initial_state(batch, embed.device, embed.dtype)
        sequence_logits = None
        policy = self.segment_policy
        learned = self.levels >= 2 and policy.kind != "surprise"
        if learned and (fresh or not self.boundary_posterior.causal):
            # One batched pass over the window instead of a step per frame; a
            # fresh start has the zero context forward() assumes.
            sequence_logits = self.boundary_posterior(embed, is_init)
        outputs: dict[str, list[torch.Tensor]] = {}
        for t in range(steps):
            state, step = self.obs_step_fn(
                state,
                action[..., t, :],
                embed[..., t, :],
                is_init[..., t] if resets[t] else None,
                boundary_logits=(
                    sequence_logits[..., t, :] if sequence_logits is not None else None
                ),
                first=t == 0,
            )
            append_step(outputs, state, step)
        if sequence_logits is not None and self.boundary_posterior.causal:
            # Level 1's rows of the context; the levels above stepped theirs.
            context = self.boundary_posterior.final_context(embed, is_init)
            rows = context.shape[-2]
            state = state._replace(
                boundary_context=torch.cat([context, state.boundary_context[..., rows:, :]], -2)
            )
        # Time goes right after the batch dimensions (per-level entries have two more).
        stacked = {key: torch.stack(value, len(batch)) for key, value in outputs.items()}
        if self.training and self._carries_surprise:
            self._update_surprise_statistics(stacked, is_init)
        return stacked, state

    def _update_surprise_statistics(self, stacked: dict, is_init: torch.Tensor | None) -> None:
        # After the whole sequence was decided, so its decisions used the scale from
        # before it, exactly as the acting filter does. Structural steps (sequence and
        # episode starts) have no continued belief.
        surprise = stacked["obs_surprise"][..., 0]
        structural = torch.zeros_like(surprise, dtype=torch.bool)
        structural[..., 0] = True
        if is_init is not None:
            structural |= is_init
        signals = [(self.segment_policy, surprise, ~structural)]
        reads = [stacked["boundary"][..., 0]]
        if self.levels >= 3:
            reads += list(stacked["upper_boundary"].unbind(-1))
        for index, level in enumerate(self.upper):
            # Level j + 1's signal is level j's surprise, defined where level j READs.
            signals.append((level.segment_policy, stacked["upper_surprise"][..., index],
                            ~structural & (reads[index] > 0.5)))
        for policy, values, valid in signals:
            # In a data-parallel learner, from every rank's batch (the same statistics
            # on every rank, as from the combined batch).
            policy.update_statistics(gather_statistics(values), gather_statistics(valid))

    def imagine(
        self,
        state: RSSMState,
        actions: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
        horizon: int | None = None,
    ) -> tuple[dict[str, torch.Tensor], RSSMState]:
        """Roll the prior (``full`` generation) for ``horizon`` steps.

        ``actions`` is either a tensor ``[*B, H, A]`` (open loop) or a policy
        called on the full feature ``[*B, feature_dim]`` of the current state.
        """
        if callable(actions):
            if horizon is None:
                raise ValueError("imagine() with a policy needs horizon=.")
        elif horizon is None:
            horizon = actions.shape[-2]
        outputs: dict[str, list[torch.Tensor]] = {}
        state = self.imagination_start(state)
        for t in range(horizon):
            action = actions(self.feature(state)) if callable(actions) else actions[..., t, :]
            state, step = self.img_step_fn(state, action)
            append_step(outputs, state, step)
        time = state.belief.ndim - 1
        return {key: torch.stack(value, time) for key, value in outputs.items()}, state

    def generate(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        future_action: torch.Tensor,
        *,
        mode: str = "full",
        is_init: torch.Tensor | None = None,
        level: int = 1,
    ) -> dict[str, torch.Tensor]:
        """Open-loop generation after a context.

        Filters the context (``embed``/``action`` ``[*B, T, ...]``), then
        rolls ``future_action [*B, H, A]``: ``mode="full"`` steps every level
        with prior boundaries; ``mode="jumpy"`` steps abstract level ``level``
        (levels ``1..level`` READ, those above COPY), each output being the
        first frame of an imagined segment of that level. Returns
        stacked states with ``obs_feature`` ``[*B, H, obs_feature_dim]`` ready
        for a decoder.
        """
        if mode not in ("full", "jumpy"):
            raise ValueError(f"mode={mode!r} is not one of ('full', 'jumpy').")
        _, state = self.observe(embed, action, is_init)
        if mode == "full":
            out, _ = self.imagine(state, future_action)
        else:
            outputs: dict[str, list[torch.Tensor]] = {}
            for t in range(future_action.shape[-2]):
                state, step = self.jumpy_step(state, future_action[..., t, :], level=level)
                append_step(outputs, state, step)
            time = state.belief.ndim - 1
            out = {key: torch.stack(value, time) for key, value in outputs.items()}
        out["obs_feature"] = torch.cat([out["belief"], out["state"]], -1)
        return out
