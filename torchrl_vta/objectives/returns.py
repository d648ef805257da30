"""λ-returns of imagined trajectories: the continue-weighted TD(λ) return
(:func:`lambda_returns`) and the TorchRL value estimator that holds its ``gamma`` and
``lmbda`` (:class:`LambdaReturnEstimator`, a mixin of
:class:`~torchrl_vta.objectives.actor_loss.ImaginationActorLoss`).
"""

from __future__ import annotations

import torch
from torchrl.objectives.utils import ValueEstimators, dispatch_value_estimator
from torchrl.objectives.value.functional import td_lambda_return_estimate

from torchrl_vta.objectives._checks import _is_real
from torchrl_vta.objectives.imagination import DEFAULT_GAMMA

__all__ = ["LambdaReturnEstimator", "lambda_returns"]


def lambda_returns(
    reward: torch.Tensor,
    value: torch.Tensor,
    cont: torch.Tensor,
    gamma: float,
    lmbda: float,
) -> torch.Tensor:
    """DreamerV3 λ-returns with continue weights, ``[*B, H, 1]``.

    ``reward``, ``value`` and ``cont`` are those of the states reached,
    ``1..H``: ``R_t = r_{t+1} + γ c_{t+1} ((1 - λ) v_{t+1} + λ R_{t+1})``,
    ``R_H = v_H``. This is TorchRL's
    :func:`~torchrl.objectives.value.functional.td_lambda_return_estimate`
    with the per-step discount ``γ c_{t+1}`` (its sequential form is exact
    for a tensor discount and faster on CPU than the vectorised one).

    Examples:
        >>> import torch
        >>> lambda_returns(torch.ones(1, 2, 1), torch.zeros(1, 2, 1), torch.ones(1, 2, 1), 0.5, 1.0)
        tensor([[[1.5000],
                 [1.0000]]])
    """
    never = torch.zeros(reward.shape, dtype=torch.bool, device=reward.device)
    return td_lambda_return_estimate(gamma * cont, lmbda, value, reward, never, never)


class LambdaReturnEstimator:
    """The TD(λ) estimator of a :class:`~torchrl.objectives.LossModule` whose λ-returns
    :func:`lambda_returns` computes (a mixin of
    :class:`~torchrl_vta.objectives.actor_loss.ImaginationActorLoss`).

    The estimator only holds ``gamma`` and ``lmbda``: the returns need a per-step discount
    ``γ c_{t+1}``, which its scalar ``gamma`` cannot express.

    Example:
        >>> from torchrl_vta.objectives import ImaginationActorLoss
        >>> issubclass(ImaginationActorLoss, LambdaReturnEstimator)
        True
    """

    def make_value_estimator(self, value_type: ValueEstimators = None, **hyperparams):
        """Attach the TD(λ) estimator holding ``gamma`` and ``lmbda`` (the only supported type).

        Examples:
            >>> from torchrl.data import OneHot, Composite, Unbounded
            >>> from torchrl_vta.modules.actor import make_actor
            >>> from torchrl_vta.modules.world_model import make_world_model
            >>> from torchrl_vta.objectives import ImaginationActorLoss, make_value_model
            >>> wm = make_world_model(Composite(position=Unbounded((5,))), OneHot(3), preset="test")
            >>> dim = wm.rssm.feature_dim
            >>> loss = ImaginationActorLoss(make_actor(OneHot(3), dim, units=16), wm,
            ...                             value_model=make_value_model(dim, units=16))
            >>> _ = loss.make_value_estimator(gamma=0.99, lmbda=0.9)
            >>> round(loss.value_estimator.gamma.item(), 4), loss.gradient
            (0.99, 'reinforce')
        """
        if value_type is None:
            value_type = self.default_value_estimator
        previous = self._value_estimator
        if previous is not None:
            hyperparams.setdefault("gamma", previous.gamma.item())
            hyperparams.setdefault("lmbda", previous.lmbda.item())
        gamma = hyperparams.get("gamma", DEFAULT_GAMMA)
        lmbda = hyperparams.get("lmbda", 0.95)
        if not _is_real(gamma) or not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}.")
        if not _is_real(lmbda) or not 0 <= lmbda <= 1:
            raise ValueError(f"lmbda must be in [0, 1], got {lmbda!r}.")
        hyperparams.update(gamma=gamma, lmbda=lmbda)
        dispatch_value_estimator(
            self,
            value_type,
            supported=(ValueEstimators.TDLambda,),
            tensor_keys={"value": self.tensor_keys.value},
            value_network=None,
            **hyperparams,
        )
        return self
