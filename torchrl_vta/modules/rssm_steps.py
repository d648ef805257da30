"""One transition of the hierarchical RSSM's stack of levels: filtering (:meth:`obs_step`),
imagining (:meth:`img_step`) and jumping a segment (:meth:`jumpy_step`).

A step runs in three phases, the same for any number of levels:

1. **candidates**: every level continues its current segment (the observation level its GRU
   with the level-1 feature, abstract level ``j`` its GRU with ``[z_j, action]`` and the
   feature of level ``j + 1``), with the posterior of the new embedding when filtering;
2. **decisions**, bottom-up: level 1 from its boundary posterior and/or the observation
   level's surprise on the continued belief; level ``j + 1`` only where level ``j`` READs,
   from its own detector and/or its surprise signal: level ``j``'s KL on its continued
   candidate (``upper_surprise_source="level"``) or the observation level's surprise
   (``"observation"``), scored by the level's own statistics (the segment policies decide,
   forcing and sampling included);
3. **commit**, top-down: a READing level takes its candidate, or, where the level above
   READs too, restarts from the new feature above; a COPYing level keeps its state bit for
   bit; the observation level restarts from level 1 on a level-1 READ.

``levels=2`` is the VTA model of the paper; ``levels=1`` has no abstract level, so phases 1–3
only continue the observation level (the flat RSSM, through the same code).
"""

from __future__ import annotations

import torch

from torchrl_vta.modules.boundary_ops import mix_on_read
from torchrl_vta.modules.rssm_levels import LevelLatent, abstract_levels, gru
from torchrl_vta.modules.rssm_state import RSSMState, RSSMStep

__all__ = ["StackSteps"]


def _cat(values: list[torch.Tensor | None], dim: int = -1) -> torch.Tensor | None:
    if not values or values[0] is None:
        return None
    # One level (levels=2): no copy.
    return values[0] if len(values) == 1 else torch.cat(values, dim)


def _mix(read, new, old):
    return None if new is None else mix_on_read(read, new, old)


class StackSteps:
    """The one-step functions of :class:`~torchrl_vta.modules.rssm.HierarchicalRSSM` (a
    mixin: the model holds the modules and sizes, this class the transition).

    Example:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> state, step = rssm.obs_step(rssm.initial_state([3]), torch.zeros(3, 2),
        ...                             torch.randn(3, 16), first=True)
        >>> step.boundary.shape, step.upper_boundary.shape, state.seg_len.shape
        (torch.Size([3, 1]), torch.Size([3, 1]), torch.Size([3, 2]))
    """

    # ----------------------------------------------------------- state views
    def split_abstract(self, state: RSSMState) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(c_j, z_j)]`` of every abstract level, level 1 first (packed in
        ``abs_belief`` / ``abs_state``).

        Example:
            >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
            >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> [c.shape[-1] for c, _ in rssm.split_abstract(rssm.initial_state([2]))]
            [8, 8]
        """
        if self.levels == 1:
            return []
        beliefs = state.abs_belief.split(self.level_belief_dim, -1)
        states = state.abs_state.split(self.level_state_dim, -1)
        return list(zip(beliefs, states))

    def _context_rows(self, context: torch.Tensor, index: int) -> torch.Tensor:
        rows = self.boundary_posterior.left
        return context[..., index * rows:(index + 1) * rows, :]

    @staticmethod
    def _reset(prev: RSSMState, action: torch.Tensor, reset: torch.Tensor | None):
        if reset is None:
            return prev, action
        reset = reset.reshape(*action.shape[:-1], 1)
        prev = RSSMState(
            *(
                torch.where(reset.reshape(*reset.shape, *(1,) * (x.ndim - reset.ndim)),
                            torch.zeros_like(x), x)
                for x in prev
            )
        )
        return prev, torch.where(reset, torch.zeros_like(action), action)

    def _structural(self, action: torch.Tensor, reset: torch.Tensor | None, first: bool):
        if first:
            return torch.ones(action.shape[:-1], dtype=torch.bool, device=action.device)
        return reset.reshape(action.shape[:-1]) if reset is not None else None

    def _observation_surprise(self, continued, embed, structural, grad: bool, batch):
        """``KL(q(s | continued, embed) || p(s | continued))`` in nats, ``[*batch]``. With
        ``surprise_prior="separate"`` ``p`` is the model's own surprise prior, and where
        ``grad`` (the caller's grad mode) the KL keeps its gradient, to that head only, so
        the loss trains it on every step; 0 on structural steps (no continued belief)."""
        posterior = self.obs_posterior(torch.cat([continued, embed], -1))
        if self.surprise_prior == "observation":
            return self.obs_posterior.kl(posterior, self.obs_prior(continued)).reshape(batch)
        with torch.set_grad_enabled(grad):
            kl = self.obs_posterior.kl(posterior.detach(),
                                       self.obs_surprise_prior(continued.detach())).reshape(batch)
            if structural is not None:
                kl = kl * ~structural.reshape(batch)
        return kl

    # ------------------------------------------------------- phase 1: candidates
    def _begin(self, prev: RSSMState, action: torch.Tensor, reset: torch.Tensor | None):
        """What every step starts from: the reset state and action, the abstract levels'
        states and modules, and the observation belief a COPY would take."""
        prev, action = self._reset(prev, action, reset)
        abstract = self.split_abstract(prev)
        return prev, action, abstract, self._continued(prev, abstract, action), abstract_levels(self)

    def _continued(self, prev: RSSMState, abstract, action: torch.Tensor) -> torch.Tensor:
        """The observation belief a COPY would take (the current segment continues)."""
        inputs = [prev.state, action]
        if abstract:
            inputs += list(abstract[0])
        return gru(self.obs_cell, self.obs_input(torch.cat(inputs, -1)), prev.belief)

    def _latent(self, level, belief: torch.Tensor, embed: torch.Tensor | None) -> LevelLatent:
        deterministic = self._deterministic()
        prior_stats = level.prior(belief)
        if embed is None:
            return LevelLatent(belief, level.prior.sample(prior_stats, deterministic),
                               prior_stats, None)
        post_stats = level.posterior(torch.cat([belief, embed], -1))
        return LevelLatent(belief, level.posterior.sample(post_stats, deterministic),
                           prior_stats, post_stats)

    def _candidates(self, levels, abstract, action, embed) -> list[LevelLatent]:
        """What each abstract level takes if it READs while the level above COPYs."""
        out = []
        for index, level in enumerate(levels):
            belief, state = abstract[index]
            inputs = [state, action]
            if index + 1 < len(levels):
                inputs += list(abstract[index + 1])
            continued = gru(level.cell, level.input(torch.cat(inputs, -1)), belief)
            out.append(self._latent(level, continued, embed))
        return out

    # -------------------------------------------------------- phase 3: commit
    def _commit(self, levels, reads, abstract, candidates, continued, embed):
        """Top-down: the abstract states, what each level took on a READ, the new belief."""
        committed: list = [None] * len(levels)
        taken: list = [None] * len(levels)
        above = None
        for index in reversed(range(len(levels))):
            take = candidates[index]
            if above is not None:
                restarted = self._latent(levels[index], levels[index + 1].restart(above), embed)
                take = LevelLatent(*(_mix(reads[index + 1], new, old)
                                     for new, old in zip(restarted, take)))
            belief, state = abstract[index]
            committed[index] = (mix_on_read(reads[index], take.belief, belief),
                                mix_on_read(reads[index], take.state, state))
            taken[index] = take
            above = torch.cat(committed[index], -1)
        belief = continued
        if levels:
            belief = mix_on_read(reads[0], self.restart(above), continued)
        return committed, taken, belief

    def _next_state(self, prev, belief, state, committed, reads, context, surprise) -> RSSMState:
        if committed:
            abs_belief = _cat([c for c, _ in committed])
            abs_state = _cat([z for _, z in committed])
            seg_len, seg_num = self.segment_policy.advance(_cat(reads), prev.seg_len, prev.seg_num)
        else:
            abs_belief, abs_state = prev.abs_belief, prev.abs_state
            seg_len, seg_num = prev.seg_len + 1, prev.seg_num
        return RSSMState(belief, state, abs_belief, abs_state, seg_len, seg_num, context, surprise)

    def _step_report(self, prior_stats, post_stats, taken, reads, decisions, prior_logits,
                     surprises) -> RSSMStep:
        """The :class:`RSSMStep` of a transition: level 1 in the historical fields, the
        levels above it concatenated in the ``upper_*`` ones (a flat stack: the observation
        level's only)."""
        if not reads:
            return RSSMStep(prior_stats, post_stats, *([None] * 7))
        upper = slice(1, None)
        has_upper = len(reads) > 1
        return RSSMStep(
            prior_stats,
            post_stats,
            taken[0].prior_stats,
            taken[0].posterior_stats,
            reads[0],
            decisions[0].logits if decisions[0] is not None else None,
            prior_logits[0],
            decisions[0].log_sample if decisions[0] is not None else None,
            decisions[0].forced.unsqueeze(-1) if decisions[0] is not None else None,
            surprises[0],
            upper_prior_stats=_cat([t.prior_stats for t in taken[upper]]) if has_upper else None,
            upper_posterior_stats=(_cat([t.posterior_stats for t in taken[upper]])
                                   if has_upper else None),
            upper_boundary=_cat(reads[upper]) if has_upper else None,
            upper_boundary_logits=(torch.stack([d.logits for d in decisions[upper]], -2)
                                   if has_upper and decisions[1] is not None else None),
            upper_boundary_prior_logits=(torch.stack(prior_logits[upper], -2)
                                         if has_upper and prior_logits[1] is not None else None),
            upper_boundary_forced=(torch.stack([d.forced for d in decisions[upper]], -1)
                                   if has_upper and decisions[1] is not None else None),
            upper_surprise=_cat(surprises[upper]) if has_upper else None,
        )

    # ------------------------------------------------------------ filtering
    def obs_step(
        self,
        prev: RSSMState,
        action: torch.Tensor,
        embed: torch.Tensor,
        reset: torch.Tensor | None = None,
        *,
        boundary_logits: torch.Tensor | None = None,
        first: bool = False,
    ) -> tuple[RSSMState, RSSMStep]:
        """One filtering (posterior) step.

        Args:
            prev: state carried from the previous step.
            action: ``[*B, action_dim]`` action applied in this transition.
            embed: ``[*B, embed_dim]`` embedding of the observation reached.
            reset: ``[*B]`` or ``[*B, 1]`` bool, True where an episode starts.
            boundary_logits: precomputed level-1 posterior boundary logits ``[*B, 2]`` of
                the embedding window (needed for a non-causal posterior; a causal one runs
                on ``prev.boundary_context``).
            first: the first step of a sequence (READ everywhere).

        Example:
            >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
            >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> state, step = rssm.obs_step(rssm.initial_state([3]), torch.zeros(3, 2),
            ...                             torch.randn(3, 16), first=True)
            >>> step.boundary[:, 0].tolist()
            [1.0, 1.0, 1.0]
        """
        grad = torch.is_grad_enabled()
        prev, action, abstract, continued, levels = self._begin(prev, action, reset)
        deterministic = self._deterministic()
        structural = self._structural(action, reset, first)
        candidates = self._candidates(levels, abstract, action, embed)
        batch = action.shape[:-1]
        reads, decisions, prior_logits, surprises, troughs, contexts = [], [], [], [], [], []
        observation_surprise = None
        lower_feature = self.obs_feature(prev)
        for index, level in enumerate(levels):
            policy = level.segment_policy
            allowed = None if index == 0 else reads[-1].detach().reshape(batch) > 0.5
            surprise = normalised = criterion = extra = None
            trough = prev.surprise[..., index] if policy.uses_surprise else None
            if policy.uses_surprise:
                with torch.no_grad():
                    if index == 0 or self.upper_surprise_source == "observation":
                        if observation_surprise is None:
                            observation_surprise = self._observation_surprise(
                                continued, embed, structural, grad, batch)
                        surprise = observation_surprise.detach() if index else observation_surprise
                    else:
                        below = candidates[index - 1]
                        surprise = levels[index - 1].posterior.kl(
                            below.posterior_stats, below.prior_stats).reshape(batch)
                criterion, normalised = policy.surprise_read(surprise, trough)
                if structural is not None:
                    normalised = torch.where(structural, 0.0, normalised)
                if policy.kind == "learned+surprise":
                    extra = policy.surprise_features(surprise, normalised, trough)
            context = self._context_rows(prev.boundary_context, index)
            if policy.kind == "surprise":
                # The criterion decides alone: the learned detector is not run.
                logits = continued.new_zeros(*batch, 2)
            elif index == 0 and boundary_logits is not None:
                logits = boundary_logits
            else:
                logits, context = level.boundary_posterior.step(embed, context)
            if extra is not None:
                logits = logits + level.boundary_posterior.surprise_logits(extra)
            counters = dict(seg_len=prev.seg_len[..., index], seg_num=prev.seg_num[..., index])
            prior_logits.append(policy.force_prior_logits(
                level.boundary_prior(lower_feature), **counters, structural=structural))
            decision = policy.decide(
                logits, role="posterior", deterministic=deterministic, structural=structural,
                criterion_read=criterion if policy.kind == "surprise" else None,
                allowed=allowed, **counters,
            )
            read = decision.read
            if allowed is not None:
                # Reported forced: by structure or limits; the masked steps (the level
                # below COPYs) are told by the level below's READs.
                decision = decision._replace(forced=decision.forced & allowed)
            if normalised is not None:
                carried = policy.surprise_trough(normalised, read, trough, structural)
                troughs.append((carried if allowed is None
                                else torch.where(allowed, carried, trough)).unsqueeze(-1))
            reads.append(read)
            decisions.append(decision)
            surprises.append(None if surprise is None else surprise.unsqueeze(-1))
            contexts.append(context)
            if index + 1 < len(levels):
                lower_feature = torch.cat(abstract[index], -1)
        committed, taken, belief = self._commit(levels, reads, abstract, candidates, continued,
                                                embed)
        prior_stats = self.obs_prior(belief)
        post_stats = self.obs_posterior(torch.cat([belief, embed], -1))
        state = self.obs_posterior.sample(post_stats, deterministic)
        new = self._next_state(prev, belief, state, committed, reads,
                               _cat(contexts, -2) if contexts else prev.boundary_context,
                               _cat(troughs) if troughs else prev.surprise)
        return new, self._step_report(prior_stats, post_stats, taken, reads, decisions,
                                      prior_logits, surprises)

    # ----------------------------------------------------------- imagining
    def img_step(
        self,
        prev: RSSMState,
        action: torch.Tensor,
        reset: torch.Tensor | None = None,
        *,
        jump: int | None = None,
    ) -> tuple[RSSMState, RSSMStep]:
        """One imagination (prior) step; every level's boundary comes from its boundary prior.

        The segment limits apply unless ``limit_mode="off"``, counted from the
        imagination start (see :meth:`imagination_start`). ``jump=k`` READs levels
        ``1..k`` and COPYs the levels above instead of deciding (see :meth:`jumpy_step`).

        Example:
            >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
            >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> _, step = rssm.img_step(rssm.initial_state([3]), torch.zeros(3, 2))
            >>> bool((step.upper_boundary <= step.boundary).all())
            True
        """
        prev, action, abstract, continued, levels = self._begin(prev, action, reset)
        deterministic = self._deterministic()
        structural = self._structural(action, reset, False)
        batch = action.shape[:-1]
        reads, decisions, prior_logits = [], [], []
        lower_feature = self.obs_feature(prev)
        for index, level in enumerate(levels):
            if jump is not None:
                read = torch.full((*batch, 1), float(index < jump), dtype=continued.dtype,
                                  device=continued.device)
                reads.append(read)
                decisions.append(None)
                prior_logits.append(None)
                continue
            policy = level.segment_policy
            allowed = reads[-1].detach().reshape(batch) > 0.5 if index else None
            decision = policy.decide(
                level.boundary_prior(lower_feature), role="imagine", deterministic=deterministic,
                seg_len=prev.seg_len[..., index], seg_num=prev.seg_num[..., index],
                structural=structural, allowed=allowed,
            )
            read = decision.read
            if allowed is not None:
                decision = decision._replace(forced=decision.forced & allowed)
            reads.append(read)
            decisions.append(decision)
            prior_logits.append(decision.logits)
            if index + 1 < len(levels):
                lower_feature = torch.cat(abstract[index], -1)
        candidates = self._candidates(levels, abstract, action, None)
        committed, taken, belief = self._commit(levels, reads, abstract, candidates, continued,
                                                None)
        prior_stats = self.obs_prior(belief)
        state = self.obs_prior.sample(prior_stats, deterministic)
        new = self._next_state(prev, belief, state, committed, reads, prev.boundary_context,
                               prev.surprise)
        return new, self._step_report(prior_stats, None, taken, reads, decisions, prior_logits,
                                      [None] * len(levels))

    def jumpy_step(
        self, prev: RSSMState, action: torch.Tensor | None = None, *, level: int = 1
    ) -> tuple[RSSMState, RSSMStep]:
        """Advance abstract level ``level`` by one segment (levels ``1..level`` READ, the
        levels above COPY).

        The levels below restart from the new feature above them and the observation level
        takes its prior sample, so the result can be decoded to the segment's first frame.
        ``action`` defaults to zeros.

        Example:
            >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
            >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> _, step = rssm.jumpy_step(rssm.initial_state([2]), level=2)
            >>> step.boundary[:, 0].tolist(), step.upper_boundary[:, 0].tolist()
            ([1.0, 1.0], [1.0, 1.0])
        """
        if self.levels < 2:
            raise ValueError("jumpy generation needs levels >= 2 (there is no abstract level).")
        if not 1 <= level < self.levels:
            raise ValueError(f"level={level!r}: jumpy generation steps an abstract level, "
                             f"1..{self.levels - 1} for levels={self.levels}.")
        if action is None:
            action = prev.belief.new_zeros(*prev.belief.shape[:-1], self.action_dim)
        return self.img_step(prev, action, jump=level)
