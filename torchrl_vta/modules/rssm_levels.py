"""The abstract levels of the hierarchical RSSM as one list: level 1 (the VTA abstract level,
whose modules keep their historical names on the RSSM) and the levels above it
(:class:`UpperLevel`, ``levels >= 3``).

Every abstract level ``j`` has a belief ``c_j`` (a GRU), a stochastic latent ``z_j`` with a
prior and a posterior, a segment policy and boundary detectors deciding its READs, and a
``restart`` mapping its feature ``[c_j, z_j]`` onto the belief of the level below (what a READ
of level ``j`` restarts the level below from). Level ``j + 1`` READs only where level ``j``
READs, so a higher segment always starts at a lower boundary.

Example:
    >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
    >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
    ...                         boundary_proj_dim=4, boundary_hidden=8)
    >>> [type(level).__name__ for level in abstract_levels(rssm)]
    ['AbstractLevelView', 'UpperLevel']
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from torchrl_vta.modules._layers import dense_block
from torchrl_vta.modules.boundary import BoundaryPosterior, BoundaryPrior
from torchrl_vta.modules.latent import make_latent
from torchrl_vta.modules.segment_policy import SegmentPolicy

__all__ = ["AbstractLevelView", "LevelLatent", "UpperLevel", "abstract_levels", "gru"]


def gru(cell: nn.GRUCell, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``cell(inputs, hidden)`` for any leading batch shape (``nn.GRUCell`` takes ``[N, H]``).

    Example:
        >>> gru(nn.GRUCell(3, 4), torch.zeros(2, 5, 3), torch.zeros(2, 5, 4)).shape
        torch.Size([2, 5, 4])
    """
    batch = hidden.shape[:-1]
    out = cell(inputs.reshape(-1, inputs.shape[-1]), hidden.reshape(-1, hidden.shape[-1]))
    return out.reshape(*batch, out.shape[-1])


class LevelLatent(NamedTuple):
    """What a level takes on a READ: its belief, its sample and the statistics of its prior
    and posterior (``None`` when imagining).

    Example:
        >>> LevelLatent(torch.zeros(1), torch.zeros(1), torch.zeros(2), None)._fields
        ('belief', 'state', 'prior_stats', 'posterior_stats')
    """

    belief: torch.Tensor
    state: torch.Tensor
    prior_stats: torch.Tensor
    posterior_stats: torch.Tensor | None


class UpperLevel(nn.Module):
    """An abstract level above level 1 (``levels >= 3``).

    Args:
        below_feature_dim: size of the feature ``[c, z]`` of the level below (what the
            boundary prior reads).
        below_belief_dim: belief size of the level below (what ``restart`` writes).
        action_dim, embed_dim: as the RSSM's.
        above_feature_dim: size of the feature of the level above (0 for the top level);
            a level continues its GRU with it, as the observation level does with level 1.
        belief_dim: size of this level's belief.
        latent, latent_kwargs: kind and options of this level's latent
            (:func:`~torchrl_vta.modules.latent.make_latent`).
        hidden, norm, act: input projection options.
        boundary_kwargs: options of the :class:`BoundaryPosterior` (causal) and the
            :class:`BoundaryPrior` of this level's READs.
        policy: this level's :class:`SegmentPolicy`.

    Example:
        >>> level = UpperLevel(below_feature_dim=12, below_belief_dim=8, action_dim=2,
        ...                    embed_dim=16, above_feature_dim=0, belief_dim=8,
        ...                    latent="gaussian", latent_kwargs=dict(stoch_dim=4, hidden=8),
        ...                    hidden=8, norm="layer", act="silu",
        ...                    boundary_kwargs=dict(left=2, proj_dim=4, hidden=8),
        ...                    policy=SegmentPolicy())
        >>> level.feature_dim, level.restart(torch.zeros(3, 12)).shape
        (12, torch.Size([3, 8]))
    """

    def __init__(
        self,
        *,
        below_feature_dim: int,
        below_belief_dim: int,
        action_dim: int,
        embed_dim: int,
        above_feature_dim: int,
        belief_dim: int,
        latent: str,
        latent_kwargs: dict,
        hidden: int,
        norm: str,
        act: str,
        boundary_kwargs: dict,
        policy: SegmentPolicy,
    ):
        super().__init__()
        self.belief_dim = belief_dim
        self.prior = make_latent(latent, belief_dim, **latent_kwargs)
        self.posterior = make_latent(latent, belief_dim + embed_dim, **latent_kwargs)
        self.state_dim = self.prior.stoch_dim
        self.input = dense_block(self.state_dim + action_dim + above_feature_dim, hidden, norm, act)
        self.cell = nn.GRUCell(hidden, belief_dim)
        self.restart = nn.Sequential(nn.Linear(self.feature_dim, below_belief_dim), nn.Tanh())
        boundary = dict(boundary_kwargs)
        self.boundary_prior = BoundaryPrior(
            below_feature_dim, hidden=boundary["hidden"], layers=boundary.get("layers", 1),
            norm=norm, act=act,
        )
        self.boundary_posterior = BoundaryPosterior(
            embed_dim, right=0, norm=norm, act=act,
            surprise_features=policy.surprise_feature_dim, **boundary,
        )
        self.segment_policy = policy

    @property
    def feature_dim(self) -> int:
        """Size of this level's feature ``[c, z]``."""
        return self.belief_dim + self.state_dim


class AbstractLevelView:
    """Level 1 seen through the attribute names of :class:`UpperLevel` (its modules live on
    the RSSM under their historical names, which checkpoints and pinned weights use).

    Example:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> AbstractLevelView(rssm).cell is rssm.abs_cell
        True
    """

    def __init__(self, rssm: nn.Module):
        self.input = rssm.abs_input
        self.cell = rssm.abs_cell
        self.prior = rssm.abs_prior
        self.posterior = rssm.abs_posterior
        self.restart = rssm.restart
        self.boundary_prior = rssm.boundary_prior
        self.boundary_posterior = rssm.boundary_posterior
        self.segment_policy = rssm.segment_policy
        self.belief_dim = rssm.level_belief_dim
        self.state_dim = rssm.level_state_dim


def abstract_levels(rssm: nn.Module) -> list:
    """The abstract levels of ``rssm``, level 1 first (empty when ``levels=1``).

    Example:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> len(abstract_levels(HierarchicalRSSM(2, 8, levels=1, belief_dim=8, hidden=8, stoch_dim=4)))
        0
    """
    if rssm.levels == 1:
        return []
    return [AbstractLevelView(rssm), *rssm.upper]
