import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from torchrl_vta.modules.boundary import BoundaryPosterior, BoundaryPrior
from torchrl_vta.modules.boundary_ops import (
    COPY,
    FORCE_LOGIT,
    READ,
    BoundarySample,
    TemperatureSchedule,
    concrete_log_prob,
    force_logits,
    force_sample,
    limit_segments,
    sample_boundary,
    update_segment_counters,
)

E = 5


def _posterior(left=3, right=0, **kwargs):
    return BoundaryPosterior(E, left=left, right=right, proj_dim=4, hidden=8, **kwargs)


def test_constants():
    assert (READ, COPY) == (0, 1)
    assert FORCE_LOGIT == pytest.approx(math.log(999.0))


def test_prior_shapes_and_gradient():
    prior = BoundaryPrior(E, hidden=8, norm="rms")
    logits = prior(torch.randn(2, 3, E))
    assert logits.shape == (2, 3, 2)
    sample_boundary(logits).onehot[..., READ].sum().backward()
    for name, param in prior.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_posterior_shapes(batch):
    posterior = _posterior(left=2, right=1)
    assert not posterior.causal and posterior.context_len == 2
    assert posterior(torch.randn(*batch, 6, E)).shape == (*batch, 6, 2)


@pytest.mark.parametrize("left", [0, 1, 3])
def test_step_reproduces_forward(left):
    posterior = _posterior(left=left, layers=2)
    assert posterior.causal and posterior.context_len == left
    steps = 9
    embed = torch.randn(2, 3, steps, E)
    is_init = torch.zeros(2, 3, steps, dtype=torch.bool)
    is_init[0, 0, 4] = True
    is_init[1, 2, [1, 2, 7]] = True
    is_init[0, 1, 0] = True
    expected = posterior(embed, is_init)
    # TorchRL's InitTracker layout [..., T, 1] gives the same result.
    assert torch.equal(posterior(embed, is_init.unsqueeze(-1)), expected)
    context = posterior.initial_context((2, 3))
    assert context.shape == (2, 3, left, 4)
    outputs = []
    for t in range(steps):
        logits, context = posterior.step(embed[..., t, :], context, is_init[..., t, None])
        assert context.shape == (2, 3, left, 4)
        outputs.append(logits)
    assert torch.allclose(torch.stack(outputs, -2), expected, atol=1e-6, rtol=0)


def test_step_without_is_init_matches_forward():
    posterior = _posterior(left=2)
    embed = torch.randn(4, 6, E)
    context = posterior.initial_context([4])
    outputs = []
    for t in range(6):
        logits, context = posterior.step(embed[:, t], context)
        outputs.append(logits)
    assert torch.allclose(torch.stack(outputs, 1), posterior(embed), atol=1e-6, rtol=0)


@pytest.mark.parametrize("left, right", [(3, 0), (2, 2)])
def test_window_never_crosses_episode_start(left, right):
    posterior = _posterior(left=left, right=right)
    embed = torch.randn(2, 10, E)
    is_init = torch.zeros(2, 10, dtype=torch.bool)
    is_init[:, 5] = True
    base = posterior(embed, is_init)
    before = embed.clone()
    before[:, :5] = torch.randn(2, 5, E)
    assert torch.equal(posterior(before, is_init)[:, 5:], base[:, 5:])
    assert not torch.allclose(posterior(before, is_init)[:, :5], base[:, :5])
    after = embed.clone()
    after[:, 5:] = torch.randn(2, 5, E)
    assert torch.equal(posterior(after, is_init)[:, :5], base[:, :5])
    # An episode start at step k looks exactly like a sequence that begins at k.
    assert torch.allclose(base[:, 5:], posterior(embed[:, 5:]), atol=1e-6, rtol=0)
    if right:
        assert torch.allclose(base[:, :5], posterior(embed[:, :5]), atol=1e-6, rtol=0)


def test_step_resets_context_on_is_init():
    posterior = _posterior(left=2)
    embed_t = torch.randn(3, E)
    stale = torch.randn(3, 2, 4)
    reset = torch.tensor([True, False, True])
    logits, context = posterior.step(embed_t, stale, reset)
    fresh, fresh_context = posterior.step(embed_t, posterior.initial_context([3]))
    assert torch.equal(logits[reset], fresh[reset])
    assert not torch.allclose(logits[1], fresh[1])
    assert torch.equal(context[reset], fresh_context[reset])
    assert torch.equal(context[1, 0], stale[1, 1])


def test_symmetric_window_reach():
    posterior = _posterior(left=2, right=2)
    embed = torch.randn(1, 11, E)
    base = posterior(embed)
    changed = embed.clone()
    changed[:, 6] += 1.0
    diff = (posterior(changed) - base).abs().sum(-1)[0]
    affected = diff > 0
    assert affected[4:9].all()
    assert not affected[:4].any() and not affected[9:].any()


def test_causal_window_reach():
    posterior = _posterior(left=3)
    embed = torch.randn(1, 10, E)
    changed = embed.clone()
    changed[:, 4] += 1.0
    affected = (posterior(changed) - posterior(embed)).abs().sum(-1)[0] > 0
    assert affected[4:8].all()
    assert not affected[:4].any() and not affected[8:].any()


def test_posterior_gradient_reaches_params():
    posterior = _posterior(left=2, right=1)
    sample = sample_boundary(posterior(torch.randn(2, 6, E)), 0.7)
    (sample.onehot[..., READ] * torch.randn(2, 6)).sum().backward()
    for name, param in posterior.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_posterior_errors():
    posterior = _posterior(left=2, right=1)
    with pytest.raises(ValueError, match="causal"):
        posterior.step(torch.randn(3, E), posterior.initial_context([3]))
    causal = _posterior(left=2)
    with pytest.raises(ValueError, match="context"):
        causal.step(torch.randn(3, E), causal.initial_context([4]))
    with pytest.raises(ValueError, match="is_init_t"):
        causal.step(torch.randn(3, E), causal.initial_context([3]), torch.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="is_init"):
        causal(torch.randn(3, 6, E), torch.zeros(3, 5, dtype=bool))
    with pytest.raises(ValueError, match="embed"):
        causal(torch.randn(E))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"left": -1}, "left"),
        ({"right": -2}, "right"),
        ({"proj_dim": 0}, "proj_dim"),
        ({"hidden": 0}, "hidden"),
        ({"layers": -1}, "layers"),
        ({"norm": "batch"}, "norm"),
        ({"act": "relu"}, "act"),
    ],
)
def test_posterior_bad_args(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BoundaryPosterior(E, **kwargs)


def test_prior_bad_args():
    with pytest.raises(ValueError, match="in_features"):
        BoundaryPrior(0)
    with pytest.raises(ValueError, match="norm"):
        BoundaryPrior(E, norm="batch")
    with pytest.raises(ValueError, match="embed_dim"):
        BoundaryPosterior(0)


@pytest.mark.parametrize("temperature", [0.1, 1.0, torch.tensor(0.5)])
def test_sample_is_exact_onehot(temperature):
    logits = (3 * torch.randn(64, 2)).requires_grad_()
    sample = sample_boundary(logits, temperature)
    assert isinstance(sample, BoundarySample)
    assert ((sample.onehot == 0) | (sample.onehot == 1)).all()
    assert (sample.onehot.sum(-1) == 1).all()
    assert torch.equal(sample.onehot.argmax(-1), sample.log_sample.argmax(-1))
    assert torch.allclose(sample.log_sample.exp().sum(-1), torch.ones(64))
    (sample.onehot[:, READ] * torch.randn(64)).sum().backward()
    assert (logits.grad != 0).any()


def test_sample_frequency_follows_softmax():
    logits = torch.tensor([0.7, -0.4]).expand(20000, 2)
    read = sample_boundary(logits, 0.3).onehot[:, READ].mean()
    assert read.item() == pytest.approx(torch.softmax(logits[0], -1)[READ].item(), abs=0.02)


def test_deterministic_sample_is_argmax():
    logits = torch.randn(2, 7, 2)
    first = sample_boundary(logits, 0.5, deterministic=True)
    second = sample_boundary(logits, 0.5, deterministic=True)
    assert torch.equal(first.onehot, second.onehot)
    assert torch.equal(first.onehot.argmax(-1), logits.argmax(-1))
    assert torch.allclose(first.log_sample, torch.log_softmax(logits / 0.5, -1))


def test_tensor_temperature_per_row():
    logits = torch.randn(3, 2)
    temperature = torch.tensor([[0.1], [1.0], [3.0]])
    sample = sample_boundary(logits, temperature, deterministic=True)
    assert torch.allclose(sample.log_sample, torch.log_softmax(logits / temperature, -1))


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_sample_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        sample_boundary(torch.zeros(2), temperature)
    with pytest.raises(ValueError, match="temperature"):
        concrete_log_prob(torch.zeros(2), torch.zeros(2), temperature)


def test_limit_segments_precedence():
    seg_len = torch.tensor([1, 3, 3, 1])
    seg_num = torch.tensor([1, 1, 4, 4])
    read, copy = limit_segments(seg_len, seg_num, max_seg_len=3, max_seg_num=4)
    assert read.dtype == copy.dtype == torch.bool
    assert read.tolist() == [False, True, True, False]
    assert copy.tolist() == [False, False, False, True]
    read, copy = limit_segments(seg_len, seg_num, max_seg_len=None, max_seg_num=4)
    assert read.tolist() == [False] * 4 and copy.tolist() == [False, False, True, True]
    read, copy = limit_segments(seg_len.float(), seg_num.float(), max_seg_len=3, max_seg_num=None)
    assert read.tolist() == [False, True, True, False] and not copy.any()
    read, copy = limit_segments(seg_len, seg_num, max_seg_len=None, max_seg_num=None)
    assert read.shape == copy.shape == (4,) and not (read.any() or copy.any())


@pytest.mark.parametrize(
    "name, value", [("max_seg_len", 0), ("max_seg_num", -3), ("max_seg_len", 2.5)]
)
def test_limit_segments_bad_args(name, value):
    limits = {"max_seg_len": None, "max_seg_num": None, name: value}
    with pytest.raises(ValueError, match=name):
        limit_segments(torch.ones(2), torch.ones(2), **limits)


def test_force_logits():
    logits = torch.randn(2, 3, 2)
    force_read = torch.tensor([[True, False, False], [False, False, True]])
    force_copy = torch.tensor([[False, True, False], [False, False, False]])
    out = force_logits(logits, force_read, force_copy)
    assert out[0, 0].tolist() == pytest.approx([FORCE_LOGIT, -FORCE_LOGIT])
    assert out[1, 2].tolist() == pytest.approx([FORCE_LOGIT, -FORCE_LOGIT])
    assert out[0, 1].tolist() == pytest.approx([-FORCE_LOGIT, FORCE_LOGIT])
    free = ~(force_read | force_copy)
    assert torch.equal(out[free], logits[free])
    assert torch.softmax(out[0, 0], -1)[READ].item() == pytest.approx(999**2 / (999**2 + 1))


def test_force_sample():
    logits = torch.zeros(4, 2, requires_grad=True)
    sample = sample_boundary(logits)
    force_read = torch.tensor([True, False, False, False])
    force_copy = torch.tensor([False, True, False, False])
    forced = force_sample(sample, force_read, force_copy)
    assert forced.onehot[0].tolist() == [1.0, 0.0]
    assert forced.onehot[1].tolist() == [0.0, 1.0]
    assert torch.equal(forced.onehot[2:], sample.onehot[2:])
    assert forced.log_sample is sample.log_sample
    (forced.onehot[:, READ] * torch.tensor([1.0, 1.0, 1.0, 1.0])).sum().backward()
    assert (logits.grad[:2] == 0).all() and (logits.grad[2:] != 0).any()


@pytest.mark.parametrize("dtype", [torch.long, torch.float32])
def test_update_segment_counters(dtype):
    seg_len = torch.tensor([[3, 3], [1, 7]], dtype=dtype)
    seg_num = torch.tensor([[2, 2], [5, 1]], dtype=dtype)
    as_bool = torch.tensor([[True, False], [False, True]])
    for read in (as_bool, as_bool.float()):
        new_len, new_num = update_segment_counters(read, seg_len, seg_num)
        assert new_len.dtype == new_num.dtype == dtype
        assert new_len.tolist() == [[1, 4], [2, 1]]
        assert new_num.tolist() == [[3, 2], [5, 2]]


def test_counters_and_limits_roll_out():
    seg_len, seg_num = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    reads = []
    for t in range(9):
        force_read, _ = limit_segments(seg_len, seg_num, max_seg_len=3, max_seg_num=None)
        read = force_read | (t == 0)
        reads.append(int(read))
        seg_len, seg_num = update_segment_counters(read, seg_len, seg_num)
    assert reads == [1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert seg_num.item() == 3 and seg_len.item() == 3


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0, 2.5])
def test_concrete_log_prob_matches_torch(classes, temperature):
    logits = 2 * torch.randn(6, 4, classes)
    log_sample = sample_boundary(2 * torch.randn(6, 4, classes), temperature).log_sample
    expected = ExpRelaxedCategorical(torch.tensor(temperature), logits=logits).log_prob(log_sample)
    assert torch.allclose(concrete_log_prob(log_sample, logits, temperature), expected, atol=1e-4)
    as_tensor = concrete_log_prob(log_sample, logits, torch.tensor(temperature))
    assert torch.allclose(as_tensor, expected, atol=1e-4)


def test_concrete_log_prob_per_row_temperature():
    logits = torch.randn(3, 2)
    temperature = torch.tensor([[0.2], [1.0], [4.0]])
    log_sample = sample_boundary(logits, temperature).log_sample
    result = concrete_log_prob(log_sample, logits, temperature)
    for row in range(3):
        reference = ExpRelaxedCategorical(temperature[row, 0], logits=logits[row])
        expected = reference.log_prob(log_sample[row])
        assert result[row].item() == pytest.approx(expected.item(), abs=1e-4)


def test_concrete_log_prob_is_a_density():
    # With two classes the density is that of d = y_0 - y_1 = (logit gap + logistic noise) / tau:
    # it integrates to 1 over d, and P(d > 0) = P(READ) = softmax(logits)[READ].
    logits = torch.tensor([0.8, -0.3], dtype=torch.double)
    d = torch.linspace(-100, 100, 200001, dtype=torch.double)
    log_sample = torch.stack([-F.softplus(-d), -F.softplus(d)], -1)
    for temperature in (0.4, 1.0, 2.0):
        density = concrete_log_prob(log_sample, logits, temperature).exp()
        assert torch.trapezoid(density, d).item() == pytest.approx(1.0, abs=1e-6)
        read = torch.trapezoid(density * (d > 0), d).item()
        assert read == pytest.approx(torch.softmax(logits, -1)[READ].item(), abs=1e-3)


def test_temperature_schedule():
    schedule = TemperatureSchedule()
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(100) == pytest.approx(0.1 + 0.9 * 0.999)
    assert schedule(10**8) == pytest.approx(0.1)
    values = [schedule(i) for i in range(0, 100_000, 5000)]
    assert all(a > b for a, b in zip(values, values[1:]))
    custom = TemperatureSchedule(initial=2.0, final=0.5, decay=0.5, every=10)
    assert custom(20) == pytest.approx(0.5 + 1.5 * 0.25)
    assert TemperatureSchedule(decay=1.0)(10**6) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"initial": 0.0}, "initial"),
        ({"final": -0.1}, "final"),
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.5}, "decay"),
        ({"every": 0}, "every"),
    ],
)
def test_temperature_schedule_bad_args(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TemperatureSchedule(**kwargs)


def test_temperature_schedule_negative_step():
    with pytest.raises(ValueError, match="step"):
        TemperatureSchedule()(-1)


def test_shape_mismatches_raise():
    # A TorchRL-style [B, 1] counter against [B] decisions must not broadcast to [B, B].
    with pytest.raises(ValueError, match="seg_num"):
        limit_segments(torch.ones(3), torch.ones(3, 1), max_seg_len=2, max_seg_num=2)
    with pytest.raises(ValueError, match="read"):
        update_segment_counters(torch.ones(3), torch.ones(3, 1), torch.ones(3, 1))
    with pytest.raises(ValueError, match="force_read"):
        force_logits(torch.zeros(3, 2), torch.zeros(3, 1, dtype=bool), torch.zeros(3, dtype=bool))
    sample = sample_boundary(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="force_copy"):
        force_sample(sample, torch.zeros(3, dtype=bool), torch.zeros(1, dtype=bool))
