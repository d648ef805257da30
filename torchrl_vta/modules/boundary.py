"""Segment boundaries of the hierarchical RSSM.

A boundary is a 2-class one-hot per step: index ``READ`` (0) starts a new segment at this
step, index ``COPY`` (1) continues the current one. This module holds the boundary prior
and posterior networks, Gumbel-softmax straight-through sampling, segment-limit forcing,
the segment counters and the Concrete (relaxed one-hot) log-density used by the original
VTA boundary KL.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from torchrl_vta.modules.latent import _check_int, build_mlp

__all__ = [
    "COPY",
    "FORCE_LOGIT",
    "READ",
    "BoundaryPosterior",
    "BoundaryPrior",
    "BoundarySample",
    "TemperatureSchedule",
    "concrete_log_prob",
    "force_logits",
    "force_sample",
    "limit_segments",
    "mix_on_read",
    "sample_boundary",
    "update_segment_counters",
]

READ = 0
COPY = 1
# Forced logits are (+FORCE_LOGIT, -FORCE_LOGIT) as in the original VTA: the chosen class gets
# probability 999**2 / (999**2 + 1), so even Gumbel noise clipped at u = 1e-4 cannot flip it.
FORCE_LOGIT = math.log(999.0)

# Gumbel noise range of the original VTA: keeps -log(-log(u)) finite.
_GUMBEL_EPS = 1e-4


def _check_is_init(is_init: torch.Tensor, embed: torch.Tensor, name: str) -> torch.Tensor:
    # TorchRL's InitTracker writes `is_init` with a trailing singleton dimension.
    if is_init.dim() == embed.dim() and is_init.shape[-1] == 1:
        is_init = is_init.squeeze(-1)
    if is_init.shape != embed.shape[:-1]:
        raise ValueError(
            f"{name} must have shape {tuple(embed.shape[:-1])} (or with a trailing 1), "
            f"got {tuple(is_init.shape)}."
        )
    return is_init.to(torch.bool)


class BoundaryPrior(nn.Module):
    """Predicts logits of the NEXT step's boundary from the observation-level feature.

    Examples:
        >>> prior = BoundaryPrior(6, hidden=8)
        >>> prior(torch.randn(3, 5, 6)).shape
        torch.Size([3, 5, 2])
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden: int = 256,
        layers: int = 1,
        norm: str = "layer",
        act: str = "silu",
    ):
        super().__init__()
        self.net = build_mlp(in_features, 2, hidden=hidden, layers=layers, norm=norm, act=act)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Return boundary logits ``[..., 2]`` (``READ``, ``COPY``).

        Examples:
            >>> BoundaryPrior(6, hidden=8, layers=0)(torch.randn(6)).shape
            torch.Size([2])
        """
        return self.net(feature)


class BoundaryPosterior(nn.Module):
    """Boundary posterior over a window of embeddings ``[t - left, ..., t + right]``.

    Every frame is projected by one Linear (``embed_dim -> proj_dim``); the projections in
    the window are concatenated oldest first (a Conv1d of kernel ``left + 1 + right``,
    written as unfold + Linear) and an MLP maps them to 2 logits. Window entries outside the
    sequence or in another episode are zeros. With ``right == 0`` (causal) the same
    computation runs step by step at acting time through :meth:`step`, carrying the last
    ``left`` projections as context.

    Examples:
        >>> posterior = BoundaryPosterior(6, left=2, proj_dim=4, hidden=8)
        >>> embed = torch.randn(3, 5, 6)
        >>> logits = posterior(embed)
        >>> logits.shape
        torch.Size([3, 5, 2])
        >>> context = posterior.initial_context([3])
        >>> steps = []
        >>> for t in range(5):
        ...     step_logits, context = posterior.step(embed[:, t], context)
        ...     steps.append(step_logits)
        >>> torch.allclose(torch.stack(steps, 1), logits, atol=1e-6)
        True
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        left: int = 3,
        right: int = 0,
        proj_dim: int = 64,
        hidden: int = 256,
        layers: int = 1,
        norm: str = "layer",
        act: str = "silu",
        surprise_features: int = 0,
    ):
        super().__init__()
        _check_int("embed_dim", embed_dim)
        _check_int("surprise_features", surprise_features, minimum=0)
        _check_int("left", left, minimum=0)
        _check_int("right", right, minimum=0)
        _check_int("proj_dim", proj_dim)
        self.left = left
        self.right = right
        self.proj_dim = proj_dim
        self.proj = nn.Linear(embed_dim, proj_dim)
        self.net = build_mlp(
            (left + 1 + right) * proj_dim, 2, hidden=hidden, layers=layers, norm=norm, act=act
        )
        # Surprise features arrive step by step (they depend on the filtered state), so
        # they add their own logits to the window's batched ones.
        self.surprise_head = (
            build_mlp(surprise_features, 2, hidden=hidden, layers=1, norm=norm, act=act)
            if surprise_features
            else None
        )

    def surprise_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., 2]`` added for the surprise features ``[..., surprise_features]``.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=1, proj_dim=4, hidden=8, surprise_features=3)
            >>> posterior.surprise_logits(torch.zeros(5, 3)).shape
            torch.Size([5, 2])
        """
        if self.surprise_head is None:
            raise ValueError("this posterior was built with surprise_features=0.")
        return self.surprise_head(features)

    @property
    def causal(self) -> bool:
        """Whether the window sees no future frames (``right == 0``).

        Examples:
            >>> BoundaryPosterior(6, left=2, right=2, proj_dim=4, hidden=8).causal
            False
        """
        return self.right == 0

    @property
    def context_len(self) -> int:
        """Number of past projected frames carried between :meth:`step` calls.

        Examples:
            >>> BoundaryPosterior(6, left=2, proj_dim=4, hidden=8).context_len
            2
        """
        return self.left

    def forward(self, embed: torch.Tensor, is_init: torch.Tensor | None = None) -> torch.Tensor:
        """Boundary logits ``[..., T, 2]`` for embeddings ``[..., T, E]``.

        ``is_init`` (``[..., T]`` or ``[..., T, 1]``, bool) marks episode starts: frame
        ``t + o`` is visible from ``t`` only if no episode starts in
        ``(min(t, t + o), max(t, t + o)]``.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=2, right=1, proj_dim=4, hidden=8)
            >>> is_init = torch.tensor([True, False, False, True])
            >>> posterior(torch.randn(4, 6), is_init).shape
            torch.Size([4, 2])
        """
        if embed.dim() < 2:
            raise ValueError(f"embed must have shape [..., T, E], got {tuple(embed.shape)}.")
        proj = self.proj(embed)
        size = self.left + 1 + self.right
        # unfold puts the window last: [..., T, P, size] -> [..., T, size, P], oldest first.
        padded = F.pad(proj, (0, 0, self.left, self.right))
        window = padded.unfold(-2, size, 1).transpose(-1, -2)
        if is_init is None:
            episode = torch.zeros(proj.shape[:-1], dtype=torch.long, device=proj.device)
        else:
            episode = _check_is_init(is_init, embed, "is_init").long().cumsum(-1)
        # Frames share an episode iff no start lies between them; padding gets id -1 so
        # frames outside the sequence are never visible.
        padded_episode = F.pad(episode, (self.left, self.right), value=-1)
        visible = padded_episode.unfold(-1, size, 1) == episode.unsqueeze(-1)
        window = torch.where(visible.unsqueeze(-1), window, 0.0)
        return self.net(window.reshape(*window.shape[:-2], size * self.proj_dim))

    def final_context(self, embed: torch.Tensor, is_init: torch.Tensor | None = None) -> torch.Tensor:
        """The context :meth:`step` holds after the last frame of ``embed [..., T, E]``.

        Lets a filter that computed a whole sequence with :meth:`forward`
        continue step by step: the last ``left`` projected frames, zero before
        the latest episode start or the sequence start.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=3, proj_dim=4, hidden=8)
            >>> embed = torch.randn(5, 6)
            >>> context = posterior.initial_context(())
            >>> for t in range(5):
            ...     _, context = posterior.step(embed[t], context)
            >>> torch.allclose(context, posterior.final_context(embed))
            True
        """
        proj = self.proj(embed[..., max(embed.shape[-2] - self.left, 0) :, :])
        if is_init is not None:
            episode = _check_is_init(is_init, embed, "is_init").long().cumsum(-1)
            episode = episode[..., -proj.shape[-2] :]
            proj = proj * (episode == episode[..., -1:]).unsqueeze(-1).to(proj.dtype)
        missing = self.left - proj.shape[-2]
        return F.pad(proj, (0, 0, missing, 0)) if missing > 0 else proj

    def initial_context(self, batch_shape, device=None, dtype=None) -> torch.Tensor:
        """Empty context ``[*batch_shape, left, proj_dim]`` (zeros) for :meth:`step`.

        Examples:
            >>> BoundaryPosterior(6, left=2, proj_dim=4, hidden=8).initial_context([3]).shape
            torch.Size([3, 2, 4])
        """
        weight = self.proj.weight
        return torch.zeros(
            *batch_shape,
            self.left,
            self.proj_dim,
            device=weight.device if device is None else device,
            dtype=weight.dtype if dtype is None else dtype,
        )

    def step(
        self,
        embed_t: torch.Tensor,
        context: torch.Tensor,
        is_init_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One causal step: ``(logits [..., 2], new_context)`` from ``embed_t [..., E]``.

        ``is_init_t`` (``[...]`` or ``[..., 1]``, bool) zeroes the context before use, as a
        new episode starts. Calling this along a sequence reproduces :meth:`forward`.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=2, proj_dim=4, hidden=8)
            >>> logits, context = posterior.step(torch.randn(3, 6), posterior.initial_context([3]))
            >>> logits.shape, context.shape
            (torch.Size([3, 2]), torch.Size([3, 2, 4]))
        """
        if not self.causal:
            raise ValueError(
                f"step needs a causal posterior (right == 0), got right={self.right}."
            )
        expected = (*embed_t.shape[:-1], self.left, self.proj_dim)
        if context.shape != expected:
            raise ValueError(
                f"context must have shape {expected}, got {tuple(context.shape)}."
            )
        if is_init_t is not None:
            is_init_t = _check_is_init(is_init_t, embed_t, "is_init_t")
            context = torch.where(is_init_t[..., None, None], 0.0, context)
        window = torch.cat([context, self.proj(embed_t).unsqueeze(-2)], dim=-2)
        logits = self.net(window.flatten(-2))
        return logits, window[..., 1:, :]


class BoundarySample(NamedTuple):
    """A straight-through Gumbel-softmax boundary sample.

    ``onehot`` (``[..., 2]``) holds exact 0/1 values in the forward pass and carries the
    relaxed sample's gradient; ``log_sample`` (``[..., 2]``) is the relaxed log-sample
    ``log_softmax((logits + g) / temperature)`` scored by :func:`concrete_log_prob`.

    Examples:
        >>> sample = sample_boundary(torch.tensor([2.0, -2.0]), deterministic=True)
        >>> sample.onehot.tolist()
        [1.0, 0.0]
    """

    onehot: torch.Tensor
    log_sample: torch.Tensor


def _check_temperature(temperature) -> None:
    # Tensor temperatures are not inspected: that would force a device sync every step.
    if not isinstance(temperature, torch.Tensor) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")


def sample_boundary(
    logits: torch.Tensor,
    temperature: float | torch.Tensor = 1.0,
    *,
    deterministic: bool = False,
) -> BoundarySample:
    """Gumbel-softmax straight-through sample of boundary ``logits [..., 2]``.

    Noise ``g = -log(-log(u))``, ``u ~ U(1e-4, 1 - 1e-4)``; ``deterministic`` uses no noise,
    so the hard sample is the argmax. A tensor ``temperature`` must broadcast against
    ``logits`` (shape ``[]`` or ``[..., 1]``).

    Examples:
        >>> logits = torch.zeros(4, 2, requires_grad=True)
        >>> sample = sample_boundary(logits, 0.5)
        >>> sample.onehot.sum(-1).tolist()
        [1.0, 1.0, 1.0, 1.0]
        >>> sample.onehot[:, 0].sum().backward()
        >>> logits.grad.abs().sum().item() > 0
        True
    """
    _check_temperature(temperature)
    if deterministic:
        noisy = logits
    else:
        uniform = torch.rand_like(logits) * (1 - 2 * _GUMBEL_EPS) + _GUMBEL_EPS
        noisy = logits - torch.log(-torch.log(uniform))
    log_sample = torch.log_softmax(noisy / temperature, dim=-1)
    soft = log_sample.exp()
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    # Parenthesised so the forward values stay exactly 0/1: (soft - soft.detach()) == 0.
    return BoundarySample(hard + (soft - soft.detach()), log_sample)


def _check_shapes(shape: torch.Size, **tensors: torch.Tensor) -> None:
    # Silent broadcasting of [..., 1] against [...] would turn a batch into a square matrix.
    for name, tensor in tensors.items():
        if tensor.shape != shape:
            raise ValueError(
                f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}."
            )


def _check_limit(name: str, value) -> None:
    if value is not None:
        _check_int(name, value)


def limit_segments(
    seg_len: torch.Tensor,
    seg_num: torch.Tensor,
    *,
    max_seg_len: int | None,
    max_seg_num: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which steps must READ or COPY given the segment counters before this step.

    ``force_read = seg_len >= max_seg_len``; ``force_copy = (seg_num >= max_seg_num) &
    ~force_read`` (length wins). A limit of ``None`` disables it. Both outputs are bool, of
    the counters' (common) shape.

    Examples:
        >>> read, copy = limit_segments(
        ...     torch.tensor([1, 8, 8]), torch.tensor([5, 5, 1]), max_seg_len=8, max_seg_num=5
        ... )
        >>> read.tolist(), copy.tolist()
        ([False, True, True], [True, False, False])
    """
    _check_limit("max_seg_len", max_seg_len)
    _check_limit("max_seg_num", max_seg_num)
    _check_shapes(seg_len.shape, seg_len=seg_len, seg_num=seg_num)
    never = torch.zeros(seg_len.shape, dtype=torch.bool, device=seg_len.device)
    force_read = never if max_seg_len is None else seg_len >= max_seg_len
    force_copy = never if max_seg_num is None else (seg_num >= max_seg_num) & ~force_read
    return force_read, force_copy


def _forced_rows(
    value: torch.Tensor, force_read: torch.Tensor, force_copy: torch.Tensor, on: float, off: float
) -> torch.Tensor:
    _check_shapes(value.shape[:-1], force_read=force_read, force_copy=force_copy)
    read_row = value.new_tensor([off, off])
    read_row[READ] = on
    copy_row = value.new_tensor([off, off])
    copy_row[COPY] = on
    # READ is applied last so it wins if both are set, as length wins in limit_segments.
    value = torch.where(force_copy.unsqueeze(-1), copy_row, value)
    return torch.where(force_read.unsqueeze(-1), read_row, value)


def force_logits(
    logits: torch.Tensor, force_read: torch.Tensor, force_copy: torch.Tensor
) -> torch.Tensor:
    """Replace forced rows of ``logits [..., 2]`` by ``±FORCE_LOGIT``; others unchanged.

    Examples:
        >>> force_read = torch.tensor([True, False, False])
        >>> force_copy = torch.tensor([False, True, False])
        >>> logits = force_logits(torch.zeros(3, 2), force_read, force_copy)
        >>> [[round(v, 2) for v in row] for row in logits.tolist()]
        [[6.91, -6.91], [-6.91, 6.91], [0.0, 0.0]]
    """
    return _forced_rows(logits, force_read, force_copy, FORCE_LOGIT, -FORCE_LOGIT)


def force_sample(
    sample: BoundarySample, force_read: torch.Tensor, force_copy: torch.Tensor
) -> BoundarySample:
    """Give forced rows the hard one-hot (no gradient through them).

    ``log_sample`` is returned unchanged: it stays the relaxed sample drawn before forcing,
    so a Concrete KL on forced rows should be masked by the caller.

    Examples:
        >>> sample = sample_boundary(torch.zeros(2, 2))
        >>> forced = force_sample(sample, torch.tensor([True, False]), torch.tensor([False, True]))
        >>> forced.onehot.tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    onehot = _forced_rows(sample.onehot, force_read, force_copy, 1.0, 0.0)
    return BoundarySample(onehot, sample.log_sample)


def mix_on_read(read: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` where ``read`` is 1 (READ), ``old`` where it is 0 (COPY), keeping ``read``'s gradient.

    ``read`` is exactly 0 or 1 in the forward pass (straight-through samples), so COPY
    returns ``old`` bit for bit while READ still passes the straight-through gradient
    to the boundary.

    Examples:
        >>> read = torch.tensor([[1.0], [0.0]], requires_grad=True)
        >>> out = mix_on_read(read, torch.full((2, 3), 5.0), torch.full((2, 3), 0.1))
        >>> out[:, 0].tolist()
        [5.0, 0.10000000149011612]
        >>> out.sum().backward(); read.grad[:, 0].tolist()
        [14.699999809265137, 14.699999809265137]
    """
    return read * new + (1 - read) * old


def update_segment_counters(
    read: torch.Tensor, seg_len: torch.Tensor, seg_num: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance the counters after deciding a step: READ -> ``(1, seg_num + 1)``, COPY ->
    ``(seg_len + 1, seg_num)``. ``read`` is bool or 0/1; outputs keep the counters' dtype.
    All three tensors must have the same shape.

    Examples:
        >>> seg_len, seg_num = update_segment_counters(
        ...     torch.tensor([1.0, 0.0]), torch.tensor([4, 4]), torch.tensor([2, 2])
        ... )
        >>> seg_len.tolist(), seg_num.tolist()
        ([1, 5], [3, 2])
    """
    _check_shapes(seg_len.shape, read=read, seg_num=seg_num)
    read = read.to(torch.bool)
    seg_len = torch.where(read, torch.ones_like(seg_len), seg_len + 1)
    seg_num = torch.where(read, seg_num + 1, seg_num)
    return seg_len, seg_num


def concrete_log_prob(
    log_sample: torch.Tensor, logits: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """Log-density ``[...]`` of the K-class Concrete in log space (ExpRelaxedCategorical).

    ``log p(y) = log Gamma(K) + (K-1) log tau + sum_k s_k - K logsumexp_k s_k`` with
    ``s = log_softmax(logits) - tau * y``. A tensor ``temperature`` must have shape ``[]``
    or ``[..., 1]``.

    Examples:
        >>> logits = torch.tensor([0.3, -0.2])
        >>> y = sample_boundary(logits, 0.5).log_sample
        >>> from torch.distributions.relaxed_categorical import ExpRelaxedCategorical
        >>> reference = ExpRelaxedCategorical(torch.tensor(0.5), logits=logits).log_prob(y)
        >>> torch.allclose(concrete_log_prob(y, logits, 0.5), reference)
        True
    """
    _check_temperature(temperature)
    classes = log_sample.shape[-1]
    tau = torch.as_tensor(temperature, dtype=log_sample.dtype, device=log_sample.device)
    score = torch.log_softmax(logits, dim=-1) - tau * log_sample
    # expand_as(...)[..., 0] turns a [] or [..., 1] temperature into the output's [...].
    log_tau = tau.log().expand_as(score)[..., 0]
    return (
        math.lgamma(classes)
        + (classes - 1) * log_tau
        + score.sum(-1)
        - classes * score.logsumexp(-1)
    )


class TemperatureSchedule:
    """Gumbel temperature annealing ``tau(i) = final + (initial - final) * decay ** (i / every)``.

    Defaults are the original VTA's (1.0 annealed toward 0.1).

    Examples:
        >>> schedule = TemperatureSchedule()
        >>> schedule(0)
        1.0
        >>> round(schedule(100), 4)
        0.9991
        >>> round(schedule(10_000_000), 4)
        0.1
    """

    def __init__(
        self, initial: float = 1.0, final: float = 0.1, decay: float = 0.999, every: int = 100
    ):
        if not initial > 0:
            raise ValueError(f"initial must be > 0, got {initial!r}.")
        if not final > 0:
            raise ValueError(f"final must be > 0, got {final!r}.")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay!r}.")
        _check_int("every", every)
        self.initial = float(initial)
        self.final = float(final)
        self.decay = float(decay)
        self.every = every

    def __call__(self, step: int) -> float:
        """Temperature at training step ``step`` (>= 0).

        Examples:
            >>> TemperatureSchedule(initial=2.0, final=1.0, decay=0.5, every=1)(1)
            1.5
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step!r}.")
        return self.final + (self.initial - self.final) * self.decay ** (step / self.every)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(initial={self.initial}, final={self.final}, "
            f"decay={self.decay}, every={self.every})"
        )
