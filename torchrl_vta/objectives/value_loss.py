"""The critic's loss: TorchRL's DreamerV3 value loss configured as in DreamerV3, and its slow target.

The critic is trained by TorchRL's own :class:`~torchrl.objectives.DreamerV3ValueLoss`
(two-hot, slow-critic regulariser 1.0, weights from ``discount_weight``) on the imagined
trajectories of :class:`~torchrl_vta.objectives.ImaginationActorLoss`;
:func:`make_target_updater` gives the slow critic's :class:`~torchrl.objectives.SoftUpdate`
(τ = 0.02).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import DreamerV3ValueLoss, SoftUpdate

if TYPE_CHECKING:
    from torchrl_vta.objectives.actor_loss import ImaginationActorLoss

__all__ = ["make_target_updater", "make_value_loss"]


def make_value_loss(
    value_model: TensorDictModule,
    *,
    slow_regularization: float = 1.0,
    num_bins: int = 255,
    actor_loss: ImaginationActorLoss | None = None,
    value_key: NestedKey = "state_value",
    logits_key: NestedKey = "state_value_logits",
    discount_key: NestedKey = "discount_weight",
) -> DreamerV3ValueLoss:
    """TorchRL's :class:`~torchrl.objectives.DreamerV3ValueLoss`, configured as in DreamerV3.

    Two-hot cross entropy to the imagined ``"lambda_target"``, plus
    ``slow_regularization`` times the two-hot cross entropy to the slow
    (target) critic's decoded prediction, each step weighted by
    ``discount_key``. Feed it the second output of
    :class:`ImaginationActorLoss` (already detached). TorchRL reads the
    λ-target under the fixed key ``"lambda_target"``: keep that name in the
    actor loss. ``actor_loss`` only matters when ``discount_key`` is absent
    (TorchRL then rebuilds the weights from the actor loss's ``gamma``).
    Step :func:`make_target_updater` after each critic update.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_vta.objectives.value_model import make_value_model
        >>> loss = make_value_loss(make_value_model(6, units=16))
        >>> target_updater = make_target_updater(loss)
        >>> imagined = TensorDict({"feature": torch.randn(4, 3, 6),
        ...                        "lambda_target": torch.randn(4, 3, 1),
        ...                        "discount_weight": torch.ones(4, 3, 1)}, [4, 3])
        >>> loss(imagined)[0]["loss_value"].shape
        torch.Size([])
    """
    if not slow_regularization >= 0:
        raise ValueError(f"slow_regularization must be >= 0, got {slow_regularization}.")
    loss = DreamerV3ValueLoss(
        value_model,
        value_loss="two_hot",
        discount_loss=True,
        num_value_bins=num_bins,
        actor_loss=actor_loss,
        slow_critic_regularization=slow_regularization,
    )
    loss.set_keys(value=value_key, value_logits=logits_key, discount_weight=discount_key)
    return loss


def make_target_updater(value_loss: DreamerV3ValueLoss, *, tau: float = 0.02) -> SoftUpdate:
    """TorchRL's :class:`~torchrl.objectives.SoftUpdate` of the slow critic (EMA rate ``tau``).

    Call ``.step()`` after every critic optimiser step.

    Examples:
        >>> from torchrl_vta.objectives.value_model import make_value_model
        >>> loss = make_value_loss(make_value_model(6, units=16))
        >>> updater = make_target_updater(loss)
        >>> updater.step()
    """
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}.")
    if not value_loss.slow_critic_regularization:
        raise ValueError(
            "value_loss has no slow critic (slow_regularization=0): there is no target to update."
        )
    return SoftUpdate(value_loss, tau=tau)

