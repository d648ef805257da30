"""The reconstruction losses of :class:`~torchrl_vta.modules.decoders.MultiDecoder`: each
decoded key's prediction scored against its observation where the decoder predicts it
(images on the ``[0, 1]`` scale, vectors in symlog space, audio raw, sets per slot with
their existence), summed over the key's event dimensions into a per-sample loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict.utils import NestedKey, unravel_key
from torchrl.modules.functional import symlog

from torchrl_vta.modules.obs_routing import key_name
from torchrl_vta.pixels import to_unit

__all__ = ["ReconstructionLoss"]


class ReconstructionLoss:
    """The loss part of :class:`~torchrl_vta.modules.decoders.MultiDecoder` (a mixin of that
    ``nn.Module``: it reads its ``out_keys``, ``routing``, ``sets``, ``set_mask_keys`` and
    ``set_existence_scale``).

    Example:
        >>> from torchrl_vta.modules.decoders import MultiDecoder
        >>> issubclass(MultiDecoder, ReconstructionLoss)
        True
    """

    def loss(
        self,
        predictions: Mapping[NestedKey, torch.Tensor],
        targets: Mapping[NestedKey, torch.Tensor],
    ) -> dict[NestedKey, torch.Tensor]:
        """Per-key, per-sample reconstruction losses of shape ``[*B]``.

        Images: squared error summed over ``C, H, W`` in model space (uint8 targets
        mapped to ``[0, 1]`` by :func:`~torchrl_vta.pixels.to_unit`). Vectors:
        ``(prediction - symlog(target))**2`` summed. Audio: squared error summed. A perfect
        prediction scores exactly 0. Sets: the masked reconstruction plus
        ``set_existence_scale`` times the existence BCE of
        :meth:`~torchrl_vta.modules.sets.SetDecoder.loss`, with the mask read from
        ``targets`` at the key's ``set_mask_keys`` entry. Both mappings are indexed by
        observation key (:attr:`out_keys`); extra entries are ignored.

        Examples:
            >>> import torch
            >>> from torchrl.modules.functional import symlog
            >>> from torchrl_vta.modules.decoders import MultiDecoder
            >>> decoder = MultiDecoder({"position": (2,)}, {"position": "mlp"}, 4, mlp_units=8)
            >>> target = torch.tensor([[10.0, -3.0]])
            >>> decoder.loss({"position": symlog(target)}, {"position": target})
            {'position': tensor([0.])}
        """
        predictions = {unravel_key(k): v for k, v in predictions.items()}
        targets = {unravel_key(k): v for k, v in targets.items()}
        losses = {}
        for key in self.out_keys:
            for name, source in (("predictions", predictions), ("targets", targets)):
                if key not in source:
                    raise ValueError(
                        f"{name} has no entry for the decoded key {key_name(key)!r}; "
                        f"it needs all of {[key_name(k) for k in self.out_keys]}."
                    )
            prediction, target = predictions[key], targets[key]
            path = self.routing[key]
            if path == "set":
                mask_key = self.set_mask_keys.get(key)
                if mask_key is not None and mask_key not in targets:
                    raise ValueError(
                        f"targets has no entry for {key_name(mask_key)!r}, the mask of the "
                        f"set key {key_name(key)!r}."
                    )
                decoder = self.sets[self.set_out_keys.index(key)]
                reconstruction, existence = decoder.loss(
                    prediction, target, None if mask_key is None else targets[mask_key])
                losses[key] = reconstruction + self.set_existence_scale * existence
                continue
            if prediction.shape != target.shape:
                raise ValueError(
                    f"Prediction and target of {key_name(key)!r} differ in shape: "
                    f"{tuple(prediction.shape)} vs {tuple(target.shape)}."
                )
            if path == "cnn":
                target = to_unit(target)
                event_dims = (-3, -2, -1)
            else:
                event_dims = (-1,)
            target = target.to(prediction.dtype)
            if path == "mlp":
                target = symlog(target)
            losses[key] = (prediction - target).square().sum(event_dims)
        return losses
