"""The RSSM's state types and key tables: what one step carries and reports, and where
the TensorDict wrappers put it.

Example:
    >>> RSSMState._fields[:4]
    ('belief', 'state', 'abs_belief', 'abs_state')
    >>> DEFAULT_ROLLOUT_KEYS["boundary"]
    ('next', 'boundary')
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from tensordict.utils import NestedKey

__all__ = [
    "DEFAULT_ROLLOUT_KEYS",
    "DEFAULT_STATE_KEYS",
    "RSSMState",
    "RSSMStep",
    "append_step",
]


class RSSMState(NamedTuple):
    """Recurrent state carried from one step to the next.

    ``abs_belief`` / ``abs_state`` hold every abstract level, level 1 first
    (``[c_1, ..., c_{L-1}]``, ``[z_1, ..., z_{L-1}]``; split them with
    ``HierarchicalRSSM.split_abstract``); they and ``boundary_context`` (each
    abstract level's rows, level 1 first) have a zero-sized last dimension when
    ``levels=1``. ``surprise`` (per abstract level, the lowest normalised surprise
    since its last READ, the trough the causal peak test of the segment policy
    measures a rise from) has size ``L - 1`` only when the boundary kind uses
    surprise. Segment counters are float tensors of shape ``[*B, max(L - 1, 1)]``
    (one column per abstract level).

    Examples:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> state = rssm.initial_state([3])
        >>> state.belief.shape, state.boundary_context.shape
        (torch.Size([3, 8]), torch.Size([3, 3, 4]))
    """

    belief: torch.Tensor
    state: torch.Tensor
    abs_belief: torch.Tensor
    abs_state: torch.Tensor
    seg_len: torch.Tensor
    seg_num: torch.Tensor
    boundary_context: torch.Tensor
    surprise: torch.Tensor


class RSSMStep(NamedTuple):
    """Per-step statistics of a transition (``None`` where not computed).

    ``boundary`` is the READ indicator ``[*B, 1]`` (exact 0/1 forward values,
    straight-through gradient); ``boundary_logits`` are the logits the boundary
    was sampled from (posterior when filtering, prior when imagining), after
    forcing; ``boundary_prior_logits`` are the prior's logits for this step,
    predicted from the previous observation-level feature; ``obs_surprise``
    ``[*B, 1]`` is the observation level's surprise (nats) on the continued
    belief, computed when the boundary kind uses it.

    With ``levels >= 3`` the ``upper_*`` fields report levels ``2..L-1`` in the same
    way, stacked in their last dimension (before the two logits): ``upper_boundary``
    ``[*B, L-2]``, ``upper_boundary_logits`` / ``upper_boundary_prior_logits``
    ``[*B, L-2, 2]``, ``upper_boundary_forced`` ``[*B, L-2]`` (forced by structure or
    limits; where the level below COPYs the level is masked to COPY, which its READ
    indicator tells), the latent statistics concatenated, and
    ``upper_surprise`` (level ``j``'s surprise, the signal of level ``j + 1``).

    Example:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> _, step = rssm.img_step(rssm.initial_state([3]), torch.zeros(3, 2))
        >>> step.boundary.shape, step.posterior_stats is None
        (torch.Size([3, 1]), True)
    """

    prior_stats: torch.Tensor
    posterior_stats: torch.Tensor | None
    abs_prior_stats: torch.Tensor | None
    abs_posterior_stats: torch.Tensor | None
    boundary: torch.Tensor | None
    boundary_logits: torch.Tensor | None
    boundary_prior_logits: torch.Tensor | None
    boundary_log_sample: torch.Tensor | None
    boundary_forced: torch.Tensor | None
    obs_surprise: torch.Tensor | None = None
    upper_prior_stats: torch.Tensor | None = None
    upper_posterior_stats: torch.Tensor | None = None
    upper_boundary: torch.Tensor | None = None
    upper_boundary_logits: torch.Tensor | None = None
    upper_boundary_prior_logits: torch.Tensor | None = None
    upper_boundary_forced: torch.Tensor | None = None
    upper_surprise: torch.Tensor | None = None


def append_step(outputs: dict[str, list[torch.Tensor]], state: RSSMState, step: RSSMStep) -> None:
    """Append a step's state (all but the boundary context) and its computed statistics to
    the per-key lists a sequence loop stacks.

    Example:
        >>> outputs = {}
        >>> state = RSSMState(*(torch.zeros(1) for _ in RSSMState._fields))
        >>> append_step(outputs, state, RSSMStep(torch.zeros(2), *([None] * 8)))
        >>> sorted(outputs)[:3], "boundary_context" in outputs
        (['abs_belief', 'abs_state', 'belief'], False)
    """
    for key, value in zip(RSSMState._fields, state):
        if key != "boundary_context":
            outputs.setdefault(key, []).append(value)
    for key, value in zip(RSSMStep._fields, step):
        if value is not None:
            outputs.setdefault(key, []).append(value)


DEFAULT_STATE_KEYS: dict[str, NestedKey] = {
    "belief": "belief",
    "state": "state",
    "abs_belief": "abs_belief",
    "abs_state": "abs_state",
    "seg_len": "seg_len",
    "seg_num": "seg_num",
    "boundary_context": "boundary_context",
    "surprise": "surprise",
}
"""Default keys of the recurrent state (acting time, root of the TensorDict)."""

_ROLLOUT_NAMES = (
    "belief",
    "state",
    "abs_belief",
    "abs_state",
    "seg_len",
    "seg_num",
    "prior_stats",
    "posterior_stats",
    "abs_prior_stats",
    "abs_posterior_stats",
    "boundary",
    "boundary_logits",
    "boundary_prior_logits",
    "boundary_log_sample",
    "boundary_forced",
    "surprise",
    "obs_surprise",
    "upper_prior_stats",
    "upper_posterior_stats",
    "upper_boundary",
    "upper_boundary_logits",
    "upper_boundary_prior_logits",
    "upper_boundary_forced",
    "upper_surprise",
)
DEFAULT_ROLLOUT_KEYS: dict[str, NestedKey] = {name: ("next", name) for name in _ROLLOUT_NAMES}
"""Default output keys of :class:`HierarchicalRSSMRollout` (posterior of ``("next", obs)``)."""

_FLAT_NAMES = {"belief", "state", "seg_len", "seg_num", "prior_stats", "posterior_stats"}
_SURPRISE_NAMES = {"surprise", "obs_surprise", "upper_surprise"}
_UPPER_NAMES = {name for name in _ROLLOUT_NAMES if name.startswith("upper_")}
