"""The jumpy reconstruction term of :class:`~torchrl_vta.objectives.WorldModelLoss`: decode
the first frame of each new level-1 segment from level 1's *prior*, as jumpy generation does.

On a level-1 READ the observation belief restarts from the level-1 feature ``[c_1, z_1]``
with ``z_1`` from the posterior (it has seen the frame). Nothing else asks the level-1
belief ``c_1`` to know what the next segment looks like: the KL only asks the prior
``p(z_1 | c_1)`` to match the posterior, which can be met by leaving slow context (the scene
of ``nested_one_ball``) out of both. This term draws ``z_1 ~ p(z_1 | c_1)``, restarts
``h = restart([c_1, z_1])``, draws ``s ~ p(s | h)`` and scores the decoded frame against the
observation: the context a segment starts in has to be in ``c_1``. It also trains the path
``generate(mode="jumpy")`` takes.

Only what produces ``c_1`` and ``p(z_1 | c_1)`` learns from it: the restart, the observation
prior and the decoder are applied with their parameters detached, since they also serve every
filtered step. With them trained by the term (``nested_one_ball`` seed 2, 4,000 steps) level
1's READs lost recall (F1 0.98 -> 0.90 at weight 0.3, 0.75 at weight 1, where the held-out
reconstruction error doubled; ``benchmarks/BOUNDARY_QUALITY.md``).
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch.func import functional_call

from torchrl_vta.distributed import mean_over_ranks
from torchrl_vta.modules.world_model import HierarchicalWorldModel

__all__ = ["jumpy_reconstruction"]


def _frozen(module: torch.nn.Module, *inputs: torch.Tensor):
    # The module with its parameters detached: the gradient reaches the inputs only.
    parameters = {name: value.detach() for name, value in module.named_parameters()}
    return functional_call(module, parameters, inputs)


def jumpy_reconstruction(
    model: HierarchicalWorldModel,
    tensordict: TensorDictBase,
    *,
    abs_belief_key: NestedKey = ("next", "abs_belief"),
    abs_prior_stats_key: NestedKey = ("next", "abs_prior_stats"),
    boundary_key: NestedKey = ("next", "boundary"),
    boundary_forced_key: NestedKey = ("next", "boundary_forced"),
) -> torch.Tensor:
    """Mean reconstruction loss (summed over the decoder keys) of the frames decoded from
    level 1's prior on the unforced level-1 READ steps of a rolled-out ``tensordict``
    (0 where there is none). The keys are the rollout's outputs.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded, Composite, Unbounded
        >>> from torchrl_vta.modules.world_model import make_world_model
        >>> model = make_world_model(Composite(position=Unbounded((5,))),
        ...                          Bounded(-1, 1, (2,)), preset="test")
        >>> td = TensorDict({"action": torch.zeros(2, 4, 2),
        ...                  "is_init": torch.zeros(2, 4, 1, dtype=torch.bool),
        ...                  "next": {"position": torch.randn(2, 4, 5)}}, [2, 4])
        >>> model(td)["next", "boundary"][..., 1:, 0] = 1.0  # READ after the first step
        >>> bool(jumpy_reconstruction(model, td) > 0)
        True
    """
    rssm = model.rssm
    if rssm.levels < 2:
        raise ValueError("the jumpy reconstruction needs levels >= 2 (an abstract level).")

    read = tensordict.get(boundary_key).squeeze(-1).detach() > 0.5
    free = read & ~tensordict.get(boundary_forced_key).squeeze(-1).bool()
    count = mean_over_ranks(free.sum().to(torch.get_default_dtype()))
    belief = tensordict.get(abs_belief_key)[free][..., : rssm.level_belief_dim]
    prior_stats = tensordict.get(abs_prior_stats_key)[free]
    deterministic = rssm._deterministic()
    abstract = rssm.abs_prior.sample(prior_stats, deterministic)
    restarted = _frozen(rssm.restart, torch.cat([belief, abstract], -1))
    state = rssm.obs_prior.sample(_frozen(rssm.obs_prior, restarted), deterministic)
    predictions = dict(zip(model.decoder.out_keys, _frozen(model.decoder, restarted, state)))
    targets = {name: tensordict.get(obs_key)[free]
               for name, (obs_key, _) in model.reconstruction_keys.items()}
    targets.update({name: tensordict.get(key)[free]
                    for name, key in model.reconstruction_masks.items()})
    losses = model.decoder.loss(predictions, targets)
    return sum(value.sum() for value in losses.values()) / count.clamp_min(1)
