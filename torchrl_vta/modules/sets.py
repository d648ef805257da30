"""Set-structured observations: a padded set of entities ``[*B, K, F]`` with a mask ``[*B, K]``.

A multi-agent observation (the vehicles around an intersection, highway-env's
``Kinematics`` rows) is a set: its rows have no order, some slots are empty, and the
count changes over time. :class:`SetEncoder` embeds it permutation-invariantly (per-slot
embedding of the continuous columns in symlog space plus learned embeddings of the
discrete columns, a Transformer encoder across the slots with the padding mask, masked
mean pooling); :class:`SetDecoder` predicts every slot's features and an existence logit
from a latent feature, and :meth:`SetDecoder.loss` scores it: symlog-MSE of the
continuous columns and cross-entropy of the discrete ones on the slots that exist, plus
the existence BCE on every slot. :class:`~torchrl_vta.modules.encoders.MultiEncoder`
and :class:`~torchrl_vta.modules.decoders.MultiDecoder` route 2-D observation keys here
(``set_keys``).

Discrete columns are given as ``{column: number of values}``; they hold integer values
stored as floats (e.g. a site or lane id). Slots are identities: the decoder's slot ``k``
predicts row ``k``, as in worlds that keep an entity in its slot for its whole life.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchrl.modules.functional import symexp, symlog

__all__ = ["SetDecoder", "SetEncoder", "check_discrete_columns"]


def check_discrete_columns(features: int, discrete: Mapping[int, int] | None) -> dict[int, int]:
    """``discrete`` as ``{column: cardinality}`` with every column in ``[0, features)``
    and every cardinality ≥ 2, or a ``ValueError`` naming the entry.

    Examples:
        >>> check_discrete_columns(6, {4: 4, 5: 2})
        {4: 4, 5: 2}
    """
    discrete = {int(c): int(n) for c, n in (discrete or {}).items()}
    for column, count in discrete.items():
        if not -features <= column < features:
            raise ValueError(
                f"set_discrete column {column} is outside the {features} feature columns."
            )
        if count < 2:
            raise ValueError(f"set_discrete[{column}]={count}: a discrete column needs ≥ 2 values.")
    discrete = {c % features: n for c, n in discrete.items()}
    if len(discrete) == features:
        raise ValueError("set_discrete names every column: a set needs a continuous one.")
    return dict(sorted(discrete.items()))


def _flat(x: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    batch = x.shape[: x.ndim - event_dims]
    return x.reshape(-1, *x.shape[x.ndim - event_dims :]), batch


class SetEncoder(nn.Module):
    """Embed a padded set ``[*B, K, F]`` (mask ``[*B, K]``) into ``[*B, units]``.

    Invariant to the order of the slots and blind to the content of empty slots; a set
    with no entity embeds as the projection of zero.

    Args:
        features (int): columns per slot.

    Keyword Args:
        discrete (mapping): ``{column: cardinality}`` of the integer-valued columns.
        units (int): width of the slot embeddings and of the output. Defaults to 128.
        layers (int): Transformer encoder layers across the slots. Defaults to 2.
        heads (int): attention heads (must divide ``units``). Defaults to 4.
        slot_ids (int, optional): the number of slots ``K`` of worlds whose slots are
            identities (an entity keeps its slot for life, as in ``traffic``): a learned
            embedding of the slot index is added to each slot, so that a decoder can
            tell which entity is in which slot. The embedding is then no longer invariant
            to the order of the slots. ``None`` (default): invariant.
        device (torch.device, optional): device of the parameters.

    Examples:
        >>> encoder = SetEncoder(6, discrete={4: 4, 5: 2}, units=16, heads=2)
        >>> x, mask = torch.zeros(3, 5, 8, 6), torch.rand(3, 5, 8) > 0.5
        >>> encoder(x, mask).shape
        torch.Size([3, 5, 16])
    """

    def __init__(self, features: int, *, discrete: Mapping[int, int] | None = None,
                 units: int = 128, layers: int = 2, heads: int = 4,
                 slot_ids: int | None = None, device: torch.device | str | None = None):
        super().__init__()
        self.features = features
        self.discrete = check_discrete_columns(features, discrete)
        if units % heads:
            raise ValueError(f"set_heads={heads} must divide set_units={units}.")
        self.continuous = [c for c in range(features) if c not in self.discrete]
        self.units = units
        self.project = nn.Linear(len(self.continuous), units, device=device)
        self.embeddings = nn.ModuleList(
            nn.Embedding(count, units, device=device) for count in self.discrete.values())
        self.slot_ids = None if slot_ids is None else nn.Embedding(slot_ids, units, device=device)
        layer = nn.TransformerEncoderLayer(units, heads, dim_feedforward=2 * units, dropout=0.0,
                                           batch_first=True, norm_first=True, device=device)
        self.attention = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.Linear(units, units, device=device),
                                 nn.LayerNorm(units, device=device), nn.SiLU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[*B, K, F]``, ``mask`` ``[*B, K]`` (True: the slot holds an entity)."""
        if x.shape[-1] != self.features:
            raise ValueError(f"SetEncoder expects {self.features} columns, got {tuple(x.shape)}.")
        flat, batch = _flat(x.float(), 2)
        present = (torch.ones(flat.shape[:2], dtype=torch.bool, device=x.device) if mask is None
                   else mask.reshape(flat.shape[:2]).bool())
        slots = self.project(symlog(flat[..., self.continuous]))
        for embedding, (column, count) in zip(self.embeddings, self.discrete.items()):
            slots = slots + embedding(flat[..., column].round().long().clamp(0, count - 1))
        if self.slot_ids is not None:
            if flat.shape[1] != self.slot_ids.num_embeddings:
                raise ValueError(f"SetEncoder was built for {self.slot_ids.num_embeddings} "
                                 f"identified slots, got {flat.shape[1]}.")
            slots = slots + self.slot_ids.weight
        # An all-padding row would make every attention weight NaN: let it attend to its
        # first slot; the pooling below still gives that row zero weight.
        attend = ~present
        attend[:, 0] &= present.any(-1)
        slots = self.attention(slots, src_key_padding_mask=attend)
        weights = present.to(slots.dtype).unsqueeze(-1)
        pooled = (slots * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)
        return self.out(pooled).reshape(*batch, self.units)


class SetDecoder(nn.Module):
    """Predict a padded set ``[*B, K, F]`` and its existence from features ``[*B, in]``.

    The output ``[*B, K, width]`` holds per slot the continuous columns (symlog space),
    the logits of each discrete column, then the existence logit; :meth:`split` names
    the parts, :meth:`loss` scores them, :meth:`decode` gives features and existence
    probabilities in the observation's units.

    Args:
        in_features (int): size of the input features.
        slots (int): ``K``.
        features (int): ``F``.

    Keyword Args:
        discrete (mapping): ``{column: cardinality}`` of the integer-valued columns.
        units (int): hidden width. Defaults to 128.
        device (torch.device, optional): device of the parameters.

    Examples:
        >>> decoder = SetDecoder(10, slots=8, features=6, discrete={4: 4, 5: 2}, units=16)
        >>> prediction = decoder(torch.randn(3, 10))
        >>> prediction.shape  # 4 continuous + 4 + 2 logits + existence
        torch.Size([3, 8, 11])
        >>> values, exists = decoder.decode(prediction)
        >>> values.shape, exists.shape
        (torch.Size([3, 8, 6]), torch.Size([3, 8]))
    """

    def __init__(self, in_features: int, *, slots: int, features: int,
                 discrete: Mapping[int, int] | None = None, units: int = 128,
                 device: torch.device | str | None = None):
        super().__init__()
        self.slots, self.features = slots, features
        self.discrete = check_discrete_columns(features, discrete)
        self.continuous = [c for c in range(features) if c not in self.discrete]
        self.width = len(self.continuous) + sum(self.discrete.values()) + 1
        self.trunk = nn.Sequential(nn.Linear(in_features, units, device=device),
                                   nn.LayerNorm(units, device=device), nn.SiLU())
        # One learned query per slot: slot k is entity k (worlds keep an entity's slot).
        self.queries = nn.Parameter(torch.randn(slots, units, device=device) * units**-0.5)
        self.head = nn.Sequential(nn.LayerNorm(units, device=device), nn.SiLU(),
                                  nn.Linear(units, units, device=device),
                                  nn.LayerNorm(units, device=device), nn.SiLU(),
                                  nn.Linear(units, self.width, device=device))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """``[*B, in_features]`` -> ``[*B, K, width]``."""
        return self.head(self.trunk(feature).unsqueeze(-2) + self.queries)

    def split(self, prediction: torch.Tensor):
        """``(continuous [*B, K, C] in symlog space, [logits per discrete column],
        existence logits [*B, K])``."""
        sizes = [len(self.continuous), *self.discrete.values(), 1]
        parts = prediction.split(sizes, -1)
        return parts[0], list(parts[1:-1]), parts[-1].squeeze(-1)

    def decode(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[*B, K, F]`` (continuous columns back from symlog, discrete ones as
        their most likely value) and existence probabilities ``[*B, K]``."""
        continuous, logits, existence = self.split(prediction)
        values = prediction.new_zeros(*prediction.shape[:-1], self.features)
        values[..., self.continuous] = symexp(continuous)
        for column, logit in zip(self.discrete, logits):
            values[..., column] = logit.argmax(-1).to(values.dtype)
        return values, existence.sigmoid()

    def loss(self, prediction: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor | None = None, *, kind: str = "symlog_mse"
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample ``(reconstruction, existence)`` losses ``[*B]``, summed over slots.

        Reconstruction: the squared error (``kind="symlog_mse"``) or the Huber loss
        (``"huber"``, δ = 1) of the continuous columns in symlog space, plus cross-entropy
        of the discrete ones, on the slots where ``mask`` is True (all when ``None``), so
        empty slots never enter it; 0 for a perfect continuous prediction and certain
        discrete logits. Existence: BCE of the existence logit against ``mask`` on every
        slot.

        Examples:
            >>> decoder = SetDecoder(4, slots=2, features=2, units=8)
            >>> target, mask = torch.tensor([[[3.0, -1.0], [7.0, 7.0]]]), torch.tensor([[True, False]])
            >>> exact = torch.cat([symlog(target), torch.tensor([[[50.0], [-50.0]]])], -1)
            >>> reco, exists = decoder.loss(exact, target, mask)
            >>> reco.item(), exists.item() < 1e-6
            (0.0, True)
        """
        if target.shape[-2:] != (self.slots, self.features):
            raise ValueError(f"set target must end with ({self.slots}, {self.features}), "
                             f"got {tuple(target.shape)}.")
        if kind not in ("symlog_mse", "huber"):
            raise ValueError(f"kind={kind!r} is not one of ('symlog_mse', 'huber').")
        continuous, logits, existence = self.split(prediction)
        target = target.to(prediction.dtype)
        present = (torch.ones(target.shape[:-1], dtype=torch.bool, device=target.device)
                   if mask is None else mask.bool())
        weights = present.to(prediction.dtype)
        goal = symlog(target[..., self.continuous])
        per_slot = ((continuous - goal).square() if kind == "symlog_mse"
                    else F.huber_loss(continuous, goal, reduction="none")).sum(-1)
        for (column, count), logit in zip(self.discrete.items(), logits):
            classes = target[..., column].round().long().clamp(0, count - 1)
            per_slot = per_slot + F.cross_entropy(logit.flatten(0, -2), classes.flatten(),
                                                  reduction="none").view_as(per_slot)
        reconstruction = (per_slot * weights).sum(-1)
        exists = F.binary_cross_entropy_with_logits(existence, weights, reduction="none").sum(-1)
        return reconstruction, exists
