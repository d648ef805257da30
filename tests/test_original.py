"""The original VTA model (torchrl_vta.original) and its loss."""

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from torchrl_vta.envs.datasets import generate_dataset
from torchrl_vta.modules.boundary_ops import COPY, FORCE_LOGIT, READ
from torchrl_vta.original import (
    ConvBoundaryPosterior,
    OriginalVTA,
    OriginalVTAModule,
    VTADecoder,
    VTAEncoder,
)
from torchrl_vta.original import OriginalVTALoss

SIZES = dict(belief_size=16, feat_size=8, state_size=3)


def _model(**kwargs) -> OriginalVTA:
    return OriginalVTA(**{**SIZES, **kwargs})


def _obs(batch: int = 3, steps: int = 12) -> torch.Tensor:
    return torch.rand(batch, steps, 3, 32, 32)  # model space: floats in [0, 1]


class _FixedLogits(nn.Module):
    """Stands in for the boundary posterior: the same logits for every sequence."""

    def __init__(self, read_steps: list[int], steps: int):
        super().__init__()
        logits = torch.tensor([-5.0, 5.0]).repeat(steps, 1)
        logits[read_steps] = torch.tensor([5.0, -5.0])
        self.register_buffer("logits", logits)

    def forward(self, embed: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*embed.shape[:-1], 2)


def test_shapes_and_masks():
    model = _model()
    out = model(_obs(3, 12), init_size=2)
    assert out.reconstruction.shape == (3, 12, 3, 32, 32)
    assert out.belief.shape == (3, 12, 16) and out.abs_belief.shape == (3, 12, 16)
    assert out.state.shape == (3, 12, 3) and out.abs_state.shape == (3, 12, 3)
    for stats in (out.prior_stats, out.posterior_stats, out.abs_prior_stats,
                  out.abs_posterior_stats):
        assert stats.shape == (3, 12, 6)
    for logits in (out.boundary_logits, out.boundary_log_sample, out.boundary_prior_logits):
        assert logits.shape == (3, 12, 2)
    assert out.modelled[0, :, 0].tolist() == [False] * 2 + [True] * 8 + [False] * 2
    # The prior of modelled step t scores the boundary of step t + 1.
    assert out.boundary_scored[0, :, 0].tolist() == [False] * 3 + [True] * 8 + [False]
    # Several leading batch dimensions fold and unfold.
    assert model(_obs(6, 7).view(2, 3, 7, 3, 32, 32), init_size=1).boundary.shape == (2, 3, 7, 1)


def test_context_and_first_modelled_step_are_read():
    out = _model()(_obs(4, 12), init_size=3)
    read = out.boundary[..., 0]
    assert read[:, :4].eq(1).all() and read[:, -3:].eq(1).all()
    assert out.boundary_forced[:, :4].all() and out.boundary_forced[:, -3:].all()
    assert not out.boundary_forced[:, 4:9].any()


def test_copy_steps_copy_abstract_state_bit_for_bit():
    torch.manual_seed(1)
    model = _model()
    out = model(_obs(8, 16), init_size=2)
    read = out.boundary[..., 0]
    copies = 0
    for t in range(3, 14):
        for b in range(8):
            if read[b, t] == 0:
                copies += 1
                assert torch.equal(out.abs_state[b, t], out.abs_state[b, t - 1])
                assert torch.equal(out.abs_belief[b, t], out.abs_belief[b, t - 1])
            else:
                assert not torch.equal(out.abs_state[b, t], out.abs_state[b, t - 1])
    assert copies > 5


def test_boundary_straight_through_gradient_reaches_posterior():
    model = _model()
    out = model(_obs(2, 10), init_size=2)
    out.reconstruction.square().sum().backward()
    grad = model.boundary_posterior.net[-1].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_prior_logits_come_from_previous_feature():
    torch.manual_seed(2)
    model = _model().eval()
    out = model(_obs(2, 10), init_size=2)
    feature = model.obs_feature(torch.cat([out.belief, out.state], -1))
    expected = model.boundary_prior(feature)
    assert torch.allclose(out.boundary_prior_logits[:, 3:9], expected[:, 2:8], atol=1e-6)


@pytest.mark.parametrize("max_seg_len, max_seg_num, bias", [(3, 20, 8.0), (20, 2, -8.0), (4, 2, -8.0)])
def test_prior_limits_in_training(max_seg_len, max_seg_num, bias):
    torch.manual_seed(3)
    model = _model(max_seg_len=max_seg_len, max_seg_num=max_seg_num)
    # Bias the posterior towards COPY (bias > 0) or READ (bias < 0) so limits bite.
    with torch.no_grad():
        model.boundary_posterior.net[-1].bias.copy_(torch.tensor([-bias, bias]))
    out = model(_obs(6, 24), init_size=2)
    read = out.boundary[..., 0]
    forced_read = forced_copy = 0
    for b in range(6):
        seg_len = seg_num = 0
        for t in range(2, 22):
            if read[b, t]:
                seg_len, seg_num = 1, seg_num + 1
            else:
                seg_len += 1
            prior = out.boundary_prior_logits[b, t + 1].detach().tolist()
            if seg_len >= max_seg_len:
                forced_read += 1
                assert prior[READ] == pytest.approx(FORCE_LOGIT) and prior[COPY] == pytest.approx(-FORCE_LOGIT)
            elif seg_num >= max_seg_num:
                forced_copy += 1
                assert prior[COPY] == pytest.approx(FORCE_LOGIT)
            else:
                assert max(map(abs, prior)) < FORCE_LOGIT - 1e-3
    assert forced_read + forced_copy > 0
    # Eval mode never forces the prior.
    model.eval()
    assert model(_obs(6, 24), init_size=2).boundary_prior_logits.abs().max() < FORCE_LOGIT - 1e-3


@pytest.mark.parametrize("bias", [8.0, -8.0])
def test_limits_hold_in_full_generation_and_posterior_forcing(bias):
    model = _model(max_seg_len=4, max_seg_num=3).eval()
    with torch.no_grad():
        model.boundary_prior.net[-1].bias.copy_(torch.tensor([-bias, bias]))
        model.boundary_posterior.net[-1].bias.copy_(torch.tensor([-bias, bias]))
    for read in (
        model.generate(_obs(3, 4), 20, mode="full").boundary[..., 0],
        model(_obs(3, 24), init_size=2, limit_posterior=True).boundary[:, 2:22, 0],
    ):
        assert read[:, 0].eq(1).all()
        for row in read.tolist():
            starts = [t for t, r in enumerate(row) if r] + [len(row)]
            assert max(b - a for a, b in zip(starts, starts[1:])) <= 4
            if bias < 0:  # READ-hungry: only the length limit may add segments past the cap
                assert all(b - a == 1 for a, b in zip(starts[:2], starts[1:3]))
                assert all(b - a == 4 for a, b in zip(starts[3:-2], starts[4:-1]))


def test_backward_rnn_resets_at_segment_end():
    torch.manual_seed(4)
    model = _model().eval()  # eval: BatchNorm running stats, so frames do not interact
    start, steps = 2, 14
    model.boundary_posterior = _FixedLogits([start, start + 4, start + 8], steps)
    obs = _obs(2, steps)
    changed = obs.clone()
    changed[:, start + 4] = -changed[:, start + 4]  # the first frame after the segment end
    before = model(obs, init_size=start).abs_posterior_stats
    after = model(changed, init_size=start).abs_posterior_stats
    # q(z_t) = N([a_{t-1}, b_t]): the segment [start, start + 3] must not see frame start + 4.
    assert torch.equal(before[:, start : start + 4], after[:, start : start + 4])
    assert not torch.allclose(before[:, start + 4], after[:, start + 4])
    # Inside a segment the backward RNN carries the future of that segment back.
    changed = obs.clone()
    changed[:, start + 3] = -changed[:, start + 3]
    after = model(changed, init_size=start).abs_posterior_stats
    assert not torch.allclose(before[:, start], after[:, start])


def test_observation_rnn_resets_at_segment_start():
    model = _model().eval()
    start, steps = 2, 12
    reads = [start, start + 4, start + 6]
    model.boundary_posterior = _FixedLogits(reads, steps)
    hidden_in = []
    model.post_fwd_obs.register_forward_hook(lambda m, args, out: hidden_in.append(args[1]))
    model(_obs(2, steps), init_size=start)
    # o_t = GRU_o(e_t, COPY_t * o_{t-1}): called once per modelled step, in time order.
    assert len(hidden_in) == steps - 2 * start
    for t, hidden in zip(range(start, steps - start), hidden_in):
        assert hidden.eq(0).all() == (t in reads)


@pytest.mark.parametrize("mode", ["full", "jumpy"])
def test_generation_shapes_and_range(mode):
    model = _model().eval()
    out = model.generate(_obs(2, 3), 5, mode=mode)
    assert out.frames.shape == (2, 5, 3, 32, 32) and out.boundary.shape == (2, 5, 1)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    if mode == "jumpy":
        assert out.boundary.eq(1).all()
    else:
        assert out.boundary[:, 0].eq(1).all()


def test_eval_mode_is_deterministic():
    torch.manual_seed(6)
    model = _model()
    obs = _obs(2, 12)
    model(obs, init_size=2)  # one training pass moves the BatchNorm statistics
    model.eval()
    first, second = model(obs, init_size=2), model(obs, init_size=2)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    for mode in ("full", "jumpy"):
        assert torch.equal(model.generate(obs[:, :3], 6, mode=mode).frames,
                           model.generate(obs[:, :3], 6, mode=mode).frames)
    model.train()
    assert not torch.equal(model(obs, init_size=2).boundary_log_sample, first.boundary_log_sample)


def test_module_and_loss_keys():
    module = OriginalVTAModule(_model(), init_size=2, out_keys={"boundary": "read"})
    loss = OriginalVTALoss(module)
    loss.set_keys(boundary="read")
    pixels = torch.randint(0, 256, (2, 9, 3, 32, 32), dtype=torch.uint8)
    td = TensorDict(pixels=pixels, batch_size=[2, 9])
    losses = loss(td)
    assert "read" in td.keys() and td["pixels_scaled"].dtype == torch.float32
    assert set(losses.keys()) >= {"loss_reco", "loss_kl_abs", "loss_kl_obs", "loss_boundary",
                                  "kl_abs", "kl_boundary", "boundary_rate", "temperature"}
    total = OriginalVTALoss.total(losses)
    assert torch.isfinite(total)
    total.backward()


def test_abstract_kl_counts_read_steps_only():
    module = OriginalVTAModule(_model(), init_size=2)
    loss = OriginalVTALoss(module)
    td = module(TensorDict(pixels=torch.randint(0, 256, (4, 10, 3, 32, 32), dtype=torch.uint8),
                           batch_size=[4, 10]))
    base = loss.loss_from_outputs(td)["loss_kl_abs"]
    # Changing the abstract posterior on COPY steps only must not change the term.
    copy = (td["boundary"][..., 0] == 0) & td["modelled"][..., 0]
    assert copy.any()
    td["abs_posterior_stats"][copy] = td["abs_posterior_stats"][copy] + 3.0
    assert torch.equal(loss.loss_from_outputs(td)["loss_kl_abs"], base)


def test_loss_halves_on_a_fixed_batch():
    torch.manual_seed(0)
    data = generate_dataset("balls", 4, 10, seed=0, audio_dim=0)
    module = OriginalVTAModule(_model(belief_size=32, feat_size=16, state_size=4), init_size=2)
    loss = OriginalVTALoss(module)
    optimizer = torch.optim.Adam(loss.parameters(), lr=5e-3, amsgrad=True)
    constant = loss.nll_constant(3 * 32 * 32)
    values = []
    for _ in range(60):
        losses = loss(TensorDict(pixels=data["pixels"], batch_size=[4, 10]))
        total = OriginalVTALoss.total(losses)
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
        optimizer.step()
        values.append(total.item() - constant)
    assert sum(values[-5:]) / 5 < 0.5 * values[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="state_size"):
        OriginalVTA(state_size=0)
    with pytest.raises(ValueError, match="max_seg_len"):
        OriginalVTA(max_seg_len=-1)
    with pytest.raises(ValueError, match="32, 32"):
        _model()(torch.zeros(2, 10, 3, 64, 64))
    with pytest.raises(ValueError, match="init_size"):
        _model()(_obs(2, 10), init_size=5)
    with pytest.raises(ValueError, match="mode"):
        _model().generate(_obs(1, 2), 3, mode="sideways")
    with pytest.raises(ValueError, match="obs_std"):
        OriginalVTALoss(OriginalVTAModule(_model()), obs_std=0)
    with pytest.raises(ValueError, match="out_keys"):
        OriginalVTAModule(_model(), out_keys={"nope": "x"})


def test_building_blocks():
    assert VTAEncoder(features=4)(torch.zeros(5, 3, 32, 32)).shape == (5, 4)
    assert VTADecoder(6, features=4)(torch.zeros(5, 6)).shape == (5, 3, 32, 32)
    posterior = ConvBoundaryPosterior(4, layers=3).eval()
    embed = torch.randn(1, 20, 4)
    changed = embed.clone()
    changed[:, 10] += 5.0
    delta = (posterior(embed) - posterior(changed)).abs().sum(-1)[0]
    # A +-4 frame window: frame 10 affects steps 6..14 and nothing else.
    assert delta[6:15].gt(0).all() and delta[:6].eq(0).all() and delta[15:].eq(0).all()
