"""Generation by the original VTA: imagined futures after a context, frame by frame with
prior boundaries (``"full"``) or one imagined segment per frame (``"jumpy"``).
:class:`OriginalGeneration` holds the methods; :class:`~torchrl_vta.original.model.OriginalVTA`
inherits them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from torchrl_vta.modules.boundary_ops import mix_on_read
from torchrl_vta.modules.latent import _check_int
from torchrl_vta.original.networks import _check_frames

__all__ = ["GENERATION_MODES", "OriginalGeneration", "VTAGeneration"]

GENERATION_MODES = ("full", "jumpy")


class VTAGeneration(NamedTuple):
    """Output of :meth:`OriginalVTA.generate`.

    Attributes:
        frames: generated frames ``[*B, steps, C, 32, 32]`` in ``[0, 1]``.
        boundary: READ indicator ``[*B, steps, 1]`` (all ones in ``"jumpy"`` mode).

    Example:
        >>> import torch
        >>> from torchrl_vta.original import OriginalVTA
        >>> model = OriginalVTA(belief_size=8, feat_size=8, state_size=2).eval()
        >>> model.generate(torch.zeros(1, 3, 3, 32, 32), 4, mode="jumpy").boundary.sum().item()
        4.0
    """

    frames: torch.Tensor
    boundary: torch.Tensor


class OriginalGeneration:
    """Generation methods of :class:`~torchrl_vta.original.model.OriginalVTA` (a mixin: it
    uses the model's encoder, posterior RNN, priors, cells, boundary prior, decoder and
    segment policy).

    Example:
        >>> import torch
        >>> from torchrl_vta.original import OriginalVTA
        >>> model = OriginalVTA(belief_size=8, feat_size=8, state_size=2).eval()
        >>> model.generate(torch.rand(2, 3, 3, 32, 32), 5, mode="full").frames.shape
        torch.Size([2, 5, 3, 32, 32])
    """

    @torch.no_grad()
    def generate(
        self,
        context: torch.Tensor,
        steps: int,
        *,
        mode: str = "full",
        deterministic: bool | None = None,
        limit: bool = True,
    ) -> VTAGeneration:
        """Imagine ``steps`` frames following ``context [*B, C_len, C, 32, 32]``.

        The forward posterior RNN reads the context and its last state is the first
        abstract belief (as for the first modelled frame in training), so the first
        generated frame is the one after the context.

        * ``"jumpy"``: one abstract step per frame; each frame is the first frame of an
          imagined segment (the observation level restarts from ``f^z`` every step).
        * ``"full"``: both levels frame by frame, boundaries from the boundary prior
          (the first frame is READ); ``limit`` applies the segment limits to them.

        ``deterministic`` (default: ``not self.training``) takes latent means and
        noise-free boundaries.
        """
        if mode not in GENERATION_MODES:
            raise ValueError(f"mode must be one of {GENERATION_MODES}, got {mode!r}.")
        _check_int("steps", steps)
        _check_frames("context", context, self.encoder.channels)
        if context.dim() < 5 or context.shape[-4] < 1:
            raise ValueError(
                f"context must have shape [*B, C_len >= 1, C, 32, 32], got {tuple(context.shape)}."
            )
        if deterministic is None:
            deterministic = not self.training
        batch = context.shape[:-4]
        context = context.reshape(-1, *context.shape[-4:])
        embed = self.encoder(context)
        abs_belief = embed.new_zeros(embed.shape[0], self.belief_size)
        for t in range(embed.shape[1]):
            abs_belief = self.post_fwd_abs(embed[:, t], abs_belief)
        if mode == "jumpy":
            frames, reads = self._jumpy(abs_belief, steps, deterministic)
        else:
            frames, reads = self._full(abs_belief, steps, deterministic, limit)
        frames = self.decoder(torch.stack(frames, 1))
        reads = torch.stack(reads, 1)
        return VTAGeneration(
            frames.reshape(*batch, *frames.shape[1:]), reads.reshape(*batch, *reads.shape[1:])
        )

    def _jumpy(self, abs_belief, steps, deterministic):
        features, reads = [], []
        for _ in range(steps):
            abs_state = self.abs_prior.sample(self.abs_prior(abs_belief), deterministic)
            belief = self.abs_feature(torch.cat([abs_belief, abs_state], -1))
            state = self.obs_prior.sample(self.obs_prior(belief), deterministic)
            features.append(self.obs_feature(torch.cat([belief, state], -1)))
            reads.append(belief.new_ones(belief.shape[0], 1))
            abs_belief = self.abs_cell(abs_state, abs_belief)
        return features, reads

    def _full(self, abs_belief, steps, deterministic, limit):
        num = abs_belief.shape[0]
        abs_state = abs_belief.new_zeros(num, self.state_size)
        state = abs_belief.new_zeros(num, self.state_size)
        belief = abs_belief.new_zeros(num, self.belief_size)
        read = abs_belief.new_ones(num, 1)
        seg_len = seg_num = abs_belief.new_zeros(num)
        policy = self.segment_policy
        features, reads = [], []
        for i in range(steps):
            if i > 0:
                abs_belief = mix_on_read(read, self.abs_cell(abs_state, abs_belief), abs_belief)
            new_abs_state = self.abs_prior.sample(self.abs_prior(abs_belief), deterministic)
            abs_state = mix_on_read(read, new_abs_state, abs_state)
            abs_feat = self.abs_feature(torch.cat([abs_belief, abs_state], -1))
            continued = self.obs_cell(torch.cat([state, abs_feat], -1), belief)
            belief = mix_on_read(read, abs_feat, continued)
            state = self.obs_prior.sample(self.obs_prior(belief), deterministic)
            feature = self.obs_feature(torch.cat([belief, state], -1))
            features.append(feature)
            reads.append(read)
            seg_len, seg_num = policy.advance(read[:, 0], seg_len, seg_num)
            read = policy.decide(
                self.boundary_prior(feature), role="imagine", deterministic=deterministic,
                seg_len=seg_len if limit else None, seg_num=seg_num if limit else None,
            ).read
        return features, reads
