"""Segment boundaries as values: a boundary is a 2-class one-hot per step, index ``READ``
(0) starts a new segment at this step, index ``COPY`` (1) continues the current one. This
module holds Gumbel-softmax straight-through sampling, segment-limit forcing, the segment
counters, the READ/COPY state mix, the Concrete (relaxed one-hot) log-density of the
original VTA boundary KL, and the temperature schedule.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from torchrl_vta.modules.latent import _check_int

__all__ = [
    "COPY",
    "FORCE_LOGIT",
    "READ",
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
