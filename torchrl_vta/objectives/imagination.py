"""Latent imagination with the hierarchical RSSM (DreamerV3 style).

:func:`imagine_trajectories` rolls the prior of a
:class:`~torchrl_vta.modules.rssm.HierarchicalRSSM` forward from a batch of
(detached) start states with a policy, sampling boundaries from the boundary
prior (segment limits applied inside ``img_step``), and scores every state
with the reward and continue heads.

TorchRL's :class:`~torchrl.envs.model_based.dreamer.DreamerEnv` and
:class:`~torchrl.objectives.DreamerV3ActorLoss` hard-code a single latent
under ``state``/``belief``, so the rollout is written here as a plain loop
over ``img_step``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from tensordict import TensorDict
from tensordict.nn import ProbabilisticTensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules.distributions.utils import has_analytic_entropy

from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.rssm_state import RSSMState

__all__ = ["DEFAULT_GAMMA", "frozen", "imagine_trajectories", "policy_log_prob_entropy"]

#: DreamerV3's discount, ``1 - 1/333``.
DEFAULT_GAMMA = 1 - 1 / 333


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Turn off ``requires_grad`` of every parameter of ``modules``, then restore each flag.

    Gradients still flow *through* the frozen modules to their inputs (the
    dynamics-backprop path), but their own parameters collect none. Unlike
    TorchRL's ``hold_out_net``, which re-enables every parameter on exit,
    each parameter gets its own previous flag back, so parts a user froze on
    purpose stay frozen. ``None`` entries are skipped.

    Examples:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with frozen(layer):
        ...     layer(x).sum().backward()
        >>> layer.weight.grad is None, x.grad is not None, layer.weight.requires_grad
        (True, True, True)
    """
    params = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def policy_log_prob_entropy(
    actor: ProbabilisticTensorDictSequential,
    feature: torch.Tensor,
    action: torch.Tensor,
    *,
    feature_key: NestedKey = "feature",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-function log-probability and entropy of the policy, ``[*B, 1]`` each.

    Both are computed on stopped features and a stopped action, so their only
    gradient goes to the actor's parameters: ``log_prob`` is the REINFORCE
    score ``log pi(sg(a) | sg(s))`` (an ``rsample``-d action would otherwise
    carry a pathwise term), and the entropy bonus does not push on the world
    model. Distributions without a closed-form entropy use ``-log pi`` of one
    reparameterised sample.

    Examples:
        >>> import torch
        >>> from torchrl.data import OneHot
        >>> from torchrl_vta.modules.actor import make_actor
        >>> actor = make_actor(OneHot(3), 6, units=16)
        >>> log_prob, entropy = policy_log_prob_entropy(
        ...     actor, torch.randn(4, 5, 6), torch.eye(3)[torch.zeros(4, 5, dtype=torch.long)])
        >>> log_prob.shape, entropy.shape
        (torch.Size([4, 5, 1]), torch.Size([4, 5, 1]))
    """
    td = TensorDict({feature_key: feature.detach()}, feature.shape[:-1])
    dist = actor.get_dist(td)
    log_prob = dist.log_prob(action.detach())
    if has_analytic_entropy(dist):
        entropy = dist.entropy()
    else:
        entropy = -dist.log_prob(dist.rsample())
    return log_prob.unsqueeze(-1), entropy.unsqueeze(-1)


def imagine_trajectories(
    rssm: HierarchicalRSSM,
    actor: ProbabilisticTensorDictSequential,
    reward_head: nn.Module,
    continue_head: nn.Module | None,
    start: RSSMState,
    horizon: int,
    *,
    start_continue: torch.Tensor | None = None,
    start_boundary: torch.Tensor | None = None,
    gamma: float = DEFAULT_GAMMA,
    backprop: bool = True,
    feature_key: NestedKey = "feature",
    action_key: NestedKey = "action",
    log_prob_key: NestedKey = "action_log_prob",
    entropy_key: NestedKey = "action_entropy",
    reward_key: NestedKey = "reward",
    continue_key: NestedKey = "continue",
    boundary_key: NestedKey = "boundary",
    seg_len_key: NestedKey = "seg_len",
    discount_key: NestedKey = "discount_weight",
) -> TensorDict:
    """Imagine ``horizon`` steps from every start state with ``actor``.

    Index ``k`` of the time dimension is the ``k``-th state (0 = the start):

    * ``feature``: ``[h, s, c, z]`` of state ``k``;
    * ``action``: the action sampled *from* state ``k`` (the last one is
      never applied);
    * ``action_log_prob`` / ``action_entropy``: see
      :func:`policy_log_prob_entropy` (gradient to the actor only);
    * ``reward``: mean of the reward head at state ``k`` (the reward of
      arriving there; index 0 is unused by the returns);
    * ``continue``: continue probability of state ``k``; index 0 is
      ``start_continue`` (``1 - terminated`` of the start) or 1;
    * ``discount_weight``: ``cumprod([c_0, gamma * c_1, ...])``, detached
      (DreamerV3's loss weights);
    * ``seg_len``: segment counter of state ``k``, counted from the imagination
      start (:meth:`~torchrl_vta.modules.rssm.HierarchicalRSSM.imagination_start`);
    * ``boundary`` (``levels=2`` only): READ indicator of the transition into
      state ``k``; index 0 is ``start_boundary`` or 0.

    The world model (``rssm``, heads) is frozen with :func:`frozen`: no
    parameter of it gets a gradient, while the graph through its computations
    is kept when ``backprop=True`` (dynamics backprop of continuous actions).
    ``backprop=False`` runs the rollout without autograd (REINFORCE needs
    only the log-probabilities, which are recomputed with gradient).
    The actor samples under the current exploration type (the losses set
    ``RANDOM``); the RSSM samples latents and boundaries in training mode and
    takes their modes in eval mode.

    Args:
        rssm, actor, reward_head, continue_head: the model parts
            (``continue_head`` may be ``None``: continues are 1).
        start: start states ``[*B, ...]`` (detached here).
        horizon: number of imagined steps ``H``.

    Returns:
        A TensorDict of batch ``[*B, H + 1]``.

    Examples:
        >>> import torch
        >>> from torchrl.data import Bounded, Composite, Unbounded
        >>> from torchrl_vta.modules.actor import make_actor
        >>> from torchrl_vta.modules.world_model import make_world_model
        >>> wm = make_world_model(Composite(position=Unbounded((5,))), Bounded(-1, 1, (2,)),
        ...                       preset="test")
        >>> actor = make_actor(Bounded(-1, 1, (2,)), wm.rssm.feature_dim, units=16)
        >>> start = wm.rssm.initial_state([3])
        >>> traj = imagine_trajectories(wm.rssm, actor, wm.reward_head, wm.continue_head,
        ...                             start, horizon=4)
        >>> traj.batch_size, traj["feature"].shape[-1] == wm.rssm.feature_dim
        (torch.Size([3, 5]), True)
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}.")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}.")
    if feature_key not in actor.in_keys:
        raise ValueError(
            f"feature_key={feature_key!r} is not an input of the actor (in_keys={actor.in_keys})."
        )
    if action_key not in actor.out_keys:
        raise ValueError(
            f"action_key={action_key!r} is not written by the actor (out_keys={actor.out_keys})."
        )
    batch = start.belief.shape[:-1]
    state = rssm.imagination_start(RSSMState(*(x.detach() for x in start)))
    features, actions, seg_lens, boundaries = [], [], [], []
    with frozen(rssm, reward_head, continue_head), torch.set_grad_enabled(
        torch.is_grad_enabled() and backprop
    ):
        for t in range(horizon + 1):
            feature = rssm.feature(state)
            action = actor(TensorDict({feature_key: feature}, batch)).get(action_key)
            features.append(feature)
            actions.append(action)
            seg_lens.append(state.seg_len)
            if t == horizon:
                break
            state, step = rssm.img_step_fn(state, action.to(feature.dtype))
            if step.boundary is not None:
                boundaries.append(step.boundary)
        feature = torch.stack(features, -2)
        action = torch.stack(actions, -2)
        reward = reward_head.mean(reward_head(feature))
        if continue_head is not None:
            cont = continue_head.prob(continue_head(feature))
        else:
            cont = torch.ones_like(reward)
    first = (
        torch.ones_like(cont[..., 0, :])
        if start_continue is None
        else start_continue.reshape(cont[..., 0, :].shape).to(cont.dtype)
    )
    cont = torch.cat([first.unsqueeze(-2), cont[..., 1:, :]], -2)
    discount = torch.cat([cont[..., :1, :], gamma * cont[..., 1:, :]], -2).cumprod(-2).detach()
    log_prob, entropy = policy_log_prob_entropy(actor, feature, action, feature_key=feature_key)
    out = TensorDict(
        {
            feature_key: feature,
            action_key: action,
            log_prob_key: log_prob,
            entropy_key: entropy,
            reward_key: reward,
            continue_key: cont,
            discount_key: discount,
            seg_len_key: torch.stack(seg_lens, -2),
        },
        batch_size=(*batch, horizon + 1),
    )
    if boundaries:
        first = (
            torch.zeros_like(boundaries[0])
            if start_boundary is None
            else start_boundary.reshape(boundaries[0].shape).to(boundaries[0].dtype)
        )
        out.set(boundary_key, torch.stack([first, *boundaries], -2))
    return out
