"""Loss of the original VTA video model (Kim, Ahn & Bengio, NeurIPS 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_vta.objectives._checks import entry, nonnegative, total_loss

from torchrl_vta.modules.boundary_ops import READ, concrete_log_prob
from torchrl_vta.original.module import OriginalVTAModule

__all__ = ["OriginalVTALoss"]


def _mask(loss, tensordict: TensorDictBase, name: str) -> torch.Tensor:
    return entry(loss, tensordict, name).squeeze(-1).to(torch.bool)


class OriginalVTALoss(LossModule):
    """The original VTA objective (negative ELBO), per modelled step, averaged over the batch.

    Runs an :class:`~torchrl_vta.original.module.OriginalVTAModule` on a window
    TensorDict ``[*B, T]`` holding uint8 ``pixels`` and returns:

    * ``loss_reco``: ``-log N(x_t | Dec(f^s_t), obs_std)`` summed over pixels (``x`` is
      the 5-bit dequantised input in model space, ``[0, 1]``, including the Gaussian
      constant);
    * ``loss_kl_abs``: ``KL(q(z_t) || p(z_t)) * READ_t`` with the READ mask detached (COPY
      steps add exactly zero), averaged over all modelled steps as in the original;
    * ``loss_kl_obs``: ``KL(q(s_t) || p(s_t))``;
    * ``loss_boundary``: the single-sample Concrete KL
      ``log q~(y_t; alpha_q, tau) - log p~(y_t; alpha_p, tau)`` of the relaxed posterior
      sample ``y_t``, where the prior logits ``alpha_p`` come from step ``t - 1`` (so the
      prior of modelled step ``t`` scores the posterior boundary of step ``t + 1``), and
      ``tau`` is the model's current temperature.

    Averages are over the modelled steps (``boundary_scored`` steps for the boundary term).
    Detached diagnostics: ``kl_abs`` (per READ step), ``kl_obs``, ``kl_boundary``,
    ``reco_sq_error`` (squared error summed over pixels), ``boundary_rate`` (READ share of
    the modelled steps after the first, which is forced), ``read_prob`` (posterior
    P(READ) on the same steps), ``mean_segment_length`` and ``temperature``.

    Args:
        vta: the TensorDict module of the model.

    Keyword Args:
        reco_scale, kl_abs_scale, kl_obs_scale, boundary_scale: term weights (all 1 in
            the original).
        obs_std: standard deviation of the pixel likelihood, in model-space units.
            Defaults to 0.5: the paper's unit standard deviation on its ``[-1, 1]`` scale.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_vta.original import OriginalVTA, OriginalVTAModule
        >>> vta = OriginalVTAModule(OriginalVTA(belief_size=16, feat_size=16, state_size=4),
        ...                         init_size=2)
        >>> loss = OriginalVTALoss(vta)
        >>> pixels = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
        >>> losses = loss(TensorDict(pixels=pixels, batch_size=[2, 8]))
        >>> sorted(k for k in losses.keys() if k.startswith("loss_"))
        ['loss_boundary', 'loss_kl_abs', 'loss_kl_obs', 'loss_reco']
        >>> OriginalVTALoss.total(losses).requires_grad
        True
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by the loss (defaults: :data:`~torchrl_vta.original.module.DEFAULT_VTA_KEYS`).

        Attributes:
            pixels_scaled: preprocessed frames (the reconstruction target).
            reco_pixels: reconstructions.
            prior_stats, posterior_stats, abs_prior_stats, abs_posterior_stats: latent
                statistics of the observation and abstract levels.
            boundary: READ indicator.
            boundary_logits, boundary_prior_logits, boundary_log_sample: posterior and
                prior boundary logits and the relaxed posterior sample.
            modelled, boundary_scored: masks of the modelled steps and of the steps whose
                boundary the prior scores.
        """

        pixels_scaled: NestedKey = "pixels_scaled"
        reco_pixels: NestedKey = "reco_pixels"
        prior_stats: NestedKey = "prior_stats"
        posterior_stats: NestedKey = "posterior_stats"
        abs_prior_stats: NestedKey = "abs_prior_stats"
        abs_posterior_stats: NestedKey = "abs_posterior_stats"
        boundary: NestedKey = "boundary"
        boundary_logits: NestedKey = "boundary_logits"
        boundary_prior_logits: NestedKey = "boundary_prior_logits"
        boundary_log_sample: NestedKey = "boundary_log_sample"
        modelled: NestedKey = "modelled"
        boundary_scored: NestedKey = "boundary_scored"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        vta: OriginalVTAModule,
        *,
        reco_scale: float = 1.0,
        kl_abs_scale: float = 1.0,
        kl_obs_scale: float = 1.0,
        boundary_scale: float = 1.0,
        obs_std: float = 0.5,
    ):
        super().__init__()
        if not isinstance(vta, OriginalVTAModule):
            raise ValueError(f"vta must be an OriginalVTAModule, got {type(vta).__name__}.")
        self.vta = vta
        self.reco_scale = nonnegative("reco_scale", reco_scale)
        self.kl_abs_scale = nonnegative("kl_abs_scale", kl_abs_scale)
        self.kl_obs_scale = nonnegative("kl_obs_scale", kl_obs_scale)
        self.boundary_scale = nonnegative("boundary_scale", boundary_scale)
        if not (isinstance(obs_std, (int, float)) and math.isfinite(obs_std) and obs_std > 0):
            raise ValueError(f"obs_std must be a finite number > 0, got {obs_std!r}.")
        self.obs_std = float(obs_std)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def nll_constant(self, pixels: int) -> float:
        """The Gaussian normaliser in ``loss_reco`` for a frame of ``pixels`` values.

        Examples:
            >>> from torchrl_vta.original import OriginalVTA, OriginalVTAModule
            >>> loss = OriginalVTALoss(OriginalVTAModule(OriginalVTA(belief_size=8, feat_size=8)))
            >>> round(loss.nll_constant(1), 4)
            0.2258
        """
        return pixels * (0.5 * math.log(2 * math.pi) + math.log(self.obs_std))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Run the model on ``tensordict`` (outputs stay in it) and return the losses."""
        self.vta(tensordict)
        return self.loss_from_outputs(tensordict)

    def loss_from_outputs(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The losses of a TensorDict the model has already run on.

        Examples:
            >>> from tensordict import TensorDict
            >>> from torchrl_vta.original import OriginalVTA, OriginalVTAModule
            >>> vta = OriginalVTAModule(OriginalVTA(belief_size=8, feat_size=8, state_size=2),
            ...                         init_size=1)
            >>> td = vta(TensorDict(pixels=torch.zeros(2, 5, 3, 32, 32, dtype=torch.uint8),
            ...                     batch_size=[2, 5]))
            >>> OriginalVTALoss(vta).loss_from_outputs(td)["kl_obs"].item() >= 0
            True
        """
        model = self.vta.model
        modelled = _mask(self, tensordict, "modelled")
        scored = _mask(self, tensordict, "boundary_scored")
        out: dict[str, torch.Tensor] = {}

        # Boolean indexing keeps the zero-filled context entries (std = 0) out of the
        # densities, where even a masked-out NaN would poison the gradient.
        target = entry(self, tensordict, "pixels_scaled")[modelled]
        reco = entry(self, tensordict, "reco_pixels")[modelled]
        sq_error = (reco - target).square().flatten(1).sum(-1)
        nll = 0.5 * sq_error / self.obs_std**2 + self.nll_constant(target[0].numel())
        out["loss_reco"] = self.reco_scale * nll.mean()
        out["reco_sq_error"] = sq_error.mean()

        read = entry(self, tensordict, "boundary").squeeze(-1)
        read_mask = read[modelled].detach()
        kl_abs = model.abs_posterior.kl(
            entry(self, tensordict, "abs_posterior_stats")[modelled],
            entry(self, tensordict, "abs_prior_stats")[modelled],
        )
        # The hard mask makes COPY steps contribute exactly zero (z is copied there).
        out["loss_kl_abs"] = self.kl_abs_scale * (kl_abs * read_mask).mean()
        out["kl_abs"] = (kl_abs * read_mask).sum() / read_mask.sum().clamp_min(1)
        kl_obs = model.obs_posterior.kl(
            entry(self, tensordict, "posterior_stats")[modelled],
            entry(self, tensordict, "prior_stats")[modelled],
        )
        out["loss_kl_obs"] = self.kl_obs_scale * kl_obs.mean()
        out["kl_obs"] = kl_obs.mean()

        log_sample = entry(self, tensordict, "boundary_log_sample")[scored]
        q_logits = entry(self, tensordict, "boundary_logits")
        p_logits = entry(self, tensordict, "boundary_prior_logits")[scored]
        temperature = model.temperature
        kl_boundary = concrete_log_prob(
            log_sample, q_logits[scored], temperature
        ) - concrete_log_prob(log_sample, p_logits, temperature)
        out["loss_boundary"] = self.boundary_scale * kl_boundary.mean()
        out["kl_boundary"] = kl_boundary.mean()

        # The first modelled step is a forced READ: rates are over the steps after it.
        free = modelled & scored
        out["boundary_rate"] = read[free].float().mean()
        out["read_prob"] = q_logits.softmax(-1)[..., READ][free].mean()
        out["mean_segment_length"] = read_mask.numel() / read_mask.sum().clamp_min(1)
        out["temperature"] = torch.tensor(float(temperature))
        return TensorDict(
            {key: value if key.startswith("loss_") else value.detach() for key, value in out.items()},
            batch_size=[],
        )

    total = staticmethod(total_loss)
