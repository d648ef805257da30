"""The DreamerV3 critic: a two-hot value head over the latent feature, as a TensorDict module."""

from __future__ import annotations

from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torchrl.modules import SymExpTwoHot

from torchrl_vta.modules.heads import ValueHead

__all__ = ["make_value_model"]


def make_value_model(
    feature_dim: int,
    *,
    layers: int = 2,
    units: int = 256,
    num_bins: int = 255,
    feature_key: NestedKey = "feature",
    value_key: NestedKey = "state_value",
    logits_key: NestedKey = "state_value_logits",
) -> TensorDictSequential:
    """Two-hot critic: ``feature -> state_value_logits -> state_value``.

    A zero-initialised :class:`~torchrl_vta.modules.heads.ValueHead` writes the
    logits over TorchRL's symexp support; a :class:`~torchrl.modules.SymExpTwoHot`
    decodes them into ``state_value`` ``[*, 1]`` (what the actor loss and the
    slow-critic regulariser of :class:`~torchrl.objectives.DreamerV3ValueLoss` read).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> value_model = make_value_model(6, units=16)
        >>> td = value_model(TensorDict({"feature": torch.randn(4, 6)}, [4]))
        >>> td["state_value_logits"].shape, td["state_value"].abs().max().item()
        (torch.Size([4, 255]), 0.0)
    """
    head = ValueHead(feature_dim, layers=layers, units=units, num_bins=num_bins)
    return TensorDictSequential(
        TensorDictModule(head, in_keys=[feature_key], out_keys=[logits_key]),
        TensorDictModule(SymExpTwoHot(num_bins), in_keys=[logits_key], out_keys=[value_key]),
    )

