"""Plan2Explore: ensemble disagreement as an intrinsic reward, flat and per segment.

:class:`Plan2Explore` trains ``members`` one-step predictors (:class:`~torchrl_vta.modules.
ensemble.EnsembleMLP`) on the world model's detached posterior rollout of a replay batch and
scores imagined trajectories with their disagreement:

* **observation level**: from the feature ``[h, s, c, z]`` of state ``t`` and the action
  taken there, predict the next observation embedding (``target="embed"``, as
  mastering-urlb) or the next stochastic state ``s`` (``target="state"``);
* **segment level** (``hierarchical=True``, ``levels=2``, what no other Plan2Explore has):
  a second ensemble predicts the abstract state ``z`` of the *next segment*, trained on the
  steps that READ; in imagination its disagreement is paid on the transitions that READ, so
  the agent is drawn to segments it cannot yet foresee rather than to pixel novelty.

Each stream is divided by a running mean of its replay disagreement (EMA, bias-corrected),
so the intrinsic reward is about 1 on familiar data whatever the target's scale. The
intrinsic reward enters only the intrinsic critic's λ-returns
(:class:`~torchrl_vta.objectives.ImaginationActorLoss` with ``intrinsic=``); the actor mixes
the two normalised advantages with ``extrinsic_scale`` / ``intrinsic_scale``.

Gradients: the ensembles train on detached inputs and targets (the world model gets
nothing from them); in imagination they are frozen (the actor reaches them only through
their inputs, with dynamics backprop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_vta.distributed import gather_statistics
from torchrl_vta.modules.ensemble import EnsembleMLP, disagreement
from torchrl_vta.modules.world_model import FEATURE_NAMES
from torchrl_vta.objectives._checks import entry
from torchrl_vta.objectives.imagination import frozen

__all__ = ["EXPLORE_MODES", "EXPLORE_TARGETS", "Plan2Explore", "mode_scales"]

#: ``off``: task reward only; ``reward_free``: the actor follows the intrinsic reward alone
#: (the extrinsic critic and the reward head still learn, for fine-tuning); ``mixed``: both.
EXPLORE_MODES = ("off", "reward_free", "mixed")
EXPLORE_TARGETS = ("embed", "state")


def mode_scales(mode: str, extrinsic_scale: float | None = None,
                intrinsic_scale: float | None = None) -> tuple[float, float]:
    """The actor's (extrinsic, intrinsic) advantage weights of an exploration ``mode``.

    ``None`` takes the mode's default: ``off`` (1, 0), ``reward_free`` (0, 1), ``mixed``
    (1, 0.1; sheeprl's ``p2e_dv3`` weights).

    Examples:
        >>> mode_scales("mixed"), mode_scales("reward_free"), mode_scales("mixed", intrinsic_scale=0.5)
        ((1.0, 0.1), (0.0, 1.0), (1.0, 0.5))
    """
    defaults = {"off": (1.0, 0.0), "reward_free": (0.0, 1.0), "mixed": (1.0, 0.1)}
    if mode not in defaults:
        raise ValueError(f"explore.mode={mode!r} is not one of {list(EXPLORE_MODES)}.")
    extrinsic = defaults[mode][0] if extrinsic_scale is None else extrinsic_scale
    intrinsic = defaults[mode][1] if intrinsic_scale is None else intrinsic_scale
    for name, value in (("explore.extrinsic_scale", extrinsic), ("explore.intrinsic_scale", intrinsic)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    if mode != "off" and intrinsic == 0:
        raise ValueError(f"explore.mode={mode} with explore.intrinsic_scale=0 explores nothing: "
                         "use explore.mode=off, or an intrinsic_scale > 0.")
    if extrinsic == 0 and intrinsic == 0:
        raise ValueError("explore.extrinsic_scale and explore.intrinsic_scale are both 0: the "
                         "actor would learn nothing.")
    return float(extrinsic), float(intrinsic)


class _RunningMean(torch.nn.Module):
    """Bias-corrected EMA of a masked mean (a buffer pair, saved with the module)."""

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay
        self.register_buffer("total", torch.zeros(()))
        self.register_buffer("weight", torch.zeros(()))

    def update(self, value: torch.Tensor, mask: torch.Tensor) -> None:
        # Sum and count travel together, so ranks with different counts agree on the mean.
        stats = gather_statistics(torch.stack([(value * mask).sum(), mask.sum()]).reshape(1, 2))
        total, count = stats.sum(0)
        # A batch with nothing to count leaves the statistic as it is (rate 0), without a
        # host sync on the count.
        rate = (1 - self.decay) * (count > 0).to(total.dtype)
        self.total.lerp_(total / count.clamp_min(1), rate)
        self.weight.lerp_(torch.ones_like(self.weight), rate)

    def value(self) -> torch.Tensor:
        """The mean (1 before any update)."""
        mean = (self.total / self.weight.clamp_min(1e-12)).clamp_min(1e-8)
        return torch.where(self.weight > 0, mean, torch.ones_like(mean))


class Plan2Explore(LossModule):
    """Disagreement ensembles of a hierarchical world model (see the module docstring).

    ``forward(tensordict)`` takes a replay batch ``[*B, T]`` the world model has already
    rolled out (posterior under ``("next", ...)``, ``("next", "embed")``) and returns
    ``loss_ensemble`` (masked mean squared error of every member; transitions across an
    episode start excluded), with ``hierarchical=True`` also ``loss_abs_ensemble`` (only on
    READ steps), and the detached ``disagreement`` / ``abs_disagreement`` of the batch. In
    training mode it updates the running means that normalise the rewards.

    :meth:`intrinsic_reward` scores imagined trajectories.

    Args:
        world_model: a :class:`~torchrl_vta.modules.HierarchicalWorldModel` (not registered:
            its parameters are not this loss's).

    Keyword Args:
        members (int): ensemble size. Defaults to 8 (sheeprl's ``p2e_dv3``).
        target (str): ``"embed"`` (next encoder embedding) or ``"state"`` (next stochastic
            state ``s``). Defaults to ``"embed"``.
        layers, units (int): each member's hidden layers and width. Defaults 2, 256.
        hierarchical (bool): add the next-segment ensemble (needs ``levels=2``).
            Defaults to ``False``.
        abs_scale (float): weight of the segment-level reward. Defaults to 1.
        norm_decay (float): EMA decay of the reward normalisers. Defaults to 0.99.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Composite, OneHot, Unbounded
        >>> from torchrl_vta.modules.world_model import make_world_model
        >>> wm = make_world_model(Composite(position=Unbounded((5,))), OneHot(3), preset="test")
        >>> explore = Plan2Explore(wm, members=4, units=16, hierarchical=True)
        >>> batch = wm(TensorDict({"action": torch.eye(3)[torch.randint(3, (2, 6))],
        ...                        "is_init": torch.zeros(2, 6, 1, dtype=torch.bool),
        ...                        "next": {"position": torch.randn(2, 6, 5)}}, [2, 6]))
        >>> losses = explore(batch)
        >>> sorted(k for k in losses.keys() if k.startswith("loss_"))
        ['loss_abs_ensemble', 'loss_ensemble']
        >>> feature = torch.randn(3, 5, wm.rssm.feature_dim)
        >>> action = torch.eye(3)[torch.randint(3, (3, 5))]
        >>> explore.intrinsic_reward(feature, action, torch.ones(3, 5, 1)).shape
        torch.Size([3, 5, 1])
    """

    @dataclass
    class _AcceptedKeys:
        """Replay entries read by :meth:`forward`.

        Attributes:
            belief, state, abs_belief, abs_state (NestedKey): posterior states (defaults
                follow the world model's rollout keys, ``("next", <name>)``).
            embed (NestedKey): the encoder output. Defaults to ``("next", "embed")``.
            boundary (NestedKey): the READ indicator. Defaults to ``("next", "boundary")``.
            action, is_init (NestedKey): Defaults ``"action"``, ``"is_init"``.
        """

        belief: NestedKey = ("next", "belief")
        state: NestedKey = ("next", "state")
        abs_belief: NestedKey = ("next", "abs_belief")
        abs_state: NestedKey = ("next", "abs_state")
        embed: NestedKey = ("next", "embed")
        boundary: NestedKey = ("next", "boundary")
        action: NestedKey = "action"
        is_init: NestedKey = "is_init"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(self, world_model, *, members: int = 8, target: str = "embed", layers: int = 2,
                 units: int = 256, hierarchical: bool = False, abs_scale: float = 1.0,
                 norm_decay: float = 0.99):
        super().__init__()
        rssm = world_model.rssm
        if target not in EXPLORE_TARGETS:
            raise ValueError(f"explore.target={target!r} is not one of {list(EXPLORE_TARGETS)}.")
        if hierarchical and rssm.levels < 2:
            raise ValueError("explore.hierarchical=true needs segments: use model.levels=2, "
                             "or explore.hierarchical=false for the flat ensemble.")
        if isinstance(abs_scale, bool) or not isinstance(abs_scale, (int, float)) or not abs_scale >= 0:
            raise ValueError(f"explore.abs_scale must be a number >= 0, got {abs_scale!r}.")
        if not 0 < norm_decay < 1:
            raise ValueError(f"explore.norm_decay must be in (0, 1), got {norm_decay!r}.")
        self.__dict__["world_model"] = world_model
        self.target = target
        self.hierarchical = bool(hierarchical)
        self.abs_scale = float(abs_scale)
        in_features = rssm.feature_dim + rssm.action_dim
        out_features = rssm.embed_dim if target == "embed" else rssm.state_dim
        self.ensemble = EnsembleMLP(in_features, out_features, members=members, layers=layers,
                                    units=units)
        self.norm = _RunningMean(norm_decay)
        if self.hierarchical:
            self.abs_ensemble = EnsembleMLP(in_features, rssm.abs_state_dim, members=members,
                                            layers=layers, units=units)
            self.abs_norm = _RunningMean(norm_decay)
        rollout_keys = getattr(getattr(world_model, "rollout", None), "out_key_map", {})
        names = [n for n in FEATURE_NAMES if n in rollout_keys]
        embed_keys = getattr(getattr(world_model, "encoder_module", None), "out_keys", None)
        self.set_keys(**{n: rollout_keys[n] for n in names},
                      **({"embed": embed_keys[0]} if embed_keys else {}))
        self.out_keys = ["loss_ensemble"] + (["loss_abs_ensemble"] if self.hierarchical else [])

    def _feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES if self.world_model.rssm.levels > 1 else FEATURE_NAMES[:2]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        keys = self.tensor_keys
        self.in_keys = [getattr(keys, n) for n in self._feature_names()] + [
            keys.embed, keys.action, keys.is_init] + (
            [keys.boundary] if self.world_model.rssm.levels > 1 else [])

    def _feature(self, tensordict: TensorDictBase) -> torch.Tensor:
        return torch.cat([entry(self, tensordict, n) for n in self._feature_names()], -1)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        feature = self._feature(tensordict).detach()
        action = entry(self, tensordict, "action").detach().to(feature.dtype)
        is_init = entry(self, tensordict, "is_init")
        # Pair state t (after action t) with the action taken from it (t + 1) and what it led
        # to (t + 1), unless an episode starts at t + 1.
        inputs = torch.cat([feature[..., :-1, :], action[..., 1:, :]], -1)
        valid = (~is_init[..., 1:, :].bool()).to(feature.dtype)
        target = (entry(self, tensordict, "embed") if self.target == "embed"
                  else entry(self, tensordict, "state"))[..., 1:, :].detach()
        out = {}
        out["loss_ensemble"], out["disagreement"] = self._fit(
            self.ensemble, self.norm, inputs, target, valid)
        if self.hierarchical:
            read = entry(self, tensordict, "boundary")[..., 1:, :].detach()
            out["loss_abs_ensemble"], out["abs_disagreement"] = self._fit(
                self.abs_ensemble, self.abs_norm, inputs,
                entry(self, tensordict, "abs_state")[..., 1:, :].detach(), valid * read)
        return TensorDict(out, [])

    def _fit(self, ensemble, norm, inputs, target, mask):
        predictions = ensemble(inputs)  # one forward for the loss and the statistics
        error = (predictions - target.unsqueeze(0)).pow(2).mean(-1).mean(0).unsqueeze(-1)
        loss = (error * mask).sum() / mask.sum().clamp_min(1)
        with torch.no_grad():
            spread = disagreement(predictions)
            if self.training:
                norm.update(spread, mask)
            mean_spread = (spread * mask).sum() / mask.sum().clamp_min(1)
        return loss, mean_spread

    def intrinsic_reward(self, feature: torch.Tensor, action: torch.Tensor,
                         boundary: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised disagreement of imagined trajectories ``[*B, H + 1, 1]``.

        ``feature`` / ``action`` ``[*B, H + 1, ...]`` as
        :func:`~torchrl_vta.objectives.imagination.imagine_trajectories` writes them (the
        action at ``k`` is taken from state ``k``); entry ``k >= 1`` is the reward of
        arriving at state ``k``: the disagreement about what follows state ``k - 1`` and its
        action, plus (hierarchical) ``abs_scale`` times the next-segment disagreement where
        the transition into ``k`` READs (``boundary[k]``). Entry 0 is 0 (no transition
        leads into the start). The ensembles are frozen; gradients reach ``feature`` and
        ``action`` only.
        """
        inputs = torch.cat([feature[..., :-1, :], action[..., :-1, :].to(feature.dtype)], -1)
        with frozen(self.ensemble, getattr(self, "abs_ensemble", None)):
            reward = self.ensemble.disagreement(inputs) / self.norm.value()
            if self.hierarchical and self.abs_scale > 0:
                if boundary is None:
                    raise ValueError("a hierarchical Plan2Explore needs the imagined boundaries.")
                segment = self.abs_ensemble.disagreement(inputs) / self.abs_norm.value()
                reward = reward + self.abs_scale * segment * boundary[..., 1:, :].to(reward.dtype)
        return torch.cat([torch.zeros_like(reward[..., :1, :]), reward], -2)
