"""Policies over the hierarchical feature ``[h, s, c, z]``.

:func:`make_actor` builds a TorchRL :class:`~torchrl.modules.ProbabilisticActor`
(so it plugs into collectors, exploration types and losses) around a
:class:`~torchrl.modules.DreamerV3MLP`:

* continuous actions (``Bounded`` / ``Unbounded`` specs) use the DreamerV3
  parametrisation ``mean = tanh(x)``, ``std = (max_std - min_std) * sigmoid(x + 2)
  + min_std``. A ``Bounded`` spec gets TorchRL's
  :class:`~torchrl.modules.TruncatedNormal` on the spec's box: it has
  ``rsample`` (inverse-CDF, so dynamics backprop works), an exact
  ``log_prob`` and an analytic entropy, and every sample lies inside the
  bounds. :class:`~torchrl.modules.TanhNormal` would also stay inside, but its
  entropy has no closed form and its ``log_prob`` needs an ``atanh`` of values
  at the bounds. An ``Unbounded`` spec gets TorchRL's
  :class:`~torchrl.modules.IndependentNormal` with the same mean/std (the
  DreamerV3 "normal" head).
* discrete actions (``OneHot`` spec) use :class:`UnimixOneHotCategorical`:
  TorchRL's :class:`~torchrl.modules.OneHotCategorical` with 1% uniform
  mixing and a straight-through ``rsample``.

``ExplorationType.RANDOM`` samples (with ``rsample``);
``ExplorationType.DETERMINISTIC`` returns the distribution's
``deterministic_sample`` (the truncated mean, the Gaussian mean, or the
arg-max one-hot).
"""

from __future__ import annotations

from typing import Sequence

import torch
from tensordict.nn import InteractionType, TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Bounded, OneHot, TensorSpec, Unbounded
from torchrl.modules import (
    DreamerV3MLP,
    IndependentNormal,
    OneHotCategorical,
    ProbabilisticActor,
    TruncatedNormal,
)

from torchrl_vta.modules.encoders import _positive_int

__all__ = [
    "ActorNet",
    "UnimixOneHotCategorical",
    "make_actor",
    "make_feature_module",
    "DEFAULT_ACTING_FEATURE_KEYS",
]

#: Root keys of the recurrent state written by the acting-time estimator,
#: concatenated (in this order) into the feature the actor reads.
DEFAULT_ACTING_FEATURE_KEYS: tuple[str, ...] = ("belief", "state", "abs_belief", "abs_state")


class UnimixOneHotCategorical(OneHotCategorical):
    """One-hot categorical with uniform mixing and a straight-through ``rsample``.

    The probabilities are ``(1 - unimix) * softmax(logits) + unimix / K``
    (DreamerV3's 1% unimix keeps every action's log-probability finite).
    ``rsample`` returns the hard one-hot sample with the gradient of the
    probabilities (straight-through, as TorchRL's ``PassThrough`` strategy,
    but with exact 0/1 values); ``has_rsample`` is ``True`` so that TorchRL's
    sampling path picks it.

    Args:
        logits (torch.Tensor): unnormalised log-probabilities ``[*, K]``.

    Keyword Args:
        unimix (float): uniform fraction in ``[0, 1)``. Defaults to ``0.01``.

    Examples:
        >>> import torch
        >>> dist = UnimixOneHotCategorical(torch.tensor([[100.0, 0.0, 0.0]]), unimix=0.03)
        >>> dist.probs
        tensor([[0.9800, 0.0100, 0.0100]])
        >>> sample = dist.rsample()
        >>> sample.sum(-1), sample.requires_grad
        (tensor([1.]), False)
    """

    has_rsample = True

    def __init__(self, logits: torch.Tensor, *, unimix: float = 0.01, **kwargs):
        if not 0 <= unimix < 1:
            raise ValueError(f"unimix must be in [0, 1), got {unimix}.")
        probs = torch.softmax(logits, -1)
        if unimix > 0:
            probs = (1 - unimix) * probs + unimix / logits.shape[-1]
        super().__init__(logits=probs.log(), **kwargs)

    def rsample(self, sample_shape: torch.Size | Sequence = None) -> torch.Tensor:
        """Hard one-hot sample (float) with a straight-through gradient."""
        sample = self.sample(torch.Size(sample_shape or ())).to(self.probs.dtype)
        # Adding the exact zero (p - sg(p)) keeps the forward values exactly
        # 0/1; TorchRL's PassThrough computes (sample + p) - sg(p), which
        # rounds them.
        return sample + (self.probs - self.probs.detach())


class ActorNet(nn.Module):
    """Tensor-level actor network: ``feature -> (loc, scale)`` or ``feature -> logits``.

    Args:
        in_features (int): feature size.
        action_dim (int): number of action dimensions (continuous) or
            classes (discrete).

    Keyword Args:
        discrete (bool): output logits instead of ``(loc, scale)``. Defaults to ``False``.
        layers (int): hidden layers. Defaults to 2.
        units (int): hidden width. Defaults to 256.
        min_std, max_std (float): std range of the continuous head.
            Defaults to 0.1 and 1.0.
        low, high (torch.Tensor, optional): action box; the mean ``tanh(x)``
            and the std are mapped affinely from ``[-1, 1]`` onto it. Without
            them the box is ``[-1, 1]``.

    Examples:
        >>> import torch
        >>> net = ActorNet(6, 2, units=16)
        >>> loc, scale = net(torch.randn(4, 6))
        >>> bool(loc.abs().max() < 1), bool(((scale >= 0.1) & (scale <= 1.0)).all())
        (True, True)
        >>> ActorNet(6, 3, discrete=True, units=16)(torch.randn(4, 6)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        in_features: int,
        action_dim: int,
        *,
        discrete: bool = False,
        layers: int = 2,
        units: int = 256,
        min_std: float = 0.1,
        max_std: float = 1.0,
        low: torch.Tensor | None = None,
        high: torch.Tensor | None = None,
    ):
        super().__init__()
        _positive_int("in_features", in_features)
        _positive_int("action_dim", action_dim)
        if not 0 < min_std < max_std:
            raise ValueError(
                "min_std and max_std must satisfy 0 < min_std < max_std, "
                f"got {min_std} and {max_std}."
            )
        self.discrete = discrete
        self.min_std = min_std
        self.max_std = max_std
        # DreamerV3 scales the policy's output layer by 0.01: a fresh actor is
        # close to uniform (discrete) or to a zero-mean, std ~0.9 Gaussian.
        self.mlp = DreamerV3MLP(
            in_features,
            action_dim if discrete else 2 * action_dim,
            depth=_positive_int("layers", layers),
            num_cells=_positive_int("units", units),
            outscale=0.01,
        )
        low = torch.full((action_dim,), -1.0) if low is None else torch.as_tensor(low).float()
        high = torch.full((action_dim,), 1.0) if high is None else torch.as_tensor(high).float()
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def forward(self, feature: torch.Tensor):
        out = self.mlp(feature)
        if self.discrete:
            return out
        mean, std = out.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return self.center + self.half_range * torch.tanh(mean), self.half_range * std


def make_actor(
    action_spec: TensorSpec,
    feature_dim: int,
    *,
    layers: int = 2,
    units: int = 256,
    feature_key: NestedKey = "feature",
    action_key: NestedKey = "action",
    min_std: float = 0.1,
    max_std: float = 1.0,
    unimix: float = 0.01,
) -> ProbabilisticActor:
    """Build the DreamerV3-style actor for an action spec.

    The actor reads ``feature_key`` and writes ``loc``/``scale`` (continuous)
    or ``logits`` (discrete), the action under ``action_key`` and its
    log-probability under ``"<action_key>_log_prob"``. Its default
    interaction type is ``RANDOM`` (imagination and data collection sample);
    ``set_exploration_type(ExplorationType.DETERMINISTIC)`` gives the
    mean/mode. ``actor.get_dist(td)`` returns the distribution (``log_prob``,
    ``entropy``, ``rsample``).

    Args:
        action_spec: ``Bounded`` (finite box), ``Unbounded`` or ``OneHot``.
        feature_dim: size of the feature read by the actor.

    Keyword Args:
        layers, units: MLP depth and width. Defaults to 2 and 256.
        feature_key, action_key: input / output keys. Defaults ``"feature"``, ``"action"``.
        min_std, max_std: continuous std range. Defaults 0.1 and 1.0.
        unimix: uniform mixing of the discrete policy. Defaults to 0.01.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded, OneHot
        >>> from torchrl.envs.utils import ExplorationType, set_exploration_type
        >>> actor = make_actor(Bounded(-1, 1, (2,)), 6, units=16)
        >>> td = actor(TensorDict({"feature": torch.randn(4, 6)}, [4]))
        >>> td["action"].shape, td["action_log_prob"].shape, bool(td["action"].abs().max() <= 1)
        (torch.Size([4, 2]), torch.Size([4]), True)
        >>> discrete = make_actor(OneHot(3), 6, units=16)
        >>> with set_exploration_type(ExplorationType.DETERMINISTIC):
        ...     action = discrete(TensorDict({"feature": torch.randn(4, 6)}, [4]))["action"]
        >>> action.sum(-1).tolist()
        [1, 1, 1, 1]
    """
    if not 0 <= unimix < 1:
        raise ValueError(f"unimix must be in [0, 1), got {unimix}.")
    if isinstance(action_spec, OneHot):
        if action_spec.shape[-1] < 2:
            raise ValueError(
                f"The action spec has {action_spec.shape[-1]} action: there is nothing to "
                "choose. For `balls`, pass controlled=True to get actions."
            )
        net = ActorNet(
            feature_dim, action_spec.shape[-1], discrete=True, layers=layers, units=units
        )
        params_keys = ["logits"]
        distribution_class = UnimixOneHotCategorical
        distribution_kwargs = {"unimix": unimix}
    elif isinstance(action_spec, (Bounded, Unbounded)):
        if len(action_spec.shape) != 1:
            raise ValueError(
                f"action_spec must be a flat vector spec, got shape {tuple(action_spec.shape)}."
            )
        kwargs = dict(layers=layers, units=units, min_std=min_std, max_std=max_std)
        params_keys = ["loc", "scale"]
        if isinstance(action_spec, Bounded):
            low, high = action_spec.space.low.float(), action_spec.space.high.float()
            if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
                raise ValueError("action_spec: a Bounded spec needs finite low/high bounds.")
            net = ActorNet(feature_dim, action_spec.shape[-1], low=low, high=high, **kwargs)
            distribution_class = TruncatedNormal
            distribution_kwargs = {
                "low": _scalar_if_uniform(low),
                "high": _scalar_if_uniform(high),
                "tanh_loc": False,
            }
        else:
            net = ActorNet(feature_dim, action_spec.shape[-1], **kwargs)
            distribution_class = IndependentNormal
            distribution_kwargs = {}
    else:
        raise ValueError(
            f"action_spec of type {type(action_spec).__name__} is not supported: "
            "use Bounded, Unbounded or OneHot."
        )
    module = TensorDictModule(net, in_keys=[feature_key], out_keys=params_keys)
    return ProbabilisticActor(
        module,
        in_keys=params_keys,
        out_keys=[action_key],
        spec=action_spec,
        distribution_class=distribution_class,
        distribution_kwargs=distribution_kwargs,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )


def _scalar_if_uniform(bound: torch.Tensor) -> float | torch.Tensor:
    # Python floats follow the actor to any device; a per-dimension tensor
    # bound stays where the spec was built.
    return float(bound.flatten()[0]) if bool((bound == bound.flatten()[0]).all()) else bound


class _Concat(nn.Module):
    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, -1)


def make_feature_module(
    in_keys: Sequence[NestedKey] = DEFAULT_ACTING_FEATURE_KEYS,
    out_key: NestedKey = "feature",
) -> TensorDictModule:
    """Concatenate latent entries (e.g. the acting-time state) into the actor's feature.

    For acting, put it between the
    :class:`~torchrl_vta.modules.rssm_wrappers.HierarchicalStateEstimator` and the
    actor; on a rolled-out replay batch use the world model's
    ``feature_keys``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"belief": torch.zeros(2, 3), "state": torch.zeros(2, 2),
        ...                  "abs_belief": torch.zeros(2, 0), "abs_state": torch.zeros(2, 0)}, [2])
        >>> make_feature_module()(td)["feature"].shape
        torch.Size([2, 5])
    """
    return TensorDictModule(_Concat(), in_keys=list(in_keys), out_keys=[out_key])
