"""Behaviour of the hierarchical RSSM: boundaries, limits, COPY, train/act consistency."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from torchrl_vta.modules.boundary_ops import READ
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.rssm_state import RSSMState
from torchrl_vta.modules.rssm_wrappers import (
    HierarchicalRSSMRollout,
    HierarchicalStateEstimator,
    PreviousActionWriter,
)

EMBED, ACTION = 12, 3


def tiny_rssm(**kwargs):
    options = dict(
        belief_dim=16,
        hidden=16,
        stoch_dim=4,
        groups=3,
        classes=4,
        boundary_proj_dim=4,
        boundary_hidden=8,
    )
    options.update(kwargs)
    return HierarchicalRSSM(ACTION, EMBED, **options)


def sequence(batch=(4,), steps=12, init_at=(5,)):
    embed = torch.randn(*batch, steps, EMBED)
    action = torch.randn(*batch, steps, ACTION)
    is_init = torch.zeros(*batch, steps, dtype=torch.bool)
    for t in init_at:
        is_init[..., t] = True
    return embed, action, is_init


def segments(read_row):
    """Lengths of the segments of one boundary row (READ starts a segment)."""
    starts = [t for t, r in enumerate(read_row) if r]
    ends = starts[1:] + [len(read_row)]
    return [end - start for start, end in zip(starts, ends)]


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_first_and_is_init_steps_are_read(latent):
    rssm = tiny_rssm(latent=latent)
    # Bias the posterior detector to COPY so READs can only come from forcing.
    with torch.no_grad():
        rssm.boundary_posterior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
    embed, action, is_init = sequence(init_at=(4, 9))
    out, _ = rssm.observe(embed, action, is_init)
    read = out["boundary"].squeeze(-1)
    assert read.shape == (4, 12)
    assert (read[:, 0] == 1).all()
    assert (read[:, 4] == 1).all() and (read[:, 9] == 1).all()
    others = [t for t in range(12) if t not in (0, 4, 9)]
    assert (read[:, others] == 0).all()
    assert out["boundary_forced"][:, [0, 4, 9]].all()
    assert not out["boundary_forced"][:, others].any()


def test_segment_counters_restart_at_episode_start():
    rssm = tiny_rssm()
    embed, action, is_init = sequence(init_at=(6,))
    out, _ = rssm.observe(embed, action, is_init)
    assert (out["seg_num"][:, 0] == 1).all() and (out["seg_len"][:, 0] == 1).all()
    assert (out["seg_num"][:, 6] == 1).all() and (out["seg_len"][:, 6] == 1).all()
    read = out["boundary"].squeeze(-1)
    expected = 1 + read[:, 1:6].sum(-1)
    assert torch.equal(out["seg_num"][:, 5, 0], expected)


@pytest.mark.parametrize("max_seg_len,max_seg_num", [(3, 2), (4, 3), (2, 100)])
def test_limits_hold_on_posterior_and_prior(max_seg_len, max_seg_num):
    torch.manual_seed(1)
    rssm = tiny_rssm(max_seg_len=max_seg_len, max_seg_num=max_seg_num, limit_mode="both")
    embed, action, _ = sequence(batch=(16,), steps=20, init_at=())
    out, last = rssm.observe(embed, action)
    imagined, _ = rssm.imagine(last, torch.randn(16, 20, ACTION))
    for row in out["boundary"].squeeze(-1).tolist():
        lengths = segments(row)
        assert max(lengths) <= max_seg_len, lengths
        # More segments than the budget only when length forced a READ.
        for index in range(max_seg_num, len(lengths)):
            assert lengths[index - 1] == max_seg_len
    # Imagination is a new sequence for the limits: its start state opens segment 1.
    for result, start_len in ((out, torch.zeros_like(last.seg_len)), (imagined, torch.ones_like(last.seg_len))):
        assert (result["seg_len"] <= max_seg_len).all()
        over_budget = result["seg_num"] > max_seg_num
        read = result["boundary"].bool()
        previous_len = torch.cat([start_len[:, None], result["seg_len"][:, :-1]], 1)
        assert (~over_budget | ~read | (previous_len == max_seg_len)).all()
    assert (imagined["seg_num"][:, 0] <= 2).all()


def test_imagination_does_not_open_with_a_length_forced_read():
    """A filtered segment already at ``max_seg_len`` must not force the first imagined
    step to READ: only the learned prior (here: always COPY) decides, until the
    imagined segment (the start state and the imagined steps) reaches the limit."""
    rssm = tiny_rssm(max_seg_len=4, max_seg_num=100, limit_mode="prior")
    with torch.no_grad():
        rssm.boundary_posterior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
        rssm.boundary_prior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
    embed, action, _ = sequence(steps=10, init_at=())
    _, last = rssm.observe(embed, action)
    assert (last.seg_len >= 4).all()  # the posterior ran one long segment
    imagined, _ = rssm.imagine(last, torch.randn(4, 6, ACTION))
    reads = imagined["boundary"].squeeze(-1)
    assert reads[:, :3].sum() == 0 and not imagined["boundary_forced"][:, :3].any()
    assert (reads[:, 3] == 1).all() and imagined["boundary_forced"][:, 3].all()


def test_prior_limit_mode_leaves_posterior_free_but_limits_imagination():
    rssm = tiny_rssm(max_seg_len=2, max_seg_num=2, limit_mode="prior")
    with torch.no_grad():
        rssm.boundary_posterior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
        rssm.boundary_prior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
    embed, action, _ = sequence(steps=8, init_at=())
    out, last = rssm.observe(embed, action)
    assert out["boundary"][:, 1:].sum() == 0  # posterior: no forcing, all COPY
    # ...but the prior logits it is scored against are forced at the limit.
    assert (out["boundary_prior_logits"][:, 2:, READ] > 6).all()
    imagined, _ = rssm.imagine(last, torch.randn(4, 6, ACTION))
    for row in imagined["boundary"].squeeze(-1).tolist():
        assert max(segments([1.0] + row)) <= 2


def test_forcing_off_forces_nothing():
    rssm = tiny_rssm(max_seg_len=2, max_seg_num=2, limit_mode="off")
    with torch.no_grad():
        rssm.boundary_prior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
        rssm.boundary_posterior.net[-1].bias.copy_(torch.tensor([-20.0, 20.0]))
    embed, action, _ = sequence(steps=8, init_at=())
    out, last = rssm.observe(embed, action)
    assert out["boundary"][:, 1:].sum() == 0
    assert not out["boundary_forced"][:, 1:].any()
    assert (out["boundary_prior_logits"][:, 1:, READ] < -6).all()
    imagined, _ = rssm.imagine(last, torch.randn(4, 6, ACTION))
    assert imagined["boundary"].sum() == 0
    assert not imagined["boundary_forced"].any()


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_copy_steps_keep_abstract_state_bit_identical(latent):
    rssm = tiny_rssm(latent=latent)
    embed, action, is_init = sequence(batch=(8,), steps=16)
    out, _ = rssm.observe(embed, action, is_init)
    read = out["boundary"].squeeze(-1)
    copies = (read[:, 1:] == 0).nonzero().tolist()
    reads = (read[:, 1:] == 1).nonzero().tolist()
    assert copies and reads, "the random detector should produce both READ and COPY"
    for key in ("abs_state", "abs_belief"):
        value = out[key]
        for b, t in copies:
            assert torch.equal(value[b, t + 1], value[b, t])
        assert any(not torch.equal(value[b, t + 1], value[b, t]) for b, t in reads)


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_state_estimator_reproduces_rollout(levels, training):
    rssm = tiny_rssm(levels=levels)
    rssm.train(training)
    embed, action, is_init = sequence(batch=(3,), steps=10, init_at=(0, 6))
    torch.manual_seed(7)
    out, last = rssm.observe(embed, action, is_init)

    estimator = HierarchicalStateEstimator(rssm)
    td = estimator.initial_tensordict([3])
    states = []
    torch.manual_seed(7)
    for t in range(10):
        td["embed"] = embed[:, t]
        td["prev_action"] = action[:, t]
        td["is_init"] = is_init[:, t, None]
        estimator(td)
        states.append(td.select("state", "belief", "abs_state", "abs_belief", "seg_len").clone())
    stepped = torch.stack(states, 1)
    for key in ("state", "belief", "abs_state", "abs_belief", "seg_len"):
        torch.testing.assert_close(stepped[key], out[key], rtol=0, atol=1e-6)
    # The final context also matches, so a filter can continue from observe().
    torch.testing.assert_close(td["boundary_context"], last.boundary_context, rtol=0, atol=1e-6)


def test_gradients_flow_through_boundaries_into_both_detectors():
    rssm = tiny_rssm()
    embed, action, _ = sequence(steps=10, init_at=())
    out, last = rssm.observe(embed, action)
    target = torch.randn_like(out["abs_state"])
    (out["abs_state"] * target).sum().backward()
    posterior_grad = sum(p.grad.abs().sum() for p in rssm.boundary_posterior.parameters())
    assert posterior_grad > 0

    rssm.zero_grad()
    imagined, _ = rssm.imagine(
        RSSMState(*(x.detach() for x in last)), torch.randn(4, 8, ACTION)
    )
    (imagined["abs_state"] * torch.randn_like(imagined["abs_state"])).sum().backward()
    prior_grad = sum(p.grad.abs().sum() for p in rssm.boundary_prior.parameters())
    assert prior_grad > 0


@pytest.mark.parametrize("latent,abs_latent", [("gaussian", "categorical"), ("categorical", "gaussian")])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
def test_shapes_for_latent_kinds_and_batch_shapes(latent, abs_latent, batch):
    rssm = tiny_rssm(latent=latent, abs_latent=abs_latent)
    embed, action, is_init = sequence(batch=batch, steps=5, init_at=(2,))
    out, last = rssm.observe(embed, action, is_init)
    assert out["state"].shape == (*batch, 5, rssm.state_dim)
    assert out["abs_state"].shape == (*batch, 5, rssm.abs_state_dim)
    assert out["boundary_logits"].shape == (*batch, 5, 2)
    assert rssm.feature(last).shape == (*batch, rssm.feature_dim)
    stoch = 12 if latent == "categorical" else 4
    assert rssm.state_dim == stoch


def test_flat_rssm_has_no_abstract_level():
    rssm = tiny_rssm(levels=1)
    assert not hasattr(rssm, "boundary_prior")
    embed, action, is_init = sequence()
    out, last = rssm.observe(embed, action, is_init)
    assert "boundary" not in out and "abs_prior_stats" not in out
    assert rssm.feature(last).shape == (4, rssm.obs_feature_dim)
    # Episode starts still reset the flat state: the step after a reset equals
    # a fresh sequence started there.
    rssm.eval()
    full, _ = rssm.observe(embed, action, is_init)
    tail, _ = rssm.observe(embed[:, 5:], action[:, 5:], is_init[:, 5:])
    torch.testing.assert_close(full["belief"][:, 5:], tail["belief"])


def test_rollout_module_with_renamed_keys():
    rssm = tiny_rssm()
    rollout = HierarchicalRSSMRollout(
        rssm,
        embed_key=("next", "obs_embedding"),
        action_key="act",
        is_init_key="first",
        out_keys={"state": ("next", "obs_state"), "boundary": "read"},
    )
    embed, action, is_init = sequence()
    td = TensorDict(
        {"act": action, "first": is_init[..., None], "next": {"obs_embedding": embed}}, [4, 12]
    )
    rollout(td)
    assert td["next", "obs_state"].shape == (4, 12, rssm.state_dim)
    assert td["read"].shape == (4, 12, 1)
    assert ("next", "state") not in td.keys(True)
    assert ("next", "obs_state") in rollout.out_keys
    with pytest.raises(ValueError, match="Unknown key name 'stat'"):
        HierarchicalRSSMRollout(rssm, out_keys={"stat": "x"})


def test_state_dict_round_trip_and_eval_determinism():
    rssm = tiny_rssm(latent="categorical").eval()
    clone = tiny_rssm(latent="categorical").eval()
    clone.load_state_dict(rssm.state_dict())
    embed, action, is_init = sequence()
    first, _ = rssm.observe(embed, action, is_init)
    again, _ = rssm.observe(embed, action, is_init)
    copied, _ = clone.observe(embed, action, is_init)
    for key in first:
        assert torch.equal(first[key], again[key]), key
        assert torch.equal(first[key], copied[key]), key


@pytest.mark.parametrize("mode", ["full", "jumpy"])
def test_generation_modes(mode):
    rssm = tiny_rssm(max_seg_len=3, max_seg_num=100)
    embed, action, _ = sequence(steps=6, init_at=())
    out = rssm.generate(embed, action, torch.randn(4, 7, ACTION), mode=mode)
    assert out["obs_feature"].shape == (4, 7, rssm.obs_feature_dim)
    read = out["boundary"].squeeze(-1)
    if mode == "jumpy":
        assert (read == 1).all()
        # each jumpy step opens a new abstract segment
        assert not torch.equal(out["abs_state"][:, 0], out["abs_state"][:, 1])
    else:
        assert (out["seg_len"] <= 3).all()
        assert ((out["seg_len"].squeeze(-1) == 1) == (read == 1)).all()
    with pytest.raises(ValueError, match="mode"):
        rssm.generate(embed, action, torch.randn(4, 7, ACTION), mode="skip")


def test_bad_arguments_raise():
    for levels in (0, 2.0, True):
        with pytest.raises(ValueError, match="levels"):
            tiny_rssm(levels=levels)
    with pytest.raises(ValueError, match="limit_mode"):
        tiny_rssm(limit_mode="sometimes")
    with pytest.raises(ValueError, match="max_seg_len"):
        tiny_rssm(max_seg_len=0)
    with pytest.raises(ValueError, match="causal"):
        HierarchicalStateEstimator(tiny_rssm(boundary_right=2))
    rssm = tiny_rssm()
    with pytest.raises(ValueError, match="action batch/time shape"):
        rssm.observe(torch.randn(2, 5, EMBED), torch.randn(2, 4, ACTION))
    with pytest.raises(ValueError, match="levels >= 2"):
        tiny_rssm(levels=1).jumpy_step(tiny_rssm(levels=1).initial_state((2,)))
    with pytest.raises(ValueError, match="level=3"):
        tiny_rssm(levels=3).jumpy_step(tiny_rssm(levels=3).initial_state((2,)), level=3)


def test_acting_policy_runs_in_a_torchrl_env_with_the_primer():
    from torchrl.envs import GymEnv, InitTracker, TransformedEnv

    # Pendulum: 3-d observation, 1-d action.
    rssm = HierarchicalRSSM(1, EMBED, belief_dim=8, hidden=8, stoch_dim=4,
                            boundary_proj_dim=4, boundary_hidden=8)
    estimator = HierarchicalStateEstimator(rssm)
    env = TransformedEnv(GymEnv("Pendulum-v1"), InitTracker())
    env.append_transform(estimator.make_primer())
    policy = TensorDictSequential(
        TensorDictModule(nn.Linear(3, EMBED), ["observation"], ["embed"]),
        estimator,
        TensorDictModule(
            nn.Sequential(nn.Linear(rssm.belief_dim, 1), nn.Tanh()), ["belief"], ["action"]
        ),
        PreviousActionWriter(),
    )
    with torch.no_grad():
        rollout = env.rollout(6, policy)
    assert rollout["boundary"][0].item() == 1.0
    # The primer carries the posterior to the next step's root entries.
    torch.testing.assert_close(rollout["next", "belief"][:-1], rollout["belief"][:-1])
    assert not torch.equal(rollout["belief"][0], rollout["belief"][1])
    torch.testing.assert_close(rollout["next", "prev_action"], rollout["action"])
    assert (rollout["seg_num"] >= 1).all()


def test_sampling_follows_train_mode_not_exploration_type():
    # TorchRL's LossModule.forward runs under DETERMINISTIC: the world model
    # must still sample there, and only eval() switches to modes.
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    rssm = tiny_rssm()
    embed, action, is_init = sequence()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first, _ = rssm.observe(embed, action, is_init)
        second, _ = rssm.observe(embed, action, is_init)
    assert not torch.equal(first["state"], second["state"])
    rssm.eval()
    first, _ = rssm.observe(embed, action, is_init)
    second, _ = rssm.observe(embed, action, is_init)
    assert torch.equal(first["state"], second["state"])


def test_state_estimator_can_write_to_separate_keys():
    rssm = tiny_rssm()
    out_keys = {name: ("posterior", name) for name in ("belief", "state", "abs_belief", "abs_state",
                                                        "seg_len", "seg_num", "boundary_context")}
    estimator = HierarchicalStateEstimator(rssm, out_state_keys=out_keys)
    td = estimator.initial_tensordict([2])
    td["embed"] = torch.randn(2, EMBED)
    td["is_init"] = torch.ones(2, 1, dtype=torch.bool)
    estimator(td)
    assert (td["belief"] == 0).all()  # the input state is kept
    assert td["posterior", "belief"].abs().sum() > 0
    assert ("posterior", "seg_num") in estimator.out_keys
