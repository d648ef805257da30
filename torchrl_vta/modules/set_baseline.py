"""A deterministic set world model: the traffic baseline the stochastic hierarchy is judged by.

The design of the traffic world model in the seed documents: a
:class:`~torchrl_vta.modules.sets.SetEncoder` across the entities, a GRU over time
trained with teacher forcing, and two :class:`~torchrl_vta.modules.sets.SetDecoder`
heads, one reconstructing the current set and one predicting the next. Its loss is the
Huber reconstruction, the one-step prediction and the existence BCE of both. It has no
stochastic latent, no actions and no boundaries; open-loop it feeds its own prediction
back (:meth:`DeterministicSetModel.rollout`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from torchrl_vta.modules.sets import SetDecoder, SetEncoder

__all__ = ["DeterministicSetModel"]


class DeterministicSetModel(nn.Module):
    """Set encoder, GRU dynamics and set decoders for ``[B, T, K, F]`` sequences.

    Args:
        slots (int): ``K``.
        features (int): ``F``.

    Keyword Args:
        discrete (mapping): ``{column: cardinality}`` of the integer-valued columns.
        units (int): width of the set embedding and decoders. Defaults to 128.
        hidden (int): GRU width. Defaults to 256.
        layers (int): Transformer layers of the encoder. Defaults to 2.
        heads (int): attention heads. Defaults to 4.
        slot_ids (bool): add a slot-index embedding in the encoder (slots are
            identities). Defaults to ``False``.

    Examples:
        >>> model = DeterministicSetModel(8, 6, discrete={4: 4, 5: 2}, units=16, hidden=32, heads=2)
        >>> x, mask = torch.zeros(2, 10, 8, 6), torch.ones(2, 10, 8, dtype=torch.bool)
        >>> sorted(model.loss(x, mask))
        ['loss', 'loss_existence', 'loss_prediction', 'loss_reconstruction']
        >>> values, exists = model.rollout(x, mask, horizon=5)
        >>> values.shape, exists.shape
        (torch.Size([2, 5, 8, 6]), torch.Size([2, 5, 8]))
    """

    def __init__(self, slots: int, features: int, *, discrete: Mapping[int, int] | None = None,
                 units: int = 128, hidden: int = 256, layers: int = 2, heads: int = 4,
                 slot_ids: bool = False):
        super().__init__()
        self.encoder = SetEncoder(features, discrete=discrete, units=units, layers=layers,
                                  heads=heads, slot_ids=slots if slot_ids else None)
        self.gru = nn.GRU(units, hidden, batch_first=True)
        self.reconstruct = SetDecoder(hidden, slots=slots, features=features, discrete=discrete,
                                      units=units)
        self.predict = SetDecoder(hidden, slots=slots, features=features, discrete=discrete,
                                  units=units)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: torch.Tensor | None = None):
        """Teacher-forced pass: ``(reconstruction, next prediction, GRU state)``, the first
        two ``[B, T, K, width]`` (see :class:`~torchrl_vta.modules.sets.SetDecoder`)."""
        hidden, state = self.gru(self.encoder(x, mask), state)
        return self.reconstruct(hidden), self.predict(hidden), state

    def loss(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Huber reconstruction of step ``t``, Huber prediction of step ``t + 1`` and the
        existence BCE of both, each a mean over the batch and time."""
        reconstruction, prediction, _ = self(x, mask)
        reco, reco_exists = self.reconstruct.loss(reconstruction, x, mask, kind="huber")
        pred, pred_exists = self.predict.loss(prediction[:, :-1], x[:, 1:], mask[:, 1:],
                                              kind="huber")
        parts = {"loss_reconstruction": reco.mean(), "loss_prediction": pred.mean(),
                 "loss_existence": reco_exists.mean() + pred_exists.mean()}
        return {"loss": sum(parts.values()), **parts}

    @torch.no_grad()
    def rollout(self, x: torch.Tensor, mask: torch.Tensor, horizon: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Open-loop prediction after the context ``x`` ``[B, T, K, F]``: features
        ``[B, horizon, K, F]`` and existence probabilities ``[B, horizon, K]``, each
        step's prediction fed back as the next input."""
        _, prediction, state = self(x, mask)
        values, exists = self.predict.decode(prediction[:, -1:])
        outputs = [(values, exists)]
        for _ in range(horizon - 1):
            hidden, state = self.gru(self.encoder(values, exists > 0.5), state)
            values, exists = self.predict.decode(self.predict(hidden))
            outputs.append((values, exists))
        return torch.cat([v for v, _ in outputs], 1), torch.cat([e for _, e in outputs], 1)
