"""The original VTA video model (Kim, Ahn & Bengio, NeurIPS 2019), action-free.

This is the unsupervised sequence model of the paper, kept apart from the agent variant
(:class:`~torchrl_vta.modules.rssm.HierarchicalRSSM`): a built-in convolutional
encoder/decoder for 32x32 frames, a *non-causal* boundary posterior (a Conv1d stack over
the whole sequence of embeddings), a bidirectional posterior over the abstract state and
Gaussian latents with a sigmoid standard deviation.

Generative model (``m_t = READ`` starts a segment at ``t``)::

    c_t = GRU_z(z_{t-1}, c_{t-1}) on READ, else c_{t-1}      z_t ~ N(mu(c_t), sigma(c_t)) on READ, else z_{t-1}
    f^z_t = Linear([c_t, z_t])
    h_t = f^z_t on READ, else GRU_s([s_{t-1}, f^z_t], h_{t-1})   s_t ~ N(mu(h_t), sigma(h_t))
    f^s_t = Linear([h_t, s_t])      x_t ~ N(Dec(f^s_t), 1)      logits(m_{t+1}) = Linear(f^s_t)

Inference::

    m_t ~ GumbelSoftmax(Conv1d stack(e_{1:T})_t)           (a +-4 frame window with 3 hidden layers)
    a_t = GRU_a(e_t, a_{t-1})                                (never reset)
    b_t = GRU_b(e_t, COPY_{t+1} * b_{t+1})                   (reset at segment ends)
    o_t = GRU_o(e_t, COPY_t * o_{t-1})                       (reset at segment starts)
    q(z_t) = N([a_{t-1}, b_t])       q(s_t) = N([o_t, f^z_t])

A training window has ``init_size`` context frames, the modelled frames, then
``init_size`` context frames. Boundaries in the context frames (and at the first modelled
frame) are forced to READ, as in the original training: the leading context only feeds
the forward RNN ``a`` and the boundary convolution; the trailing context feeds the
boundary convolution and, being READ, resets the backward RNN at the end of the modelled
span. Losses and metrics only use the modelled frames. The first modelled frame takes
``c = a_{t-1}``, the forward RNN's summary of the leading context (REFERENCE leaves this
start open; generation starts the same way, so it is conditioned on the context).

Two levels of API:

* :class:`OriginalVTA` (tensors): ``forward(obs)`` returns a :class:`VTAOutput` of
  ``[*B, T, ...]`` tensors over the whole window (zeros where a quantity is undefined, see
  the masks ``modelled`` and ``boundary_scored``); ``generate(context, steps, mode=...)``
  imagines ``"full"`` (both levels, prior boundaries) or ``"jumpy"`` (one segment per
  frame) futures.
* :class:`OriginalVTAModule` (TensorDict): reads uint8 ``pixels`` ``[*B, T, 3, 32, 32]``,
  reduces them to 5 bits in model space (:func:`~torchrl_vta.pixels.quantize_pixels`, floats
  in ``[0, 1]``, the package's one pixel convention) and writes every output
  under the keys of :data:`DEFAULT_VTA_KEYS`; :class:`~torchrl_vta.original.loss.OriginalVTALoss`
  reads them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from torchrl_vta.modules.boundary import BoundaryPrior
from torchrl_vta.modules.boundary_ops import mix_on_read
from torchrl_vta.modules.latent import GaussianLatent, _check_int
from torchrl_vta.modules.segment_policy import SegmentPolicy
from torchrl_vta.original.generation import GENERATION_MODES, OriginalGeneration, VTAGeneration
from torchrl_vta.original.networks import (
    ConvBoundaryPosterior,
    VTADecoder,
    VTAEncoder,
    _check_frames,
)

__all__ = ["GENERATION_MODES", "OriginalVTA", "VTAGeneration", "VTAOutput"]


class VTAOutput(NamedTuple):
    """Everything :meth:`OriginalVTA.forward` computes, each ``[*B, T, ...]``.

    Quantities of the generative model exist on the modelled steps only (``modelled``) and
    are zero elsewhere; ``boundary_prior_logits[t]`` are the prior's logits for step ``t``,
    predicted from step ``t - 1``, and exist where ``boundary_scored``. The boundary
    fields cover every step.

    Attributes:
        reconstruction: ``Dec(f^s_t)``, frames in ``[0, 1]``.
        belief, state: observation level ``h_t``, ``s_t``.
        abs_belief, abs_state: abstract level ``c_t``, ``z_t``.
        prior_stats, posterior_stats: ``[mean, std]`` of ``p(s_t)`` and ``q(s_t)``.
        abs_prior_stats, abs_posterior_stats: the same for ``z_t``.
        boundary: READ indicator ``[*B, T, 1]`` (exact 0/1, straight-through gradient).
        boundary_logits: posterior logits ``[*B, T, 2]`` (never forced).
        boundary_log_sample: relaxed Gumbel log-sample ``[*B, T, 2]`` behind ``boundary``.
        boundary_prior_logits: prior logits ``[*B, T, 2]`` (limit-forced in training).
        boundary_forced: bool ``[*B, T, 1]``, boundaries not decided by the posterior
            (context frames, the first modelled frame, posterior limits if enabled).
        modelled: bool ``[*B, T, 1]``, the modelled (reconstructed) steps.
        boundary_scored: bool ``[*B, T, 1]``, steps whose boundary the prior scores.

    Example:
        >>> out = OriginalVTA(belief_size=8, feat_size=8, state_size=2)(torch.zeros(1, 6, 3, 32, 32), init_size=1)
        >>> out.boundary.shape, int(out.modelled.sum())
        (torch.Size([1, 6, 1]), 4)
    """

    reconstruction: torch.Tensor
    belief: torch.Tensor
    state: torch.Tensor
    abs_belief: torch.Tensor
    abs_state: torch.Tensor
    prior_stats: torch.Tensor
    posterior_stats: torch.Tensor
    abs_prior_stats: torch.Tensor
    abs_posterior_stats: torch.Tensor
    boundary: torch.Tensor
    boundary_logits: torch.Tensor
    boundary_log_sample: torch.Tensor
    boundary_prior_logits: torch.Tensor
    boundary_forced: torch.Tensor
    modelled: torch.Tensor
    boundary_scored: torch.Tensor


class OriginalVTA(OriginalGeneration, nn.Module):
    """The original VTA model (tensor level); see the module docstring for the equations.

    Keyword Args:
        channels: image channels. Defaults to 3.
        belief_size: size of every GRU state (``c``, ``h``, ``a``, ``b``, ``o``) and of
            ``f^z``. Defaults to 128.
        feat_size: CNN width, embedding size and size of ``f^s``. Defaults to 128.
        state_size: size of ``z`` and ``s``. Defaults to 8.
        latent_layers: hidden ELU layers (of width ``feat_size``) of each Gaussian head;
            0 makes it a single Linear. Defaults to 1.
        boundary_layers: hidden Conv1d layers of the boundary posterior. Defaults to 3.
        max_seg_len, max_seg_num: segment limits forcing the *prior* boundary logits in
            training (``None`` disables one). Defaults 8 and 5.
        temperature: Gumbel-softmax temperature (an attribute, annealed by the trainer).

    In training mode boundaries and latents are sampled; in eval mode boundaries take the
    argmax of their logits (no Gumbel noise), latents their means, BatchNorm its running
    statistics, and the prior is not forced, so ``forward`` is deterministic.

    Examples:
        >>> model = OriginalVTA(belief_size=16, feat_size=16, state_size=4)
        >>> out = model(torch.rand(2, 12, 3, 32, 32), init_size=2)
        >>> out.reconstruction.shape, out.boundary.shape
        (torch.Size([2, 12, 3, 32, 32]), torch.Size([2, 12, 1]))
        >>> out.modelled[0, :, 0].int().tolist()
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
        >>> _ = model.eval()
        >>> model.generate(torch.zeros(2, 2, 3, 32, 32), 4, mode="jumpy").frames.shape
        torch.Size([2, 4, 3, 32, 32])
    """

    def __init__(
        self,
        *,
        channels: int = 3,
        belief_size: int = 128,
        feat_size: int = 128,
        state_size: int = 8,
        latent_layers: int = 1,
        boundary_layers: int = 3,
        max_seg_len: int | None = 8,
        max_seg_num: int | None = 5,
        temperature: float = 1.0,
    ):
        super().__init__()
        for name, value in (("belief_size", belief_size), ("feat_size", feat_size),
                            ("state_size", state_size)):
            _check_int(name, value)
        self.belief_size = belief_size
        self.feat_size = feat_size
        self.state_size = state_size
        # Every boundary decision (context READs, limits, sampling, temperature) is the
        # segment policy's; the original forces the prior only, in training.
        self.segment_policy = SegmentPolicy(
            max_seg_len=max_seg_len, max_seg_num=max_seg_num, limit_mode="prior",
            temperature=temperature,
        )

        self.encoder = VTAEncoder(channels, feat_size)
        self.decoder = VTADecoder(feat_size, feat_size, channels)
        self.boundary_posterior = ConvBoundaryPosterior(feat_size, layers=boundary_layers)
        self.boundary_prior = BoundaryPrior(feat_size, layers=0)

        def latent(in_features: int) -> GaussianLatent:
            return GaussianLatent(
                in_features, state_size, hidden=feat_size, layers=latent_layers,
                std_kind="sigmoid", norm="none", act="elu",
            )

        # Generative model.
        self.abs_cell = nn.GRUCell(state_size, belief_size)
        self.abs_prior = latent(belief_size)
        self.abs_feature = nn.Linear(belief_size + state_size, belief_size)
        self.obs_cell = nn.GRUCell(state_size + belief_size, belief_size)
        self.obs_prior = latent(belief_size)
        self.obs_feature = nn.Linear(belief_size + state_size, feat_size)
        # Inference networks.
        self.post_fwd_abs = nn.GRUCell(feat_size, belief_size)
        self.post_bwd_abs = nn.GRUCell(feat_size, belief_size)
        self.post_fwd_obs = nn.GRUCell(feat_size, belief_size)
        self.abs_posterior = latent(2 * belief_size)
        self.obs_posterior = latent(2 * belief_size)

    # ----------------------------------------------------------------- boundaries
    @property
    def temperature(self) -> float:
        """Gumbel-softmax temperature of the segment policy."""
        return self.segment_policy.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.segment_policy.temperature = value

    @property
    def max_seg_len(self) -> int | None:
        """Segment length limit of the segment policy."""
        return self.segment_policy.max_seg_len

    @property
    def max_seg_num(self) -> int | None:
        """Segment number limit of the segment policy."""
        return self.segment_policy.max_seg_num

    # -------------------------------------------------------------------- forward
    def forward(
        self, obs: torch.Tensor, *, init_size: int = 5, limit_posterior: bool = False
    ) -> VTAOutput:
        """Infer and reconstruct a window ``obs [*B, T, C, 32, 32]`` (floats in ``[0, 1]``).

        The first and last ``init_size`` frames are context; the ``T - 2 * init_size``
        frames between them are modelled. ``limit_posterior`` also applies the segment
        limits to the posterior boundaries of the modelled steps (for evaluating the
        boundaries "with forcing"; the original only forces the prior).
        """
        _check_frames("obs", obs, self.encoder.channels)
        _check_int("init_size", init_size, minimum=0)
        batch, steps = obs.shape[:-4], obs.shape[-4]
        if steps <= 2 * init_size:
            raise ValueError(
                f"obs has {steps} frames; with init_size={init_size} it needs more than "
                f"{2 * init_size} (context on both sides plus at least one modelled frame)."
            )
        obs = obs.reshape(-1, *obs.shape[-4:])
        num, device = obs.shape[0], obs.device
        start, stop = init_size, steps - init_size
        deterministic = not self.training

        embed = self.encoder(obs)
        post_logits = self.boundary_posterior(embed)
        time = torch.arange(steps, device=device)
        context = ((time <= start) | (time >= stop)).expand(num, steps)
        policy = self.segment_policy
        with policy.limits("both" if limit_posterior else policy.limit_mode):
            decision = policy.decide_sequence(
                post_logits, role="posterior", deterministic=deterministic,
                structural=context, first=start,
            )
        forced = decision.forced
        read_all = decision.read
        copy_all = 1 - read_all

        zeros = embed.new_zeros(num, self.belief_size)
        # Forward abstract RNN a_t (never reset): only a_{start-1} .. a_{stop-2} are read.
        fwd_abs = [zeros]
        for t in range(stop - 1):
            fwd_abs.append(self.post_fwd_abs(embed[:, t], fwd_abs[-1]))
        # fwd_abs[t] is a_{t-1}. Backward RNN: stop is READ (or the end), so b starts at 0.
        bwd_abs = [None] * steps
        hidden = zeros
        for t in reversed(range(start, stop)):
            hidden = self.post_bwd_abs(embed[:, t], hidden)
            bwd_abs[t] = hidden
            hidden = copy_all[:, t] * hidden
        # Forward observation RNN o_t, reset where a segment starts (start is READ).
        fwd_obs = [None] * steps
        hidden = zeros
        for t in range(start, stop):
            hidden = self.post_fwd_obs(embed[:, t], copy_all[:, t] * hidden)
            fwd_obs[t] = hidden

        names = ("belief", "state", "abs_belief", "abs_state", "prior_stats",
                 "posterior_stats", "abs_prior_stats", "abs_posterior_stats", "feature")
        trace: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        abs_belief = fwd_abs[start]
        abs_state = embed.new_zeros(num, self.state_size)
        belief = zeros
        state = embed.new_zeros(num, self.state_size)
        for t in range(start, stop):
            read = read_all[:, t]
            if t > start:
                abs_belief = mix_on_read(read, self.abs_cell(abs_state, abs_belief), abs_belief)
            abs_prior = self.abs_prior(abs_belief)
            abs_post = self.abs_posterior(torch.cat([fwd_abs[t], bwd_abs[t]], -1))
            abs_state = mix_on_read(read, self.abs_posterior.sample(abs_post, deterministic), abs_state)
            abs_feat = self.abs_feature(torch.cat([abs_belief, abs_state], -1))
            continued = self.obs_cell(torch.cat([state, abs_feat], -1), belief)
            belief = mix_on_read(read, abs_feat, continued)
            obs_prior = self.obs_prior(belief)
            obs_post = self.obs_posterior(torch.cat([fwd_obs[t], abs_feat], -1))
            state = self.obs_posterior.sample(obs_post, deterministic)
            feature = self.obs_feature(torch.cat([belief, state], -1))
            for name, value in zip(names, (belief, state, abs_belief, abs_state, obs_prior,
                                           obs_post, abs_prior, abs_post, feature)):
                trace[name].append(value)
        stacked = {name: torch.stack(values, 1) for name, values in trace.items()}
        feature = stacked.pop("feature")
        reconstruction = self.decoder(feature)
        prior_logits = self.boundary_prior(feature)
        if self.training:
            prior_logits = policy.force_prior_sequence(prior_logits, read_all[:, start:stop, 0])

        def pad(value: torch.Tensor, first: int = start) -> torch.Tensor:
            full = value.new_zeros(num, steps, *value.shape[2:])
            full[:, first : first + value.shape[1]] = value
            return full

        modelled = ((time >= start) & (time < stop)).expand(num, steps)
        # The last modelled step predicts a boundary past the window when init_size == 0.
        scored = ((time > start) & (time <= min(stop, steps - 1))).expand(num, steps)
        prior_logits = prior_logits[:, : int(scored[0].sum())]
        out = VTAOutput(
            reconstruction=pad(reconstruction),
            belief=pad(stacked["belief"]),
            state=pad(stacked["state"]),
            abs_belief=pad(stacked["abs_belief"]),
            abs_state=pad(stacked["abs_state"]),
            prior_stats=pad(stacked["prior_stats"]),
            posterior_stats=pad(stacked["posterior_stats"]),
            abs_prior_stats=pad(stacked["abs_prior_stats"]),
            abs_posterior_stats=pad(stacked["abs_posterior_stats"]),
            boundary=read_all,
            boundary_logits=post_logits,
            boundary_log_sample=decision.log_sample,
            boundary_prior_logits=pad(prior_logits, start + 1),
            boundary_forced=forced.unsqueeze(-1),
            modelled=modelled.unsqueeze(-1),
            boundary_scored=scored.unsqueeze(-1),
        )
        return VTAOutput(*(value.reshape(*batch, *value.shape[1:]) for value in out))


#: Default TensorDict keys written by :class:`OriginalVTAModule` (field -> key); see
#: :class:`VTAOutput` for their meaning. ``pixels_scaled`` is the quantised input in
#: ``[0, 1]`` (the reconstruction target) and ``reco_pixels`` the reconstruction.
