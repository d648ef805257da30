"""Invariants of the stack of levels for N = 1, 2, 3 (and 4): nesting of boundaries, COPY
keeps a level bit-identical, READ restarts the level below, the acting filter reproduces the
rollout, jumpy generation per level, per-level losses that fall on a fixed batch."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Composite, Unbounded

from torchrl_vta.modules import HierarchicalStateEstimator
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.world_model import make_world_model
from torchrl_vta.objectives import WorldModelLoss
from torchrl_vta.objectives._checks import total_loss

EMBED, ACTION = 12, 2


def rssm_of(levels, **kwargs):
    options = dict(belief_dim=16, hidden=16, stoch_dim=4, boundary_proj_dim=4, boundary_hidden=8)
    options.update(kwargs)
    return HierarchicalRSSM(ACTION, EMBED, levels=levels, **options)


def sequence(batch=8, steps=16, init_at=(7,)):
    gen = torch.Generator().manual_seed(3)
    embed = torch.randn(batch, steps, EMBED, generator=gen) * 3
    action = torch.randn(batch, steps, ACTION, generator=gen)
    is_init = torch.zeros(batch, steps, dtype=torch.bool)
    for t in init_at:
        is_init[:, t] = True
    return embed, action, is_init


def level_reads(out, levels):
    """``[B, T, L - 1]`` READ of every abstract level (level 1 first)."""
    reads = [out["boundary"]]
    if levels >= 3:
        reads.append(out["upper_boundary"])
    return torch.cat(reads, -1)


@pytest.mark.parametrize("levels", [3, 4])
@pytest.mark.parametrize("kind, source", [("learned", "level"), ("surprise", "level"),
                                          ("learned+surprise", "level"),
                                          ("surprise", "observation")])
def test_a_higher_level_never_reads_without_the_level_below(levels, kind, source):
    torch.manual_seed(0)
    rssm = rssm_of(levels, boundary_kind=kind, surprise_init_scale=0.5,
                   upper_surprise_source=source).train()
    embed, action, is_init = sequence()
    out, last = rssm.observe(embed, action, is_init)
    reads = level_reads(out, levels)
    assert reads.shape == (8, 16, levels - 1)
    assert (reads[..., 1:] <= reads[..., :-1]).all()
    # Both outcomes happen at every level on free steps, so the check above is not vacuous.
    free = torch.ones(8, 16, dtype=torch.bool)
    free[:, 0] = free[:, 7] = False
    for j in range(levels - 1):
        assert reads[..., j][free].sum() > 0 or kind != "learned", j
    assert (reads[..., 1:] < reads[..., :-1]).any(), "level 2 never COPYs where level 1 READs"
    imagined, _ = rssm.imagine(last, torch.randn(8, 10, ACTION))
    reads = level_reads(imagined, levels)
    assert (reads[..., 1:] <= reads[..., :-1]).all()


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_copy_keeps_each_level_bit_identical_and_read_changes_it(levels):
    torch.manual_seed(1)
    rssm = rssm_of(levels).train()
    embed, action, is_init = sequence()
    out, _ = rssm.observe(embed, action, is_init)
    reads = level_reads(out, levels)
    beliefs = out["abs_belief"].split(rssm.level_belief_dim, -1)
    states = out["abs_state"].split(rssm.level_state_dim, -1)
    for j in range(levels - 1):
        read = reads[..., j]
        copies = (read[:, 1:] == 0).nonzero().tolist()
        changes = (read[:, 1:] == 1).nonzero().tolist()
        assert copies and changes, f"level {j + 1} should both READ and COPY"
        for value in (beliefs[j], states[j]):
            for b, t in copies:
                assert torch.equal(value[b, t + 1], value[b, t])
            assert any(not torch.equal(value[b, t + 1], value[b, t]) for b, t in changes)


def test_a_read_of_level_two_restarts_level_one_from_its_feature():
    torch.manual_seed(2)
    rssm = rssm_of(3).eval()
    embed, action, is_init = sequence()
    out, _ = rssm.observe(embed, action, is_init)
    level2_read = out["upper_boundary"][..., 0] == 1
    level1_read_only = (out["boundary"][..., 0] == 1) & ~level2_read
    c1, c2 = out["abs_belief"].split(rssm.level_belief_dim, -1)
    z1, z2 = out["abs_state"].split(rssm.level_state_dim, -1)
    restarted = rssm.upper[0].restart(torch.cat([c2, z2], -1))
    assert level2_read.any() and level1_read_only.any()
    torch.testing.assert_close(c1[level2_read], restarted[level2_read])
    assert not torch.allclose(c1[level1_read_only], restarted[level1_read_only])


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("kind", ["learned", "surprise"])
def test_acting_filter_reproduces_the_rollout(levels, kind):
    rssm = rssm_of(levels, boundary_kind=kind, surprise_init_scale=0.5).eval()
    embed, action, is_init = sequence(batch=3, steps=10, init_at=(0, 6))
    out, last = rssm.observe(embed, action, is_init)
    estimator = HierarchicalStateEstimator(rssm)
    td = estimator.initial_tensordict([3])
    names = ("state", "belief", "abs_state", "abs_belief", "seg_len", "seg_num", "surprise")
    rows = []
    for t in range(10):
        td["embed"], td["prev_action"], td["is_init"] = embed[:, t], action[:, t], is_init[:, t, None]
        estimator(td)
        rows.append(td.select(*names).clone())
    stepped = torch.stack(rows, 1)
    for name in names:
        torch.testing.assert_close(stepped[name], out[name], rtol=0, atol=1e-6)
    torch.testing.assert_close(td["boundary_context"], last.boundary_context, rtol=0, atol=1e-6)


@pytest.mark.parametrize("level", [1, 2])
def test_jumpy_generation_steps_the_chosen_level(level):
    rssm = rssm_of(3).eval()
    embed, action, _ = sequence(batch=2, steps=6, init_at=())
    out = rssm.generate(embed, action, torch.zeros(2, 4, ACTION), mode="jumpy", level=level)
    assert out["obs_feature"].shape == (2, 4, rssm.obs_feature_dim)
    assert (out["boundary"] == 1).all()
    assert (out["upper_boundary"] == float(level >= 2)).all()
    c2 = out["abs_belief"].split(rssm.level_belief_dim, -1)[1]
    # Level 2 moves only when it is the level that jumps.
    assert torch.equal(c2[:, 0], c2[:, -1]) == (level == 1)


def _world_model(levels):
    spec = Composite(position=Unbounded((5,)))
    return make_world_model(spec, Bounded(-1, 1, (ACTION,)), preset="test", levels=levels)


def _batch():
    gen = torch.Generator().manual_seed(5)
    is_init = torch.zeros(4, 12, 1, dtype=torch.bool)
    is_init[:, 0] = True
    position = torch.randn(4, 1, 5, generator=gen).expand(4, 12, 5).clone()
    position[:, 6:] += 2.0  # one event in the middle of every sequence
    return TensorDict({"action": torch.rand(4, 12, ACTION, generator=gen) * 2 - 1,
                       "is_init": is_init,
                       "next": {"position": position,
                                "reward": torch.randn(4, 12, 1, generator=gen),
                                "terminated": torch.zeros(4, 12, 1, dtype=torch.bool)}}, [4, 12])


def test_levels3_losses_have_per_level_terms_and_fall_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _world_model(3)
    loss = WorldModelLoss(model)
    optimiser = torch.optim.Adam(loss.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = loss(_batch())
        value = total_loss(out)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        first = out if first is None else first
    for name in ("loss_kl_level2", "loss_boundary_level2", "kl_level2", "boundary_rate_level2"):
        assert torch.isfinite(out[name]), name
    # Level 2's boundary networks get gradient from its own boundary term.
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.rssm.upper[0].boundary_prior.parameters())
    assert out["loss_reco"] < 0.5 * first["loss_reco"]
    assert value < total_loss(first)


def test_levels3_state_dict_round_trip():
    torch.manual_seed(0)
    first, second = rssm_of(3, boundary_kind="surprise"), rssm_of(3, boundary_kind="surprise")
    embed, action, is_init = sequence()
    first.train().observe(embed, action, is_init)  # sets every level's surprise statistics
    second.load_state_dict(first.state_dict())
    assert any(key.startswith("upper.0.segment_policy.surprise_scale")
               for key in first.state_dict())
    out_a, _ = first.eval().observe(embed, action, is_init)
    out_b, _ = second.eval().observe(embed, action, is_init)
    for key in ("abs_belief", "boundary", "upper_boundary"):
        assert torch.equal(out_a[key], out_b[key])


def test_upper_levels_decide_on_the_chosen_surprise_signal():
    embed, action, is_init = sequence()
    for source in ("level", "observation"):
        torch.manual_seed(0)
        rssm = rssm_of(3, boundary_kind="surprise", upper_surprise_source=source).eval()
        out, _ = rssm.observe(embed, action, is_init)
        if source == "observation":
            # Level 2's signal is the observation level's surprise of the same step.
            torch.testing.assert_close(out["upper_surprise"], out["obs_surprise"])
        else:
            assert not torch.allclose(out["upper_surprise"], out["obs_surprise"])
    with pytest.raises(ValueError, match="upper_surprise_source"):
        rssm_of(3, upper_surprise_source="pixels")


def test_upper_levels_follow_level_one_temperature_and_limits():
    rssm = rssm_of(3, upper_max_seg_len=2)
    upper = rssm.upper[0].segment_policy
    rssm.temperature = 0.3
    assert upper.temperature == 0.3
    with rssm.segment_policy.limits("off"):
        assert upper.limit_mode == "off"
    assert upper.limit_mode == rssm.segment_policy.limit_mode == "prior"
    assert not any("_leader" in key for key in rssm.state_dict())


def test_upper_warmup_keeps_level_two_copying_while_level_one_reads():
    """``upper_surprise_warmup``: the levels above level 1 do not READ (beyond the
    structural steps) for that many training sequences, while level 1 does and level 2's
    statistics are gathered; then level 2 READs again, and the count survives a state dict."""
    embed, action, is_init = sequence()
    torch.manual_seed(0)
    rssm = rssm_of(3, boundary_kind="surprise", surprise_init_scale=0.5,
                   upper_surprise_warmup=2).train()
    free = torch.ones(8, 16, dtype=torch.bool)
    free[:, 0] = free[:, 7] = False
    for _ in range(2):
        out, _ = rssm.observe(embed, action, is_init)
        reads = level_reads(out, 3)
        assert reads[..., 0][free].sum() > 0
        assert reads[..., 1][free].sum() == 0
        assert (reads[..., 1][~free] == 1).all()
    assert rssm.upper[0].segment_policy.surprise_histogram.sum() > 0
    assert "surprise_updates" not in "".join(rssm.segment_policy.state_dict())
    copy = rssm_of(3, boundary_kind="surprise", upper_surprise_warmup=2)
    copy.load_state_dict(rssm.state_dict())
    assert not copy.upper[0].segment_policy.warming_up()
    out, _ = rssm.observe(embed, action, is_init)
    assert level_reads(out, 3)[..., 1][free].sum() > 0
