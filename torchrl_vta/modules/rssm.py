"""The hierarchical (VTA) recurrent state-space model: a stack of temporal levels.

* the observation level (level 0: belief ``h``, stochastic ``s``) steps every frame:
  it restarts from the level-1 feature on a level-1 READ and continues its GRU on COPY;
* every abstract level ``j >= 1`` (belief ``c_j``, stochastic ``z_j``) is updated only
  on its READ steps and copied bit for bit on its COPY steps; level ``j + 1`` READs only
  where level ``j`` READs, and its READ restarts level ``j`` from its feature.

A boundary (READ = new segment) is sampled with a straight-through Gumbel-softmax from
the causal boundary posterior when filtering, or from the boundary prior when imagining,
by each level's segment policy (:mod:`~torchrl_vta.modules.rssm_steps` has the step).
``levels=2`` is VTA; ``levels=1`` removes the abstract levels and the boundaries and
leaves a flat DreamerV3-style RSSM; ``levels=3+`` adds
:class:`~torchrl_vta.modules.rssm_levels.UpperLevel` s above level 1.

Time convention (TorchRL's): transition ``t`` starts from the state carried out
of step ``t - 1``, applies ``action[t]`` and conditions on the embedding of
``("next", obs)[t]``; ``is_init[t]`` marks the start of an episode, so the
carried state and the action are zeroed before the transition and the step is
READ.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from torchrl_vta.modules._layers import dense_block
from torchrl_vta.modules.boundary import BoundaryPosterior, BoundaryPrior
from torchrl_vta.modules.latent import make_latent
from torchrl_vta.modules.rssm_features import StackFeatures
from torchrl_vta.modules.rssm_levels import UpperLevel
from torchrl_vta.modules.rssm_sequences import StackSequences
from torchrl_vta.modules.rssm_steps import StackSteps
from torchrl_vta.modules.segment_policy import SegmentPolicy

__all__ = ["SURPRISE_PRIORS", "UPPER_SURPRISE_SOURCES", "HierarchicalRSSM"]

#: Surprise signals a level above level 1 can decide on (``upper_surprise_source``).
UPPER_SURPRISE_SOURCES = ("level", "observation")
#: The prior the observation level's surprise is measured against (``surprise_prior``).
SURPRISE_PRIORS = ("observation", "separate")

class HierarchicalRSSM(StackSequences, StackSteps, StackFeatures, nn.Module):
    """Tensor-level two-level RSSM with learned segment boundaries (VTA).

    Args:
        action_dim: size of the (flat) action vector; 0 for action-free data.
        embed_dim: size of the observation embedding.

    Keyword Args:
        levels: number of levels: 2 (VTA, default), 1 (flat DreamerV3-style RSSM), or
            more (abstract levels above level 1, each as level 1: same sizes, latent and
            boundary kind, its own detectors and segment statistics).
        belief_dim / abs_belief_dim: GRU sizes of the observation / abstract level.
        hidden: width of the input projections and latent heads.
        latent / abs_latent: ``"gaussian"`` or ``"categorical"`` per level.
        stoch_dim, groups, classes, unimix, min_std, std_kind: latent options
            (see :mod:`torchrl_vta.modules.latent`); ``abs_stoch_dim``,
            ``abs_groups``, ``abs_classes`` override them for the abstract level.
        norm, act: normalisation (``"layer"``, ``"rms"``, ``"none"``) and
            activation (``"silu"``, ``"elu"``).
        boundary_left / boundary_right: posterior window (frames before /
            after ``t``); ``boundary_right=0`` is causal and lets the acting
            filter use the training posterior.
        boundary_proj_dim, boundary_hidden, boundary_layers: posterior/prior
            detector sizes.
        boundary_kind: how the posterior boundary is decided: ``"learned"``
            (the boundary posterior, VTA), ``"surprise"`` (causal peaks of the
            observation level's surprise) or ``"learned+surprise"`` (the
            posterior also reads the surprise); see
            :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`.
        temperature: Gumbel-softmax temperature (attribute, can be annealed).
        max_seg_len / max_seg_num: segment limits (``None`` disables one).
        limit_mode: ``"prior"`` forces the prior only (original VTA),
            ``"both"`` also forces the posterior, ``"off"`` forces nothing
            (the first step and ``is_init`` steps are READ regardless).
            Imagination counts its segments from its own start.
        surprise_reference, surprise_threshold, surprise_prominence,
            surprise_quantile, surprise_min_nats, surprise_momentum, surprise_init_scale,
            surprise_rearm:
            options of the surprise criterion
            (:class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`).
        upper_max_seg_len / upper_max_seg_num: segment limits of the levels above level 1
            (in steps; ``None``, the default, disables them).
        upper_surprise_source: the surprise signal of a level ``j + 1 >= 2`` (surprise
            kinds), read at level ``j``'s READs: ``"level"`` (default), level ``j``'s own KL
            on its continued candidate; ``"observation"``, the observation level's surprise,
            so a higher level READs at the larger changes among the lower level's events.
        surprise_warmup / upper_surprise_warmup: training sequences during which level 1's /
            the higher levels' surprise criterion does not READ (``surprise`` kind; 0, the
            default, none): the levels below train first, as SUNTA orders its levels.
        surprise_prior: what the observation level's surprise is measured against (surprise
            kinds): ``"observation"`` (default), the observation prior on the continued
            belief, which only COPY steps train, so a step that READs is never taught to be
            unsurprising; ``"separate"``, a prior head of its own on the (detached)
            continued belief, trained on every non-structural step by the surprise itself
            (``WorldModelLoss``'s ``loss_surprise_prior``), so the signal does not depend on
            which steps READ.

    Every level-1 boundary decision is made by ``self.segment_policy`` (one
    :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`); ``temperature``,
    ``max_seg_len``, ``max_seg_num`` and ``limit_mode`` read and write it. The levels
    above decide through their own policies (``self.upper[i].segment_policy``), which
    follow level 1's temperature and limit mode (``SegmentPolicy.follow``).

    Latents and boundaries are sampled in training mode and take their modes
    in eval mode (``module.eval()``), whatever TorchRL's exploration type.

    Examples:
        >>> import torch
        >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, abs_belief_dim=8, hidden=8,
        ...                         stoch_dim=4, boundary_proj_dim=4, boundary_hidden=8)
        >>> out, last = rssm.observe(torch.randn(3, 5, 16), torch.randn(3, 5, 2))
        >>> out["boundary"].shape, out["boundary"][:, 0].squeeze(-1).tolist()
        (torch.Size([3, 5, 1]), [1.0, 1.0, 1.0])
        >>> rssm.feature(last).shape
        torch.Size([3, 24])
    """

    def __init__(
        self,
        action_dim: int,
        embed_dim: int,
        *,
        levels: int = 2,
        belief_dim: int = 256,
        abs_belief_dim: int | None = None,
        hidden: int = 256,
        latent: str = "gaussian",
        abs_latent: str | None = None,
        stoch_dim: int = 32,
        abs_stoch_dim: int | None = None,
        groups: int = 32,
        classes: int = 32,
        abs_groups: int | None = None,
        abs_classes: int | None = None,
        unimix: float = 0.01,
        min_std: float = 0.1,
        std_kind: str = "softplus",
        norm: str = "layer",
        act: str = "silu",
        boundary_left: int = 3,
        boundary_right: int = 0,
        boundary_proj_dim: int = 64,
        boundary_hidden: int | None = None,
        boundary_layers: int = 1,
        boundary_kind: str = "learned",
        temperature: float = 1.0,
        max_seg_len: int | None = None,
        max_seg_num: int | None = None,
        limit_mode: str = "prior",
        surprise_reference: str = "split",
        surprise_threshold: float | None = None,
        surprise_prominence: float = 0.1,
        surprise_quantile: float = 0.99,
        surprise_min_nats: float = 0.0,
        surprise_momentum: float = 0.99,
        surprise_init_scale: float = 1.0,
        surprise_rearm: str | float = "rise",
        upper_max_seg_len: int | None = None,
        upper_max_seg_num: int | None = None,
        upper_surprise_source: str = "level",
        surprise_warmup: int = 0,
        upper_surprise_warmup: int = 0,
        surprise_prior: str = "observation",
    ):
        super().__init__()
        if surprise_prior not in SURPRISE_PRIORS:
            raise ValueError(f"surprise_prior={surprise_prior!r} is not one of {SURPRISE_PRIORS}.")
        if upper_surprise_source not in UPPER_SURPRISE_SOURCES:
            raise ValueError(f"upper_surprise_source={upper_surprise_source!r} is not one of "
                             f"{UPPER_SURPRISE_SOURCES}.")
        self.upper_surprise_source = upper_surprise_source
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise ValueError(f"levels={levels!r}: must be an int >= 1 (1 is the flat RSSM).")
        if action_dim < 0 or embed_dim <= 0:
            raise ValueError(
                f"action_dim must be >= 0 and embed_dim > 0, got {action_dim} and {embed_dim}."
            )
        self.levels = levels
        self.action_dim = action_dim
        self.embed_dim = embed_dim
        policy_options = dict(
            kind=boundary_kind,
            max_seg_len=max_seg_len,
            max_seg_num=max_seg_num,
            limit_mode=limit_mode,
            temperature=temperature,
            surprise_reference=surprise_reference,
            surprise_threshold=surprise_threshold,
            surprise_prominence=surprise_prominence,
            surprise_quantile=surprise_quantile,
            surprise_min_nats=surprise_min_nats,
            surprise_momentum=surprise_momentum,
            surprise_init_scale=surprise_init_scale,
            surprise_rearm=surprise_rearm,
        )
        self.segment_policy = SegmentPolicy(**policy_options, surprise_warmup=surprise_warmup)

        def latent_kwargs(kind, stoch, grp, cls):
            if kind == "gaussian":
                return dict(stoch_dim=stoch, hidden=hidden, std_kind=std_kind,
                            min_std=min_std, norm=norm, act=act)
            return dict(groups=grp, classes=cls, hidden=hidden, unimix=unimix,
                        norm=norm, act=act)

        self.belief_dim = belief_dim
        obs_kwargs = latent_kwargs(latent, stoch_dim, groups, classes)
        self.obs_prior = make_latent(latent, belief_dim, **obs_kwargs)
        self.obs_posterior = make_latent(latent, belief_dim + embed_dim, **obs_kwargs)
        self.surprise_prior = surprise_prior
        if surprise_prior == "separate":
            if not (levels >= 2 and self.segment_policy.uses_surprise):
                raise ValueError(
                    f"surprise_prior='separate' needs levels >= 2 and a surprise boundary kind, "
                    f"got levels={levels}, boundary_kind={boundary_kind!r}; set "
                    f"surprise_prior='observation' or boundary_kind='surprise'.")
            # Only then a module, so the state dicts of other models are unchanged.
            self.obs_surprise_prior = make_latent(latent, belief_dim, **obs_kwargs)
        self.state_dim = self.obs_prior.stoch_dim

        self.upper = nn.ModuleList()
        if levels >= 2:
            abs_latent = abs_latent or latent
            self.level_belief_dim = abs_belief_dim or belief_dim
            abs_kwargs = latent_kwargs(
                abs_latent,
                abs_stoch_dim or stoch_dim,
                abs_groups or groups,
                abs_classes or classes,
            )
            self.abs_prior = make_latent(abs_latent, self.level_belief_dim, **abs_kwargs)
            self.abs_posterior = make_latent(
                abs_latent, self.level_belief_dim + embed_dim, **abs_kwargs
            )
            self.level_state_dim = self.abs_prior.stoch_dim
            level_feature_dim = self.level_belief_dim + self.level_state_dim
            # Levels above the first continue their segment with the feature of the level
            # above, as the observation level does with level 1.
            above = level_feature_dim if levels >= 3 else 0
            # The action enters the abstract transition: a segment's abstract
            # state is chosen knowing the action that opened it.
            self.abs_input = dense_block(
                self.level_state_dim + action_dim + above, hidden, norm, act
            )
            self.abs_cell = nn.GRUCell(hidden, self.level_belief_dim)
            # READ restarts the observation belief from the abstract feature;
            # tanh keeps it in the GRU's range.
            self.restart = nn.Sequential(nn.Linear(level_feature_dim, belief_dim), nn.Tanh())
            self.boundary_prior = BoundaryPrior(
                belief_dim + self.state_dim,
                hidden=boundary_hidden or hidden,
                layers=boundary_layers,
                norm=norm,
                act=act,
            )
            self.boundary_posterior = BoundaryPosterior(
                embed_dim,
                left=boundary_left,
                right=boundary_right,
                proj_dim=boundary_proj_dim,
                hidden=boundary_hidden or hidden,
                layers=boundary_layers,
                norm=norm,
                act=act,
                surprise_features=self.segment_policy.surprise_feature_dim,
            )
            for number in range(2, levels):
                self.upper.append(UpperLevel(
                    below_feature_dim=level_feature_dim,
                    below_belief_dim=self.level_belief_dim,
                    action_dim=action_dim,
                    embed_dim=embed_dim,
                    above_feature_dim=level_feature_dim if number < levels - 1 else 0,
                    belief_dim=self.level_belief_dim,
                    latent=abs_latent,
                    latent_kwargs=abs_kwargs,
                    hidden=hidden,
                    norm=norm,
                    act=act,
                    boundary_kwargs=dict(left=boundary_left, proj_dim=boundary_proj_dim,
                                         hidden=boundary_hidden or hidden,
                                         layers=boundary_layers),
                    policy=SegmentPolicy(**{**policy_options, "max_seg_len": upper_max_seg_len,
                                            "max_seg_num": upper_max_seg_num,
                                            "surprise_warmup": upper_surprise_warmup}
                                         ).follow(self.segment_policy),
                ))
            self.context_shape = ((levels - 1) * boundary_left, boundary_proj_dim)
        else:
            self.level_belief_dim = self.level_state_dim = level_feature_dim = 0
            self.context_shape = (0, 0)
        #: Sizes of the abstract part of the state: every abstract level, level 1 first.
        self.abs_belief_dim = (levels - 1) * self.level_belief_dim
        self.abs_state_dim = (levels - 1) * self.level_state_dim
        self.obs_input = dense_block(
            self.state_dim + action_dim + level_feature_dim, hidden, norm, act
        )
        self.obs_cell = nn.GRUCell(hidden, belief_dim)

    # ------------------------------------------------------- segment policy
    @property
    def temperature(self) -> float:
        """Gumbel-softmax temperature of the segment policy."""
        return self.segment_policy.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        # Every level decides with level 1's temperature (annealed once).
        self.segment_policy.temperature = value

    @property
    def max_seg_len(self) -> int | None:
        """Segment length limit of the segment policy."""
        return self.segment_policy.max_seg_len

    @max_seg_len.setter
    def max_seg_len(self, value: int | None) -> None:
        self.segment_policy.max_seg_len = value

    @property
    def max_seg_num(self) -> int | None:
        """Segment number limit of the segment policy."""
        return self.segment_policy.max_seg_num

    @max_seg_num.setter
    def max_seg_num(self, value: int | None) -> None:
        self.segment_policy.max_seg_num = value

    @property
    def limit_mode(self) -> str:
        """Forcing mode of the segment policy (``"prior"``, ``"both"``, ``"off"``)."""
        return self.segment_policy.limit_mode

    @limit_mode.setter
    def limit_mode(self, value: str) -> None:
        self.segment_policy.limit_mode = value

    @property
    def _carries_surprise(self) -> bool:
        return self.levels >= 2 and self.segment_policy.uses_surprise

    # ------------------------------------------------------------- one step
    def _deterministic(self) -> bool:
        # Deliberately not TorchRL's exploration type: LossModule.forward runs
        # under DETERMINISTIC, and the world model must keep sampling there.
        return not (self.training or getattr(self, "_sampling", False))

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Sample the stochastic latents in eval mode too (e.g. several open-loop futures
        of one context); nothing else of eval mode changes (no statistics are updated).

        Examples:
            >>> rssm = HierarchicalRSSM(2, 8, belief_dim=8, hidden=8, stoch_dim=4).eval()
            >>> with rssm.sampling():
            ...     a, _ = rssm.imagine(rssm.initial_state([3], torch.device("cpu")), torch.zeros(3, 2, 2))
            >>> bool((a["state"][0] != a["state"][1]).any())
            True
        """
        previous = getattr(self, "_sampling", False)
        self._sampling = True
        try:
            yield
        finally:
            self._sampling = previous

    @property
    def obs_step_fn(self):
        """The filtering step the sequence loops call (compiled after :meth:`compile_steps`)."""
        return self.__dict__.get("_compiled_obs_step") or self.obs_step

    @property
    def img_step_fn(self):
        """The imagination step the loops call (compiled after :meth:`compile_steps`)."""
        return self.__dict__.get("_compiled_img_step") or self.img_step

    def compile_steps(self, mode: str | None = None, **options) -> "HierarchicalRSSM":
        """``torch.compile`` the one-step functions used by the sequence loops.

        :meth:`observe` and :meth:`imagine` (hence the world-model and actor
        losses) then run compiled steps; ``mode="reduce-overhead"`` adds CUDA
        graphs on a GPU. The acting filter keeps the eager step. Compiling
        per step keeps graphs small instead of unrolling the time loop.

        Examples:
            >>> rssm = HierarchicalRSSM(2, 16, belief_dim=8, hidden=8, stoch_dim=4,
            ...                         boundary_proj_dim=4, boundary_hidden=8)
            >>> rssm.compile_steps().obs_step_fn is rssm.obs_step
            False
        """
        self.__dict__["_compiled_obs_step"] = torch.compile(self.obs_step, mode=mode, **options)
        self.__dict__["_compiled_img_step"] = torch.compile(self.img_step, mode=mode, **options)
        return self

    def __getstate__(self):
        # Compiled functions do not pickle (multi-process collectors copy the policy).
        state = dict(self.__dict__)
        state.pop("_compiled_obs_step", None)
        state.pop("_compiled_img_step", None)
        return state
