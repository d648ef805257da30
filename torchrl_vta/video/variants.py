"""The two video models behind one small interface: the original VTA
(:class:`~torchrl_vta.original.model.OriginalVTA`) and the agent world model
(:class:`~torchrl_vta.modules.rssm.HierarchicalRSSM` built by ``make_world_model``),
both action-free, both fed uint8 frames ``[N, T, 3, H, W]``.

Each variant has ``levels``, ``losses(pixels)`` (a TensorDict of loss terms), ``total`` (their sum),
``boundaries(pixels, forcing)`` (an :class:`Inference`), ``generate(context, steps, mode)``
(uint8 frames and imagined READs), its ``policy`` (the
:class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`) and its ``loss`` module.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from tensordict import TensorDict
from torchrl.data import Composite, Unbounded

from torchrl_vta.modules.boundary_ops import READ
from torchrl_vta.modules.world_model import make_world_model
from torchrl_vta.objectives.world_model_loss import WorldModelLoss
from torchrl_vta.original import OriginalVTA, OriginalVTALoss, OriginalVTAModule
from torchrl_vta.pixels import quantize_pixels, to_uint8
from torchrl_vta.video.config import (
    AGENT_SIZES,
    AgentModelConfig,
    OriginalModelConfig,
    VideoConfig,
)

__all__ = ["AgentVariant", "Inference", "OriginalVariant", "make_variant"]


class Inference(NamedTuple):
    """Posterior boundaries of windows ``[N, T]``, the reconstructions ``[N, T, 3, H, W]``
    (uint8; black on the original model's context frames) and the per-step ``surprise``
    ``[N, T]``: the information the posterior takes in at each step,
    ``KL(q(s) || p(s)) + READ * KL(q(z) || p(z))`` in nats. ``upper`` holds one
    :class:`Inference` (``reconstruction`` ``None``) per level above level 1 (``levels >= 3``):
    its READs, READ scores, forced-or-masked steps and its signal (the surprise of the level
    below at that level's READs).

    Example:
        >>> from torchrl_vta.video import validate_config
        >>> variant = make_variant(validate_config({"model": {"name": "original", "size": "tiny"}}))
        >>> inference = variant.boundaries(torch.zeros(1, 30, 3, 32, 32, dtype=torch.uint8), False)
        >>> inference.read.shape, inference.reconstruction.dtype
        (torch.Size([1, 30]), torch.uint8)
    """

    read: torch.Tensor
    prob: torch.Tensor
    forced: torch.Tensor
    reconstruction: torch.Tensor
    surprise: torch.Tensor
    upper: tuple = ()


class OriginalVariant:
    """The original VTA behind the small interface the loop and evaluation use.

    Example:
        >>> variant = OriginalVariant(OriginalModelConfig(size="tiny"), torch.device("cpu"))
        >>> type(variant.model).__name__
        'OriginalVTA'
    """

    def __init__(self, config: OriginalModelConfig, device: torch.device):
        belief, feat, state = config.sizes()
        self.config = config
        self.model = OriginalVTA(
            belief_size=belief, feat_size=feat, state_size=state,
            latent_layers=config.latent_layers, boundary_layers=config.boundary_layers,
            max_seg_len=config.max_seg_len, max_seg_num=config.max_seg_num,
        ).to(device)
        self.module = OriginalVTAModule(self.model, init_size=config.init_size, bits=config.bits)
        self.loss = OriginalVTALoss(self.module, **config.loss)
        self.total = OriginalVTALoss.total
        self.policy = self.model.segment_policy
        self.levels = 2

    def losses(self, pixels: torch.Tensor) -> TensorDict:
        return self.loss(TensorDict(pixels=pixels, batch_size=pixels.shape[:2]))

    def boundaries(self, pixels: torch.Tensor, forcing: bool) -> Inference:
        """Boundaries and reconstructions of whole windows (eval mode)."""
        obs = quantize_pixels(pixels, self.config.bits, dequantize=False)
        with self.policy.limits("both" if forcing else "off"):
            out = self.model(obs, init_size=self.config.init_size)
        # Context frames are not reconstructed: show them black.
        reconstruction = torch.where(out.modelled[..., None, None], out.reconstruction, 0.0)
        model = self.model
        surprise = model.obs_posterior.kl(out.posterior_stats, out.prior_stats) + out.boundary[
            ..., 0] * model.abs_posterior.kl(out.abs_posterior_stats, out.abs_prior_stats)
        return Inference(
            out.boundary[..., 0].bool(), out.boundary_logits.softmax(-1)[..., READ],
            out.boundary_forced[..., 0], to_uint8(reconstruction),
            surprise.reshape(out.boundary.shape[:-1]),
        )

    def generate(self, context: torch.Tensor, steps: int, mode: str):
        obs = quantize_pixels(context, self.config.bits, dequantize=False)
        out = self.model.generate(obs, steps, mode=mode)
        return to_uint8(out.frames), out.boundary[..., 0].bool()


class AgentVariant:
    """The agent world model (action-free) behind the same interface.

    Example:
        >>> variant = AgentVariant(AgentModelConfig(size="tiny"), 32, torch.device("cpu"))
        >>> variant.rssm.levels
        2
    """

    def __init__(self, config: AgentModelConfig, image_size: int, device: torch.device):
        self.config = config
        spec = Composite(pixels=Unbounded((3, image_size, image_size)))
        self.world_model = make_world_model(
            spec, Unbounded((0,)), preset=AGENT_SIZES[config.size], encoder=config.encoder,
            rssm=config.rssm, decoder=config.decoder, continue_head=False, levels=config.levels,
        ).to(device)
        self.rssm = self.world_model.rssm
        # Videos carry no reward: the reward head gets zero targets and zero weight.
        self.loss = WorldModelLoss(self.world_model, **{"reward_scale": 0.0, **config.loss})
        self.total = WorldModelLoss.total
        self.policy = self.rssm.segment_policy
        self.levels = self.rssm.levels

    def _scaled(self, pixels: torch.Tensor) -> torch.Tensor:
        # The same 5-bit input as the original's, in the package's model space.
        return quantize_pixels(pixels, self.config.bits, dequantize=self.world_model.training)

    def _tensordict(self, pixels: torch.Tensor) -> TensorDict:
        batch, steps = pixels.shape[:2]
        zeros = torch.zeros(batch, steps, 1, device=pixels.device)
        is_init = torch.zeros(batch, steps, 1, dtype=torch.bool, device=pixels.device)
        is_init[:, 0] = True
        return TensorDict(
            {
                "action": torch.zeros(batch, steps, 0, device=pixels.device),
                "is_init": is_init,
                "next": {"pixels": self._scaled(pixels), "reward": zeros,
                         "terminated": zeros.bool()},
            },
            batch_size=[batch, steps],
        )

    def losses(self, pixels: torch.Tensor) -> TensorDict:
        return self.loss(self._tensordict(pixels))

    def boundaries(self, pixels: torch.Tensor, forcing: bool):
        with self.policy.limits("both" if forcing else "off"):
            td = self.world_model(self._tensordict(pixels))
        reconstruction = to_uint8(td["next", "reco_pixels"])
        read = td["next", "boundary"][..., 0]
        if self.policy.kind == "surprise":
            # The criterion's score is the normalised surprise (its logits are hard).
            prob = self.policy.normalise(td["next", "obs_surprise"][..., 0])
        else:
            prob = td["next", "boundary_logits"].softmax(-1)[..., READ]
        surprise = self.rssm.obs_posterior.kl(
            td["next", "posterior_stats"], td["next", "prior_stats"]
        ).reshape(read.shape) + read * self.rssm.abs_posterior.kl(
            td["next", "abs_posterior_stats"], td["next", "abs_prior_stats"]
        ).reshape(read.shape)
        return Inference(
            read.bool(), prob, td["next", "boundary_forced"][..., 0], reconstruction, surprise,
            self._upper(td),
        )

    def _upper(self, td: TensorDict) -> tuple:
        out = []
        for index, level in enumerate(self.rssm.upper):
            read = td["next", "upper_boundary"][..., index]
            signal = td.get(("next", "upper_surprise"), None)
            signal = torch.zeros_like(read) if signal is None else signal[..., index]
            if level.segment_policy.kind == "surprise":
                prob = level.segment_policy.normalise(signal)
            else:
                prob = td["next", "upper_boundary_logits"][..., index, :].softmax(-1)[..., READ]
            out.append(Inference(read.bool(), prob, td["next", "upper_boundary_forced"][..., index],
                                 None, signal))
        return tuple(out)

    def generate(self, context: torch.Tensor, steps: int, mode: str):
        batch, length = context.shape[:2]
        embed = self.world_model.encoder(self._scaled(context))
        no_action = embed.new_zeros(batch, length, 0)
        out = self.rssm.generate(embed, no_action, embed.new_zeros(batch, steps, 0), mode=mode,
                                 level=self.rssm.levels - 1)
        frames = self.world_model.decoder(out["obs_feature"])[0]
        return to_uint8(frames), out["boundary"][..., 0].bool()


def make_variant(config: VideoConfig, device: torch.device | str = "cpu"):
    """Build the model named by ``config.model.name`` behind the interface the training,
    evaluation and pictures use (``losses``, ``total``, ``boundaries``, ``generate``,
    ``policy``, ``loss``).

    Example:
        >>> from torchrl_vta.video import validate_config
        >>> config = validate_config({"model": {"name": "agent", "size": "tiny"}})
        >>> variant = make_variant(config)
        >>> pixels = torch.randint(0, 256, (2, config.window, 3, 32, 32), dtype=torch.uint8)
        >>> variant.boundaries(pixels, forcing=False).read.shape
        torch.Size([2, 30])
    """
    device = torch.device(device)
    if config.model.name == "original":
        return OriginalVariant(config.model, device)
    return AgentVariant(config.model, config.dataset.image_size, device)


