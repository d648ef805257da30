"""The RSSM as TensorDict modules: the training rollout over ``[*B, T]``, the acting-time
filter with its primer, and the previous-action writer of the acting policy."""

from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs import TensorDictPrimer

from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.rssm_state import (
    _FLAT_NAMES,
    _ROLLOUT_NAMES,
    _SURPRISE_NAMES,
    _UPPER_NAMES,
    DEFAULT_ROLLOUT_KEYS,
    DEFAULT_STATE_KEYS,
    RSSMState,
)

__all__ = ["HierarchicalRSSMRollout", "HierarchicalStateEstimator", "PreviousActionWriter"]


def _rollout_names(rssm: HierarchicalRSSM) -> tuple[str, ...]:
    if rssm.levels == 1:
        return tuple(n for n in _ROLLOUT_NAMES if n in _FLAT_NAMES)
    skip = set() if rssm.levels >= 3 else set(_UPPER_NAMES)
    if not rssm.segment_policy.uses_surprise:
        skip |= _SURPRISE_NAMES
    return tuple(n for n in _ROLLOUT_NAMES if n not in skip)


def _merge_keys(defaults: dict[str, NestedKey], overrides: dict[str, NestedKey] | None):
    keys = dict(defaults)
    for name, key in (overrides or {}).items():
        if name not in defaults:
            raise ValueError(f"Unknown key name {name!r}; valid names: {sorted(defaults)}.")
        keys[name] = key
    return keys


class HierarchicalRSSMRollout(TensorDictModuleBase):
    """Filter a ``[*B, T]`` TensorDict through a :class:`HierarchicalRSSM`.

    Reads the embedding of the next observations, the actions and ``is_init``;
    writes the posterior states and all statistics (see
    :data:`DEFAULT_ROLLOUT_KEYS`; ``levels=1`` writes only the flat ones).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> rollout = HierarchicalRSSMRollout(rssm)
        >>> td = TensorDict({"action": torch.randn(3, 5, 2),
        ...                  "is_init": torch.zeros(3, 5, 1, dtype=torch.bool),
        ...                  "next": {"embed": torch.randn(3, 5, 16)}}, [3, 5])
        >>> rollout(td)["next", "abs_state"].shape
        torch.Size([3, 5, 4])
    """

    def __init__(
        self,
        rssm: HierarchicalRSSM,
        *,
        embed_key: NestedKey = ("next", "embed"),
        action_key: NestedKey = "action",
        is_init_key: NestedKey | None = "is_init",
        out_keys: dict[str, NestedKey] | None = None,
    ):
        super().__init__()
        self.rssm = rssm
        self.embed_key = embed_key
        self.action_key = action_key
        self.is_init_key = is_init_key
        names = _rollout_names(rssm)
        keys = _merge_keys(DEFAULT_ROLLOUT_KEYS, out_keys)
        self.out_key_map = {name: keys[name] for name in names}
        self.in_keys = [embed_key, action_key] + ([is_init_key] if is_init_key else [])
        self.out_keys = list(self.out_key_map.values())

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        is_init = (
            tensordict.get(self.is_init_key, None) if self.is_init_key is not None else None
        )
        action = tensordict.get(self.action_key).to(tensordict.get(self.embed_key).dtype)
        outputs, _ = self.rssm.observe(tensordict.get(self.embed_key), action, is_init)
        for name, key in self.out_key_map.items():
            tensordict.set(key, outputs[name])
        return tensordict


class HierarchicalStateEstimator(TensorDictModuleBase):
    """Acting-time filter: one :meth:`HierarchicalRSSM.obs_step` per call.

    Reads the current embedding, the previous action (``prev_action``), the
    recurrent state and ``is_init`` from the root of the TensorDict, and
    overwrites the recurrent state with the posterior of the current
    observation (as TorchRL's DreamerV3 estimator does; ``out_state_keys``
    writes it elsewhere instead, keeping the input state, e.g. for on-policy
    learners that recompute features); it also writes the READ indicator
    under ``boundary``. :meth:`make_primer` gives the
    :class:`~torchrl.envs.TensorDictPrimer` that creates and carries these
    entries in any TorchRL env/collector. Requires a causal boundary posterior
    (``boundary_right=0``), which is what makes acting use the training
    posterior.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
        ...                         boundary_proj_dim=4, boundary_hidden=8)
        >>> estimator = HierarchicalStateEstimator(rssm)
        >>> td = estimator.initial_tensordict([3])
        >>> td["embed"] = torch.randn(3, 16)
        >>> td["is_init"] = torch.ones(3, 1, dtype=torch.bool)
        >>> estimator(td)["boundary"].squeeze(-1).tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        rssm: HierarchicalRSSM,
        *,
        embed_key: NestedKey = "embed",
        action_key: NestedKey = "prev_action",
        is_init_key: NestedKey = "is_init",
        boundary_key: NestedKey = "boundary",
        state_keys: dict[str, NestedKey] | None = None,
        out_state_keys: dict[str, NestedKey] | None = None,
    ):
        super().__init__()
        if rssm.levels >= 2 and not rssm.boundary_posterior.causal:
            raise ValueError(
                "HierarchicalStateEstimator needs a causal boundary posterior "
                "(boundary_right=0); a symmetric window sees future frames."
            )
        self.rssm = rssm
        self.embed_key = embed_key
        self.action_key = action_key
        self.is_init_key = is_init_key
        self.boundary_key = boundary_key
        self.state_keys = _merge_keys(DEFAULT_STATE_KEYS, state_keys)
        self.out_state_keys = _merge_keys(self.state_keys, out_state_keys)
        self.in_keys = [embed_key, action_key, is_init_key, *self.state_keys.values()]
        self.out_keys = list(self.out_state_keys.values()) + (
            [boundary_key] if rssm.levels >= 2 else []
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        prev = RSSMState(*(tensordict.get(key) for key in self.state_keys.values()))
        embed = tensordict.get(self.embed_key)
        state, step = self.rssm.obs_step(
            prev,
            tensordict.get(self.action_key).to(embed.dtype),
            embed,
            tensordict.get(self.is_init_key),
        )
        for key, value in zip(self.out_state_keys.values(), state):
            tensordict.set(key, value)
        if step.boundary is not None:
            tensordict.set(self.boundary_key, step.boundary)
        return tensordict

    def initial_tensordict(self, batch_shape: Sequence[int], device=None) -> TensorDictBase:
        """Zero recurrent state and ``prev_action`` (what the primer writes on reset)."""
        spec = self._state_spec()
        return spec.zero(tuple(batch_shape)).to(device or spec.device or "cpu")

    def _state_spec(self) -> Composite:
        shapes = self.rssm.state_shapes()
        specs = {
            key: Unbounded(shape=shapes[name], dtype=torch.get_default_dtype())
            for name, key in self.state_keys.items()
        }
        specs[self.action_key] = Unbounded(
            shape=(self.rssm.action_dim,), dtype=torch.get_default_dtype()
        )
        return Composite(specs)

    def make_primer(self) -> TensorDictPrimer:
        """Primer creating the recurrent entries (zeros) and ``prev_action``."""
        return TensorDictPrimer(self._state_spec(), expand_specs=True)


class PreviousActionWriter(TensorDictModule):
    """Copies the action just chosen into ``prev_action`` for the next step.

    Put it last in the acting policy, after the actor: the estimator of the
    next step reads ``prev_action`` (carried over by the primer).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = PreviousActionWriter()(TensorDict({"action": torch.ones(2, 3)}, [2]))
        >>> td["prev_action"].sum().item()
        6.0
    """

    def __init__(self, action_key: NestedKey = "action", prev_action_key: NestedKey = "prev_action"):
        super().__init__(_Float(), in_keys=[action_key], out_keys=[prev_action_key])


class _Float(nn.Module):
    # One-hot (discrete) actions are stored as integers; the RSSM wants floats.
    def forward(self, action: torch.Tensor) -> torch.Tensor:
        return action.to(torch.get_default_dtype())
