"""World-model loss of the hierarchical RSSM (reconstruction, reward, continue, KLs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_vta.distributed import mean_over_ranks
from torchrl_vta.objectives._checks import entry, nonnegative, total_loss
from torchrl_vta.objectives.jumpy_reconstruction import jumpy_reconstruction

from torchrl_vta.modules.boundary_ops import READ, concrete_log_prob
from torchrl_vta.modules.encoders import key_name
from torchrl_vta.modules.world_model import HierarchicalWorldModel

__all__ = ["WorldModelLoss"]

_BOUNDARY_KL = ("categorical", "concrete")


def _masked_mean(value: torch.Tensor, mask: torch.Tensor | None, *, loss: bool = False
                 ) -> torch.Tensor:
    if mask is None:
        return value.mean()
    count = mask.sum()
    if loss:
        # A data-parallel learner averages the ranks' gradients; over the ranks' mean count
        # that average is the masked mean of the combined batch.
        count = mean_over_ranks(count)
    return (value * mask).sum() / count.clamp_min(1)


def _categorical_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    q_log = q_logits.log_softmax(-1)
    return (q_log.exp() * (q_log - p_logits.log_softmax(-1))).sum(-1)


class WorldModelLoss(LossModule):
    """Loss of a :class:`~torchrl_vta.modules.HierarchicalWorldModel`.

    Runs the world model on a replay TensorDict ``[*B, T]`` and returns:

    * ``loss_reco``: sum over decoder keys of their per-sample losses
      (image MSE, vector symlog-MSE, audio MSE), averaged over ``B, T``;
    * ``loss_reward``: symlog two-hot cross-entropy of the reward;
    * ``loss_continue``: Bernoulli log-loss of ``1 - terminated``;
    * ``loss_kl``: observation-level KL with the DreamerV3 split
      ``kl_dyn * max(free_bits, KL[sg q || p]) + kl_rep * max(free_bits, KL[q || sg p])``;
    * ``loss_kl_abs`` (``levels >= 2``): the same for the abstract level,
      counted only on READ steps (COPY steps contribute exactly zero) and
      averaged over all steps, as in VTA;
    * ``loss_boundary`` (``levels >= 2``): boundary KL on the steps whose
      boundary was not forced: ``"categorical"`` (dyn/rep split of the
      2-class KL) or ``"concrete"`` (the original VTA single-sample
      ``log q~(y) - log p~(y)`` of the relaxed sample);
    * ``loss_surprise_prior`` (the RSSM's ``surprise_prior="separate"``): the
      observation level's surprise against its separate surprise prior, which only
      that head learns from, on every non-structural step;
    * ``loss_boundary_rate`` (when ``boundary_rate_scale > 0``): a soft
      alternative to hard limits, ``(mean q(READ) - boundary_rate_target)^2``;
    * ``loss_kl_level<j>``, ``loss_boundary_level<j>`` (``levels >= 3``, abstract
      levels ``j >= 2``): level ``j``'s KL counted on its READ steps and its boundary
      KL (categorical, with the same weights) on the steps where level ``j - 1`` READs
      and nothing forced the decision, with the diagnostics ``kl_level<j>``,
      ``kl_boundary_level<j>``, ``boundary_rate_level<j>`` (READs per level ``j - 1``
      READ) and ``mean_segment_length_level<j>`` (in steps).

    Detached diagnostics: ``kl_obs``, ``kl_abs``, ``kl_boundary``,
    ``boundary_rate``, ``mean_segment_length``, ``reco_<key>``. The rollout
    entries stay in the input TensorDict (the actor-critic starts from them).

    Keyword Args:
        reco_scale, reward_scale, continue_scale: term weights (default 1).
        kl_dyn, kl_rep, free_bits: observation-level KL (DreamerV3 2023:
            0.5, 0.1, 1.0).
        abs_kl_dyn, abs_kl_rep, abs_free_bits: abstract level (default: as the
            observation level).
        boundary_kl: ``"categorical"`` (default) or ``"concrete"``.
        boundary_scale, boundary_kl_dyn, boundary_kl_rep: boundary KL weights
            (the split applies to ``"categorical"``). ``boundary_kl_rep`` defaults
            to 1 (VTA's weight): the segment limits act on the posterior only
            through this term (a READ past ``max_seg_num`` costs ``KL ≈ 6.9``
            nats against the forced prior). With DreamerV3's 0.1 that cost was
            below what an extra READ buys in reconstruction and the agent's READ
            rate drifted to 0.6–0.8 on cartpole (``examples/README.md``).
        boundary_rate_target, boundary_rate_scale: boundary-rate regulariser
            (off by default).
        surprise_guard: with a surprise boundary kind, drop the dynamics term of
            the observation-level KL on COPY steps whose surprise is above the
            event split (:meth:`~torchrl_vta.modules.segment_policy.SegmentPolicy.event_split`):
            events the criterion missed do not train the prior to absorb them,
            which would lower the surprise of later events (a collapse measured
            with ``surprise_reference="max"``). ``None`` (default): on with a surprise
            boundary kind, off otherwise (held out at tau=1: maze F1 0.96 and 0.68 on two
            seeds with it, 0.66 without; one_ball 0.97 either way;
            ``benchmarks/BOUNDARY_QUALITY.md``).
        jumpy_scale: weight of ``loss_jumpy`` (default 0: off). It asks the level-1
            belief to carry the context the next segment starts in (the scene of
            ``nested_one_ball``), which level 2's surprise needs, and trains jumpy
            generation.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded, Composite, Unbounded
        >>> from torchrl_vta.modules.world_model import make_world_model
        >>> model = make_world_model(Composite(position=Unbounded((5,))),
        ...                          Bounded(-1, 1, (2,)), preset="test")
        >>> loss = WorldModelLoss(model)
        >>> td = TensorDict({"action": torch.zeros(2, 4, 2),
        ...                  "is_init": torch.zeros(2, 4, 1, dtype=torch.bool),
        ...                  "next": {"position": torch.randn(2, 4, 5),
        ...                           "reward": torch.zeros(2, 4, 1),
        ...                           "terminated": torch.zeros(2, 4, 1, dtype=torch.bool)}},
        ...                 [2, 4])
        >>> losses = loss(td)
        >>> sorted(k for k in losses.keys() if k.startswith("loss_"))
        ['loss_boundary', 'loss_continue', 'loss_kl', 'loss_kl_abs', 'loss_reco', 'loss_reward']
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by the loss (all under the replay TensorDict).

        Attributes:
            reward: true reward. Defaults to ``("next", "reward")``.
            terminated: true termination flag. Defaults to ``("next", "terminated")``.
            reward_logits, continue_logits: world-model head outputs.
            prior_stats, posterior_stats, abs_prior_stats, abs_posterior_stats, abs_belief,
            boundary, boundary_logits, boundary_prior_logits,
            boundary_log_sample, boundary_forced, seg_len, obs_surprise, upper_*: rollout
            outputs (see :data:`~torchrl_vta.modules.rssm_state.DEFAULT_ROLLOUT_KEYS`).
        """

        reward: NestedKey = ("next", "reward")
        terminated: NestedKey = ("next", "terminated")
        reward_logits: NestedKey = ("next", "reward_logits")
        continue_logits: NestedKey = ("next", "continue_logits")
        prior_stats: NestedKey = ("next", "prior_stats")
        posterior_stats: NestedKey = ("next", "posterior_stats")
        abs_prior_stats: NestedKey = ("next", "abs_prior_stats")
        abs_posterior_stats: NestedKey = ("next", "abs_posterior_stats")
        abs_belief: NestedKey = ("next", "abs_belief")
        boundary: NestedKey = ("next", "boundary")
        boundary_logits: NestedKey = ("next", "boundary_logits")
        boundary_prior_logits: NestedKey = ("next", "boundary_prior_logits")
        boundary_log_sample: NestedKey = ("next", "boundary_log_sample")
        obs_surprise: NestedKey = ("next", "obs_surprise")
        boundary_forced: NestedKey = ("next", "boundary_forced")
        upper_prior_stats: NestedKey = ("next", "upper_prior_stats")
        upper_posterior_stats: NestedKey = ("next", "upper_posterior_stats")
        upper_boundary: NestedKey = ("next", "upper_boundary")
        upper_boundary_logits: NestedKey = ("next", "upper_boundary_logits")
        upper_boundary_prior_logits: NestedKey = ("next", "upper_boundary_prior_logits")
        upper_boundary_forced: NestedKey = ("next", "upper_boundary_forced")

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        world_model: HierarchicalWorldModel,
        *,
        reco_scale: float = 1.0,
        reward_scale: float = 1.0,
        continue_scale: float = 1.0,
        kl_dyn: float = 0.5,
        kl_rep: float = 0.1,
        free_bits: float = 1.0,
        abs_kl_dyn: float | None = None,
        abs_kl_rep: float | None = None,
        abs_free_bits: float | None = None,
        boundary_kl: str = "categorical",
        boundary_scale: float = 1.0,
        boundary_kl_dyn: float = 0.5,
        boundary_kl_rep: float = 1.0,
        boundary_rate_target: float | None = None,
        boundary_rate_scale: float = 0.0,
        surprise_guard: bool | None = None,
        jumpy_scale: float = 0.0,
    ):
        super().__init__()
        rssm = world_model.rssm
        self.jumpy_scale = nonnegative("jumpy_scale", jumpy_scale)
        if self.jumpy_scale and rssm.levels < 2:
            raise ValueError("jumpy_scale > 0 needs levels >= 2 (the jumpy reconstruction "
                             "decodes from level 1's prior); set jumpy_scale=0.")
        uses_surprise = rssm.levels >= 2 and rssm.segment_policy.uses_surprise
        if surprise_guard is None:
            surprise_guard = uses_surprise
        if not isinstance(surprise_guard, bool):
            raise ValueError(f"surprise_guard must be a bool or None, got {surprise_guard!r}.")
        if surprise_guard and not uses_surprise:
            raise ValueError(
                "surprise_guard=True needs levels >= 2 and a surprise boundary kind "
                "(model.rssm.boundary_kind=surprise or learned+surprise)."
            )
        self.surprise_guard = surprise_guard
        if boundary_kl not in _BOUNDARY_KL:
            raise ValueError(f"boundary_kl={boundary_kl!r} is not one of {_BOUNDARY_KL}.")
        self.world_model = world_model
        self.reco_scale = nonnegative("reco_scale", reco_scale)
        self.reward_scale = nonnegative("reward_scale", reward_scale)
        self.continue_scale = nonnegative("continue_scale", continue_scale)
        self.kl_dyn = nonnegative("kl_dyn", kl_dyn)
        self.kl_rep = nonnegative("kl_rep", kl_rep)
        self.free_bits = nonnegative("free_bits", free_bits)
        self.abs_kl_dyn = self.kl_dyn if abs_kl_dyn is None else nonnegative("abs_kl_dyn", abs_kl_dyn)
        self.abs_kl_rep = self.kl_rep if abs_kl_rep is None else nonnegative("abs_kl_rep", abs_kl_rep)
        self.abs_free_bits = (
            self.free_bits if abs_free_bits is None else nonnegative("abs_free_bits", abs_free_bits)
        )
        self.boundary_kl = boundary_kl
        self.boundary_scale = nonnegative("boundary_scale", boundary_scale)
        self.boundary_kl_dyn = nonnegative("boundary_kl_dyn", boundary_kl_dyn)
        self.boundary_kl_rep = nonnegative("boundary_kl_rep", boundary_kl_rep)
        self.boundary_rate_scale = nonnegative("boundary_rate_scale", boundary_rate_scale)
        if self.boundary_rate_scale and boundary_rate_target is None:
            raise ValueError("boundary_rate_scale > 0 needs boundary_rate_target (a rate in (0, 1)).")
        if boundary_rate_target is not None and not 0 < boundary_rate_target < 1:
            raise ValueError(f"boundary_rate_target must be in (0, 1), got {boundary_rate_target}.")
        self.boundary_rate_target = boundary_rate_target

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _split_kl(self, latent, q_stats, p_stats, dyn, rep, free, dyn_weight=None):
        # DreamerV3: the dynamics term trains the prior, the representation
        # term the posterior; free bits clip each below `free` nats.
        kl_dyn = latent.kl(q_stats.detach(), p_stats)
        kl_rep = latent.kl(q_stats, p_stats.detach())
        dyn_term = kl_dyn.clamp_min(free)
        if dyn_weight is not None:
            dyn_term = dyn_term * dyn_weight.reshape(dyn_term.shape)
        loss = dyn * dyn_term + rep * kl_rep.clamp_min(free)
        return loss, kl_rep.detach()

    def _guard_weight(self, tensordict: TensorDictBase) -> torch.Tensor:
        # A COPY step whose surprise is above the event split is an event the criterion
        # missed: training the continued prior towards it would teach the observation level
        # to absorb events, lower their surprise and make the next ones easier to miss.
        policy = self.world_model.rssm.segment_policy
        surprise = entry(self, tensordict, "obs_surprise").squeeze(-1).detach()
        read = entry(self, tensordict, "boundary").squeeze(-1).detach().bool()
        missed = ~read & (surprise >= policy.event_split())
        return (~missed).to(surprise.dtype)

    def _boundary_terms(self, q_logits, p_logits, free, log_sample=None):
        """``(loss, kl)`` of the boundary posterior against the prior on the ``free`` steps."""
        if log_sample is None:
            boundary_loss = self.boundary_kl_dyn * _categorical_kl(
                q_logits.detach(), p_logits
            ) + self.boundary_kl_rep * _categorical_kl(q_logits, p_logits.detach())
            boundary_kl = _categorical_kl(q_logits, p_logits).detach()
        else:
            temperature = self.world_model.rssm.temperature
            boundary_loss = concrete_log_prob(
                log_sample, q_logits, temperature
            ) - concrete_log_prob(log_sample, p_logits, temperature)
            boundary_kl = boundary_loss.detach()
        return (self.boundary_scale * _masked_mean(boundary_loss, free, loss=True),
                _masked_mean(boundary_kl, free))

    def _upper_terms(self, tensordict: TensorDictBase) -> dict[str, torch.Tensor]:
        """The KL and boundary terms of the abstract levels above level 1."""
        out = {}
        reads = entry(self, tensordict, "upper_boundary")
        forced = entry(self, tensordict, "upper_boundary_forced")
        q_logits = entry(self, tensordict, "upper_boundary_logits")
        p_logits = entry(self, tensordict, "upper_boundary_prior_logits")
        stats = [entry(self, tensordict, "upper_posterior_stats"),
                 entry(self, tensordict, "upper_prior_stats")]
        lower = [entry(self, tensordict, "boundary")[..., 0], *reads.unbind(-1)]
        for index, level in enumerate(self.world_model.rssm.upper):
            name = f"level{index + 2}"
            width = level.posterior.stats_dim
            q_stats, p_stats = (x[..., index * width:(index + 1) * width] for x in stats)
            read = reads[..., index].detach()
            kl_loss, kl = self._split_kl(level.posterior, q_stats, p_stats, self.abs_kl_dyn,
                                         self.abs_kl_rep, self.abs_free_bits)
            out[f"loss_kl_{name}"] = (kl_loss * read).mean()
            out[f"kl_{name}"] = _masked_mean(kl, read).detach()
            # Free: the level below READ (this level could decide) and nothing forced it.
            free = (~forced[..., index]).to(read.dtype) * lower[index].detach()
            out[f"loss_boundary_{name}"], out[f"kl_boundary_{name}"] = self._boundary_terms(
                q_logits[..., index, :], p_logits[..., index, :], free)
            out[f"boundary_rate_{name}"] = _masked_mean(read, free)
            out[f"mean_segment_length_{name}"] = read.numel() / read.sum().clamp_min(1)
        return out

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Run the world model on ``tensordict`` and return the losses."""
        self.world_model(tensordict)
        return self.loss_from_rollout(tensordict)

    def loss_from_rollout(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The losses of a TensorDict the world model has already run on."""
        model = self.world_model
        rssm = model.rssm
        out: dict[str, torch.Tensor] = {}

        pairs = model.reconstruction_keys
        reco = model.decoder.loss(
            {name: tensordict.get(reco_key) for name, (_, reco_key) in pairs.items()},
            {**{name: tensordict.get(obs_key) for name, (obs_key, _) in pairs.items()},
             **{name: tensordict.get(key) for name, key in model.reconstruction_masks.items()}},
        )
        out["loss_reco"] = self.reco_scale * sum(value.mean() for value in reco.values())
        for name, value in reco.items():
            out[f"reco_{key_name(name)}"] = value.mean().detach()

        reward_logits = entry(self, tensordict, "reward_logits")
        reward = entry(self, tensordict, "reward").to(reward_logits.dtype)
        out["loss_reward"] = self.reward_scale * model.reward_head.loss(reward_logits, reward).mean()
        if model.continue_head is not None:
            continue_logits = entry(self, tensordict, "continue_logits")
            terminated = entry(self, tensordict, "terminated")
            target = 1.0 - terminated.to(continue_logits.dtype).reshape(continue_logits.shape)
            out["loss_continue"] = (
                self.continue_scale * model.continue_head.loss(continue_logits, target).mean()
            )

        kl_loss, kl = self._split_kl(
            rssm.obs_posterior,
            entry(self, tensordict, "posterior_stats"),
            entry(self, tensordict, "prior_stats"),
            self.kl_dyn,
            self.kl_rep,
            self.free_bits,
            self._guard_weight(tensordict) if self.surprise_guard else None,
        )
        out["loss_kl"] = kl_loss.mean()
        out["kl_obs"] = kl.mean()
        if rssm.surprise_prior == "separate":
            # The surprise itself, differentiable in the separate surprise prior only (its
            # inputs are detached; 0 on structural steps): trained on every step, READ or not.
            out["loss_surprise_prior"] = entry(self, tensordict, "obs_surprise").mean()

        if rssm.levels >= 2:
            read = entry(self, tensordict, "boundary").squeeze(-1)
            read_mask = read.detach()
            abs_loss, abs_kl = self._split_kl(
                rssm.abs_posterior,
                entry(self, tensordict, "abs_posterior_stats"),
                entry(self, tensordict, "abs_prior_stats"),
                self.abs_kl_dyn,
                self.abs_kl_rep,
                self.abs_free_bits,
            )
            # Multiplying by the hard mask makes COPY steps contribute exactly 0.
            out["loss_kl_abs"] = (abs_loss * read_mask).mean()
            out["kl_abs"] = _masked_mean(abs_kl, read_mask).detach()

            free = (~entry(self, tensordict, "boundary_forced").squeeze(-1)).to(read.dtype)
            q_logits = entry(self, tensordict, "boundary_logits")
            p_logits = entry(self, tensordict, "boundary_prior_logits")
            log_sample = (entry(self, tensordict, "boundary_log_sample")
                          if self.boundary_kl == "concrete" else None)
            out["loss_boundary"], out["kl_boundary"] = self._boundary_terms(
                q_logits, p_logits, free, log_sample)
            read_prob = q_logits.softmax(-1)[..., READ]
            rate = _masked_mean(read_prob, free)
            if self.boundary_rate_scale:
                out["loss_boundary_rate"] = self.boundary_rate_scale * (
                    rate - self.boundary_rate_target
                ).square()
            out["boundary_rate"] = _masked_mean(read_mask, free)
            out["mean_segment_length"] = read_mask.numel() / read_mask.sum().clamp_min(1)
            if self.jumpy_scale:
                jumpy = jumpy_reconstruction(
                    model, tensordict,
                    **{f"{name}_key": getattr(self.tensor_keys, name) for name in
                       ("abs_belief", "abs_prior_stats", "boundary", "boundary_forced")})
                out["loss_jumpy"] = self.jumpy_scale * jumpy
                out["reco_jumpy"] = jumpy.detach()
        if rssm.levels >= 3:
            out.update(self._upper_terms(tensordict))

        losses = TensorDict(
            {key: value if key.startswith("loss_") else value.detach() for key, value in out.items()},
            batch_size=[],
        )
        return losses

    total = staticmethod(total_loss)
