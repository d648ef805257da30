"""The state layout of the hierarchical RSSM: the size of each :class:`RSSMState` field and of
each feature, the features the heads, actor, critic and decoder read (``[h, s]``, ``[c, z]``,
``[h, s, c, z]``, one level's), and the all-zero state ``is_init`` resets to.
"""

from __future__ import annotations

from typing import Sequence

import torch

from torchrl_vta.modules.rssm_state import RSSMState

__all__ = ["StackFeatures"]


class StackFeatures:
    """The sizes and features of :class:`~torchrl_vta.modules.rssm.HierarchicalRSSM` (a mixin:
    it reads the sizes the RSSM's constructor sets).

    Example:
        >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, abs_belief_dim=6, hidden=8, stoch_dim=4)
        >>> rssm.obs_feature_dim, rssm.abs_feature_dim, rssm.feature(rssm.initial_state([3])).shape
        (12, 10, torch.Size([3, 22]))
    """

    @property
    def obs_feature_dim(self) -> int:
        """Size of the observation-level feature ``[h, s]`` (decoder input)."""
        return self.belief_dim + self.state_dim

    @property
    def abs_feature_dim(self) -> int:
        """Size of the abstract feature ``[c_1..c_{L-1}, z_1..z_{L-1}]`` of every abstract
        level (0 when ``levels=1``)."""
        return self.abs_belief_dim + self.abs_state_dim

    @property
    def feature_dim(self) -> int:
        """Size of the full feature ``[h, s, c, z]`` read by heads, actor and critic."""
        return self.obs_feature_dim + self.abs_feature_dim

    def level_feature(self, state: RSSMState, level: int) -> torch.Tensor:
        """Feature of one level: ``[h, s]`` for level 0, ``[c_j, z_j]`` for level ``j``.

        Examples:
            >>> from torchrl_vta.modules.rssm import HierarchicalRSSM
            >>> rssm = HierarchicalRSSM(2, 16, levels=3, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> [rssm.level_feature(rssm.initial_state([2]), j).shape[-1] for j in range(3)]
            [12, 12, 12]
        """
        if level == 0:
            return self.obs_feature(state)
        if not 1 <= level < self.levels:
            raise ValueError(f"level={level!r}: levels are 0..{self.levels - 1}.")
        return torch.cat(self.split_abstract(state)[level - 1], -1)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each :class:`RSSMState` field."""
        return {
            "belief": (self.belief_dim,),
            "state": (self.state_dim,),
            "abs_belief": (self.abs_belief_dim,),
            "abs_state": (self.abs_state_dim,),
            "seg_len": (max(self.levels - 1, 1),),
            "seg_num": (max(self.levels - 1, 1),),
            "boundary_context": self.context_shape,
            "surprise": (self.levels - 1 if self._carries_surprise else 0,),
        }

    # -------------------------------------------------------------- features
    @staticmethod
    def obs_feature(state: RSSMState) -> torch.Tensor:
        """Observation-level feature ``[h, s]``."""
        return torch.cat([state.belief, state.state], -1)

    @staticmethod
    def abs_feature(state: RSSMState) -> torch.Tensor:
        """Abstract feature ``[c, z]`` (every abstract level's beliefs, then their states)."""
        return torch.cat([state.abs_belief, state.abs_state], -1)

    @staticmethod
    def feature(state: RSSMState) -> torch.Tensor:
        """Full feature ``[h, s, c, z]``."""
        return torch.cat([state.belief, state.state, state.abs_belief, state.abs_state], -1)

    def initial_state(self, batch_shape: Sequence[int], device=None, dtype=None) -> RSSMState:
        """All-zero state (what ``is_init`` resets to)."""
        dtype = dtype or torch.get_default_dtype()
        batch_shape = tuple(batch_shape)
        return RSSMState(
            *(
                torch.zeros(*batch_shape, *shape, device=device, dtype=dtype)
                for shape in self.state_shapes().values()
            )
        )
