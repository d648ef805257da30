"""The segment policy: the one place boundaries are decided, and its surprise criterion."""

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from torchrl_vta.modules.boundary_ops import READ, TemperatureSchedule
from torchrl_vta.original import OriginalVTA
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.rssm_wrappers import HierarchicalStateEstimator
from torchrl_vta.modules.segment_policy import BOUNDARY_KINDS, SegmentPolicy
from torchrl_vta.modules.surprise_split import (
    histogram_quantile,
    split_surprise,
    split_surprise3,
    split_surprise_clusters,
)

EMBED, ACTION = 6, 2
KINDS = list(BOUNDARY_KINDS)


def tiny_rssm(**kwargs):
    options = dict(belief_dim=16, hidden=16, stoch_dim=4, boundary_proj_dim=4, boundary_hidden=8)
    options.update(kwargs)
    return HierarchicalRSSM(ACTION, EMBED, **options)


def jump_sequences(batch, steps, *, generator, min_gap=4, max_gap=7):
    """Piecewise-constant embeddings (small noise) with jumps at random planted times;
    each new level is at least 4 away from the previous one."""
    embed = torch.empty(batch, steps, EMBED)
    jumps = torch.zeros(batch, steps, dtype=torch.bool)
    for b in range(batch):
        t = 0
        level = torch.zeros(EMBED)
        while t < steps:
            new = level
            while (new - level).norm() < 4:
                new = torch.randn(EMBED, generator=generator) * 2
            level = new
            length = int(torch.randint(min_gap, max_gap + 1, (1,), generator=generator))
            embed[b, t : t + length] = level
            jumps[b, t] = t > 0
            t += length
    embed += 0.01 * torch.randn(embed.shape, generator=generator)
    return embed, jumps


# ------------------------------------------------------------------ criterion
def _criterion_reads(policy, surprise):
    trough = torch.zeros(())
    reads = []
    for value in surprise:
        read, normalised = policy.surprise_read(value, trough)
        trough = policy.surprise_trough(normalised, read, trough)
        reads.append(bool(read))
    return [t for t, r in enumerate(reads) if r]


@pytest.mark.parametrize("reference, scale", [("split", 2.5), ("split3", 2.5), ("max", 25.0)])
def test_surprise_criterion_reads_at_planted_peaks_once_per_plateau(reference, scale):
    policy = SegmentPolicy(kind="surprise", surprise_reference=reference,
                           surprise_init_scale=scale)
    generator = torch.Generator().manual_seed(0)
    # Baseline below the split (2.5) and with rises below 0.1 of the maximum (25).
    surprise = 2.0 * torch.rand(200, generator=generator)
    peaks = [7, 30, 31, 32, 90, 150]  # 30-32: one plateau
    surprise[peaks] = torch.tensor([6.0, 5.0, 5.2, 4.9, 9.0, 4.0])
    assert _criterion_reads(policy, surprise) == [7, 30, 90, 150]


def test_max_reference_finds_peaks_on_a_multimodal_baseline():
    """Steps without events spread over two orders of magnitude (as the maze's view
    changes do) and the events sit above them: a rise of a tenth of the running maximum
    separates them."""
    generator = torch.Generator().manual_seed(1)
    steps = 400
    quiet = torch.exp(torch.empty(steps).uniform_(math.log(0.3), math.log(15.0),
                                                  generator=generator))
    events = torch.rand(steps, generator=generator) < 0.12
    events[0] = False
    events[1:] &= ~events[:-1]  # peaks: no two events in a row
    surprise = torch.where(
        events, torch.exp(torch.empty(steps).uniform_(math.log(40.0), math.log(400.0),
                                                      generator=generator)), quiet)
    policy = SegmentPolicy(kind="surprise", surprise_reference="max", surprise_momentum=0.0)
    policy.update_statistics(surprise)
    assert 150.0 <= policy.surprise_scale.item() <= 450.0
    reads = torch.zeros(steps, dtype=torch.bool)
    reads[_criterion_reads(policy, surprise)] = True
    assert torch.equal(reads, events), (reads ^ events).nonzero().flatten().tolist()


def test_running_scale_follows_training_sequences_only():
    rssm = tiny_rssm(boundary_kind="surprise", surprise_momentum=0.5)
    policy = rssm.segment_policy
    embed, action = torch.randn(4, 10, EMBED), torch.randn(4, 10, ACTION)
    before = policy.surprise_scale.clone()
    rssm.eval()
    rssm.observe(embed, action)
    assert torch.equal(policy.surprise_scale, before)
    rssm.train()
    out, _ = rssm.observe(embed, action)
    first = _histogram(out["obs_surprise"][:, 1:])
    torch.testing.assert_close(policy.surprise_histogram, first)
    torch.testing.assert_close(policy.surprise_scale, split_surprise(first))
    out, _ = rssm.observe(2 * embed, action)
    mixed = 0.5 * first + 0.5 * _histogram(out["obs_surprise"][:, 1:])
    torch.testing.assert_close(policy.surprise_histogram, mixed)
    torch.testing.assert_close(policy.surprise_scale, split_surprise(mixed))
    # The scale is a buffer: it travels with the state dict (checkpoints, acting copies).
    assert "segment_policy.surprise_scale" in rssm.state_dict()


def _histogram(surprise):
    counts = torch.histc(surprise.flatten().log1p(), 128, 0.0, math.log1p(1e4))
    return counts / counts.sum()


def test_split_separates_two_populations_whatever_their_tail():
    generator = torch.Generator().manual_seed(0)
    quiet = 2 + torch.rand(900, generator=generator)           # 2-3 nats
    events = 20 + 10 * torch.rand(100, generator=generator)    # 20-30 nats
    for tail in (0.0, 1000.0):  # a few huge events must not move the split above the rest
        values = torch.cat([quiet, events, torch.full((5,), tail)]) if tail else torch.cat(
            [quiet, events])
        split = split_surprise(_histogram(values)).item()
        assert 3.0 <= split <= 20.0, (tail, split)


def test_three_class_split_cuts_above_a_shoulder_of_expected_changes():
    """A quiet mode at the free-bits floor, a shoulder of expected changes and events (the
    maze's walking steps and turns): the two-class split cuts the shoulder off the quiet
    mode, the three-class one cuts above it; with only a sliver between quiet and events it
    is the two-class split, and the policy's scale and event split follow it."""
    generator = torch.Generator().manual_seed(0)
    quiet = 0.5 + 0.7 * torch.rand(640, generator=generator)                  # 0.5-1.2 nats
    shoulder = torch.exp(torch.empty(220).uniform_(math.log(2.5), math.log(20.0),
                                                   generator=generator))
    events = torch.exp(torch.empty(140).uniform_(math.log(40.0), math.log(500.0),
                                                 generator=generator))
    histogram = _histogram(torch.cat([quiet, shoulder, events]))
    assert split_surprise(histogram).item() < 2.5
    assert 20.0 <= split_surprise3(histogram).item() <= 40.0
    policy = SegmentPolicy(kind="surprise", surprise_reference="split3")
    policy.load_histogram(histogram)
    assert policy.surprise_scale == split_surprise3(histogram) == policy.event_split()
    # A tight quiet mode and one broad event mode: the best three classes split the events
    # (a middle class smaller than the top one), so the two-class split is kept. (Other
    # samples of a broad mode can give a middle class as large as the top one: then the
    # cut falls inside the events; see split_surprise3.)
    generator = torch.Generator().manual_seed(0)
    tight = torch.exp(math.log(2.0) + 0.15 * torch.randn(860, generator=generator))
    broad = torch.exp(torch.empty(110).uniform_(math.log(40.0), math.log(400.0),
                                                generator=generator))
    sliver = _histogram(torch.cat([tight, broad]))
    assert split_surprise(sliver).item() < 40.0
    torch.testing.assert_close(split_surprise3(sliver), split_surprise(sliver))


def test_cluster_split_cuts_above_the_second_mode_and_keeps_one_mode_alone():
    """Quiet steps, a mode of expected changes and separated events (the maze late in
    training): as the quiet mode grows the two-class split drops from above the middle mode
    to below it, the cluster split stays above it, under the events; a single broad mode
    and two modes keep the two-class split."""
    generator = torch.Generator().manual_seed(0)

    def logs(low, high, count):  # log-uniform surprise, nats
        return torch.exp(torch.empty(count).uniform_(math.log(low), math.log(high),
                                                     generator=generator))

    events = logs(40.0, 90.0, 140)
    for quiet in (300, 700):
        values = torch.cat([logs(0.5, 1.0, quiet), logs(3.0, 15.0, 400), events])
        histogram = _histogram(values)
        cut = split_surprise_clusters(histogram).item()
        assert 15.0 <= cut <= 40.0, (quiet, cut)
        assert split_surprise_clusters(histogram) >= split_surprise(histogram)
    assert split_surprise(histogram).item() < 3.0  # the two-class split has jumped down
    policy = SegmentPolicy(kind="surprise", surprise_reference="clusters")
    policy.load_histogram(histogram)
    assert policy.surprise_scale == split_surprise_clusters(histogram) == policy.event_split()
    quantiles = torch.linspace(0.001, 0.999, 999)
    for values in (torch.exp(3 + 0.8 * 2**0.5 * torch.erfinv(2 * quantiles - 1)),
                   torch.cat([logs(1.0, 3.0, 860), logs(40.0, 90.0, 140)])):
        histogram = _histogram(values)
        torch.testing.assert_close(split_surprise_clusters(histogram),
                                   split_surprise(histogram))


def test_interior_split_leaves_the_half_mass_bound_for_the_valley_above_it():
    def logs(low, high, count):  # evenly log-spaced surprise, nats
        return torch.exp(torch.linspace(math.log(low), math.log(high), count))

    # A floor mode, a broad walking shoulder and events (maze seed 1 at update 4,150):
    # Otsu's split drops into the shoulder, and the capped search stops at the half-mass cut.
    values = torch.cat([logs(0.3, 2.0, 300), logs(1.5, 30.0, 500), logs(60.0, 300.0, 150)])
    histogram = _histogram(values)
    mass_below = lambda cut: float((values <= cut).float().mean())  # noqa: E731
    plain = split_surprise(histogram).item()
    assert mass_below(plain) == pytest.approx(0.5, abs=0.03)      # on the bound, not a valley
    interior = split_surprise(histogram, interior=True).item()
    assert 30.0 <= interior <= 60.0, interior                       # in the gap before events
    policy = SegmentPolicy(kind="surprise", surprise_reference="split_interior")
    policy.load_histogram(histogram)
    assert policy.surprise_scale == split_surprise(histogram, interior=True)
    assert policy.surprise_threshold == 1.0
    # Where the split already sits in a valley, nothing changes.
    gap = _histogram(torch.cat([logs(0.5, 3.0, 860), logs(40.0, 90.0, 140)]))
    torch.testing.assert_close(split_surprise(gap, interior=True), split_surprise(gap))


def test_running_maximum_ignores_a_few_huge_events():
    generator = torch.Generator().manual_seed(0)
    quiet = 2 + torch.rand(900, generator=generator)           # 2-3 nats
    events = 20 + 10 * torch.rand(100, generator=generator)    # 20-30 nats
    for tail in (0.0, 1000.0):  # five huge events must not move the maximum above the rest
        values = torch.cat([quiet, events, torch.full((5,), tail)]) if tail else torch.cat(
            [quiet, events])
        maximum = histogram_quantile(_histogram(values), 0.99).item()
        assert 25.0 <= maximum <= 33.0, (tail, maximum)


def _train_on_jumps(rssm, steps, generator):
    decoder = nn.Linear(rssm.obs_feature_dim, EMBED)
    optimizer = torch.optim.Adam([*rssm.parameters(), *decoder.parameters()], lr=3e-3)
    for _ in range(steps):
        embed, _ = jump_sequences(16, 24, generator=generator)
        out, _ = rssm.observe(embed, torch.zeros(16, 24, ACTION))
        feature = torch.cat([out["belief"], out["state"]], -1)
        kl = rssm.obs_posterior.kl(out["posterior_stats"], out["prior_stats"]).mean()
        kl_abs = rssm.abs_posterior.kl(out["abs_posterior_stats"], out["abs_prior_stats"])
        kl_abs = (kl_abs * out["boundary"].squeeze(-1).detach()).mean()
        loss = (decoder(feature) - embed).square().sum(-1).mean() + kl + kl_abs
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_surprise_kind_reads_exactly_at_planted_jumps():
    """A world model that learned "the embedding stays" is surprised only at the jumps;
    the surprise kind then READs exactly there (tolerance 0), causally."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    rssm = tiny_rssm(boundary_kind="surprise", stoch_dim=6, min_std=0.05, )
    _train_on_jumps(rssm, 400, generator)
    rssm.eval()
    embed, jumps = jump_sequences(32, 24, generator=generator)
    out, _ = rssm.observe(embed, torch.zeros(32, 24, ACTION))
    read = out["boundary"].squeeze(-1).bool()
    # Step 1 follows the structural READ from a one-frame belief; score from step 2 on.
    assert torch.equal(read[:, 2:], jumps[:, 2:]), (read[:, 2:] ^ jumps[:, 2:]).sum()


# ---------------------------------------------------------- train/act, limits
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("training", [True, False])
def test_acting_filter_reproduces_rollout_boundaries_for_every_kind(kind, training):
    rssm = tiny_rssm(boundary_kind=kind, surprise_init_scale=0.05)
    rssm.train(training)
    embed, action = torch.randn(3, 12, EMBED), torch.randn(3, 12, ACTION)
    is_init = torch.zeros(3, 12, dtype=torch.bool)
    is_init[:, [0, 7]] = True
    # The filter runs first: observe() in training mode moves the running scale after
    # it has decided, and the filter must decide with the scale the rollout used.
    estimator = HierarchicalStateEstimator(rssm)
    td = estimator.initial_tensordict([3])
    steps = []
    torch.manual_seed(3)
    for t in range(12):
        td["embed"], td["prev_action"], td["is_init"] = embed[:, t], action[:, t], is_init[:, t, None]
        estimator(td)
        steps.append(td.select("boundary", "belief", "abs_state", "seg_len", "surprise").clone())
    stepped = torch.stack(steps, 1)
    torch.manual_seed(3)
    out, _ = rssm.observe(embed, action, is_init)
    assert torch.equal(stepped["boundary"], out["boundary"])
    assert 0 < out["boundary"][:, 1:].mean() < 1, "the test needs both READ and COPY"
    for key in ("belief", "abs_state", "seg_len", "surprise"):
        torch.testing.assert_close(stepped[key], out[key], rtol=0, atol=1e-5)


@pytest.mark.parametrize("options", [
    dict(surprise_rearm="rise"), dict(surprise_rearm="typical"), dict(surprise_rearm=0.5),
    dict(surprise_prior="separate")])
def test_acting_filter_reproduces_rollout_boundaries_for_each_surprise_option(options):
    torch.manual_seed(0)
    rssm = tiny_rssm(boundary_kind="surprise", **options).eval()
    embed, action = torch.randn(3, 12, EMBED) * 3, torch.randn(3, 12, ACTION)
    is_init = torch.zeros(3, 12, dtype=torch.bool)
    is_init[:, 0] = True
    calibration, _ = rssm.observe(embed, action, is_init)
    # A histogram whose median sits among the surprises, so "typical" is not 0.
    rssm.segment_policy.update_statistics(calibration["obs_surprise"][:, 1:] * 0.8)
    estimator = HierarchicalStateEstimator(rssm)
    td = estimator.initial_tensordict([3])
    steps = []
    for t in range(12):
        td["embed"], td["prev_action"], td["is_init"] = embed[:, t], action[:, t], is_init[:, t, None]
        estimator(td)
        steps.append(td.select("boundary", "surprise").clone())
    stepped = torch.stack(steps, 1)
    out, _ = rssm.observe(embed, action, is_init)
    assert torch.equal(stepped["boundary"], out["boundary"])
    assert 0 < out["boundary"][:, 1:].mean() < 1, "the test needs both READ and COPY"


def test_typical_rearm_reads_back_to_back_events_that_rise_merges():
    """Two events in a row, the second smaller: "rise" READs the first only (no trough
    between them), "typical" and a fraction of 0.5 READ both. An after-shock (above the
    split, under half the event) READs under "typical" only; a quiet step under none."""
    history = torch.cat([torch.full((90,), 2.0), torch.full((10,), 40.0)])
    surprise = torch.tensor([2.0, 50.0, 40.0, 2.0, 2.0, 45.0, 20.0, 2.0])
    reads = {}
    for rearm in ("rise", "typical", 0.5):
        policy = SegmentPolicy(kind="surprise", surprise_momentum=0.0, surprise_rearm=rearm)
        policy.update_statistics(history)
        trough, out = policy.typical_surprise(), []
        for value in surprise:
            read, normalised = policy.surprise_read(value, trough)
            trough = policy.surprise_trough(normalised, read, trough)
            out.append(int(read))
        reads[rearm] = out
    assert 20.0 > policy.surprise_scale.item()
    assert reads == {"rise": [0, 1, 0, 0, 0, 1, 0, 0], "typical": [0, 1, 1, 0, 0, 1, 1, 0],
                     0.5: [0, 1, 1, 0, 0, 1, 0, 0]}


def test_a_plateau_above_the_split_reads_once_under_rise_only():
    """Documented behaviour: a rearm below the READ's own surprise ("typical", a fraction)
    lets every step of a plateau above the split READ; "rise" READs it once."""
    history = torch.cat([torch.full((90,), 2.0), torch.full((10,), 40.0)])
    plateau = torch.tensor([2.0, 50.0, 50.0, 50.0, 2.0])
    for rearm, expected in (("rise", [1]), ("typical", [1, 2, 3]), (0.5, [1, 2, 3])):
        policy = SegmentPolicy(kind="surprise", surprise_momentum=0.0, surprise_rearm=rearm)
        policy.update_statistics(history)
        assert _criterion_reads(policy, plateau) == expected, rearm


def test_typical_rearm_without_statistics_reads_a_plateau_once():
    """Before the first statistics update there is no typical surprise: rearming at 0
    would READ every step of a plateau above the initial scale, so it rearms as "rise"."""
    plateau = torch.tensor([0.5, 5.0, 5.0, 5.05, 0.5, 6.0])
    for rearm in ("rise", "typical", 0.5):
        policy = SegmentPolicy(kind="surprise", surprise_rearm=rearm, surprise_init_scale=1.0)
        assert _criterion_reads(policy, plateau) == [1, 5], rearm


@pytest.mark.parametrize("kind", KINDS)
def test_limits_hold_for_every_kind(kind):
    torch.manual_seed(0)
    rssm = tiny_rssm(boundary_kind=kind, max_seg_len=3, max_seg_num=4, limit_mode="both",
                     surprise_init_scale=0.05)
    out, last = rssm.observe(torch.randn(8, 20, EMBED), torch.randn(8, 20, ACTION))
    assert (out["seg_len"] <= 3).all()
    over = out["seg_num"].squeeze(-1) > 4
    read = out["boundary"].squeeze(-1).bool()
    previous_len = torch.cat([torch.zeros(8, 1), out["seg_len"][:, :-1, 0]], 1)
    assert (~over | ~read | (previous_len == 3)).all()
    imagined, _ = rssm.imagine(last, torch.randn(8, 10, ACTION))
    assert (imagined["seg_len"] <= 3).all()


def test_surprise_steps_are_scored_not_forced():
    rssm = tiny_rssm(boundary_kind="surprise", surprise_init_scale=0.05, limit_mode="off")
    out, _ = rssm.observe(torch.randn(4, 10, EMBED), torch.randn(4, 10, ACTION))
    assert out["boundary_forced"][:, 0].all() and not out["boundary_forced"][:, 1:].any()
    # The decision is written as hard logits: the boundary KL trains the prior towards it.
    read = out["boundary"][:, 1:, 0].bool()
    logits = out["boundary_logits"][:, 1:]
    assert torch.equal(logits.argmax(-1) == READ, read)
    assert (logits.abs() > 6).all()


def test_learned_surprise_posterior_reads_the_surprise():
    torch.manual_seed(0)
    rssm = tiny_rssm(boundary_kind="learned+surprise")
    head = rssm.boundary_posterior.surprise_head
    out, _ = rssm.observe(torch.randn(4, 10, EMBED), torch.randn(4, 10, ACTION))
    (out["boundary"][:, 1:].sum() + out["boundary_logits"][:, 1:, READ].sum()).backward()
    assert head[0][0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        head[-1].bias.copy_(torch.tensor([30.0, -30.0]))  # the surprise path says READ
    again, _ = rssm.observe(torch.randn(4, 10, EMBED), torch.randn(4, 10, ACTION))
    assert (again["boundary"] == 1).all()


# ------------------------------------------------------------------ learning
def test_boundary_prior_learns_the_surprise_decisions_on_a_fixed_batch():
    """The criterion's decisions are the prior's target: its boundary loss (the cross
    entropy towards them) halves on a fixed batch of planted jumps (400 updates: with the
    surprise guard on by default the decisions settle later; 0.34 of the start at 400,
    0.55 at 300)."""
    kind = "surprise"
    from tensordict import TensorDict
    from torchrl.data import Composite, Unbounded

    from torchrl_vta.modules.world_model import make_world_model
    from torchrl_vta.objectives.world_model_loss import WorldModelLoss

    torch.manual_seed(0)
    model = make_world_model(Composite(position=Unbounded((EMBED,))), Unbounded((0,)),
                             preset="test", rssm=dict(boundary_kind=kind), continue_head=False)
    loss = WorldModelLoss(model, reward_scale=0.0)
    generator = torch.Generator().manual_seed(1)
    embed, _ = jump_sequences(8, 16, generator=generator)
    batch = TensorDict({"action": torch.zeros(8, 16, 0),
                        "is_init": torch.zeros(8, 16, 1, dtype=torch.bool),
                        "next": {"position": embed, "reward": torch.zeros(8, 16, 1)}}, [8, 16])
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    values = []
    for _ in range(400):
        losses = loss(batch.clone())
        values.append(losses["loss_boundary"].item())
        optimizer.zero_grad()
        WorldModelLoss.total(losses).backward()
        optimizer.step()
    assert sum(values[-10:]) < 0.5 * sum(values[:10]), (values[:10], values[-10:])


# ---------------------------------------------------------- one place, options
_DECIDERS = re.compile(r"\b(sample_boundary|force_logits|force_sample|limit_segments)\(")


def test_only_the_segment_policy_forces_or_samples_boundaries():
    package = Path(__file__).resolve().parents[1] / "torchrl_vta"
    offenders = []
    for path in package.rglob("*.py"):
        # segment_limits.py holds the SegmentPolicy mixin that forces by the limits.
        if path.name in ("boundary_ops.py", "segment_policy.py", "segment_limits.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if _DECIDERS.search(code) and ">>>" not in code:
                offenders.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_both_models_expose_one_policy_that_owns_temperature_and_limits():
    rssm = tiny_rssm(max_seg_len=5)
    original = OriginalVTA(belief_size=8, feat_size=8, state_size=2, max_seg_len=6)
    for model, length in ((rssm, 5), (original, 6)):
        policy = model.segment_policy
        assert isinstance(policy, SegmentPolicy) and policy.max_seg_len == length
        policy.schedule = TemperatureSchedule(1.0, 0.5, 0.5, 1)
        assert policy.anneal(1) == 0.75 and model.temperature == 0.75


def test_original_posterior_limits_come_from_the_policy():
    torch.manual_seed(0)
    model = OriginalVTA(belief_size=8, feat_size=8, state_size=2, max_seg_len=3,
                        max_seg_num=2).eval()
    obs = torch.rand(2, 16, 3, 32, 32) * 2 - 1
    with model.segment_policy.limits("both"):
        limited = model(obs, init_size=2)
    direct = model(obs, init_size=2, limit_posterior=True)
    assert torch.equal(limited.boundary, direct.boundary)
    seg = 0
    for value in limited.boundary[0, 2:14, 0].tolist():
        seg = 1 if value else seg + 1
        assert seg <= 3


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(kind="sometimes"), "boundary kind"),
        (dict(limit_mode="never"), "limit_mode"),
        (dict(max_seg_len=0), "max_seg_len"),
        (dict(surprise_threshold=-1.0), "surprise_threshold"),
        (dict(surprise_momentum=1.5), "surprise_momentum"),
        (dict(surprise_quantile=0.2), "surprise_quantile"),
        (dict(surprise_reference="median"), "surprise_reference"),
        (dict(surprise_min_nats=-1.0), "surprise_min_nats"),
        (dict(surprise_quantile=1.0), "surprise_quantile"),
        (dict(surprise_init_scale=0.0), "surprise_init_scale"),
        (dict(temperature=0.0), "temperature"),
        (dict(kind="surprise", surprise_warmup=-1), "surprise_warmup"),
        (dict(surprise_rearm="never"), "surprise_rearm"),
        (dict(surprise_rearm=1.0), "surprise_rearm"),
        (dict(surprise_rearm=True), "surprise_rearm"),
        (dict(kind="learned", surprise_warmup=10), "surprise_warmup"),
    ],
)
def test_bad_options_name_the_option(options, match):
    with pytest.raises(ValueError, match=match):
        SegmentPolicy(**options)


def test_bad_role_is_refused():
    with pytest.raises(ValueError, match="role"):
        SegmentPolicy().decide(torch.zeros(2, 2), role="acting", deterministic=True)


def test_step_after_a_sequence_start_reads_only_above_the_typical_surprise():
    """A structural READ has no defined surprise: the trough it leaves is the typical
    surprise, so a typical first step is no peak (a trough of 0 would make it one)."""
    policy = SegmentPolicy(kind="surprise", surprise_reference="max", surprise_momentum=0.0)
    policy.update_statistics(torch.cat([torch.full((90,), 15.0), torch.full((10,), 40.0)]))
    start = policy.surprise_trough(torch.zeros(2), torch.ones(2), torch.zeros(2),
                                   torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(start, policy.typical_surprise().expand(2))
    read, _ = policy.surprise_read(torch.tensor([15.0, 40.0]), start)
    assert read.tolist() == [False, True]
    read_from_zero, _ = policy.surprise_read(torch.tensor([15.0]), torch.zeros(1))
    assert read_from_zero.tolist() == [True]


def test_information_floor_keeps_small_peaks_from_reading():
    surprise, trough = torch.tensor([5.0, 30.0]), torch.zeros(2)
    plain = SegmentPolicy(kind="surprise", surprise_init_scale=1.0)
    floored = SegmentPolicy(kind="surprise", surprise_init_scale=1.0, surprise_min_nats=25.0)
    assert plain.surprise_read(surprise, trough)[0].tolist() == [True, True]
    assert floored.surprise_read(surprise, trough)[0].tolist() == [False, True]


def test_loaded_histogram_sets_the_scale_as_training_does():
    values = torch.cat([torch.full((90,), 2.0), torch.full((10,), 40.0)])
    for reference in ("split", "split3", "max"):
        trained = SegmentPolicy(surprise_reference=reference, surprise_momentum=0.0)
        trained.update_statistics(values)
        loaded = SegmentPolicy(surprise_reference=reference)
        loaded.load_histogram(trained.surprise_histogram.clone())
        assert torch.equal(loaded.surprise_scale, trained.surprise_scale)
    with pytest.raises(ValueError, match="histogram must have shape"):
        SegmentPolicy().load_histogram(torch.zeros(10))


def test_a_loaded_state_dict_restarts_troughs_where_the_trained_policy_does():
    """The typical surprise a READ's trough restarts at is kept beside the histogram, not in
    the state dict: loading one (a checkpoint, another rank, a pickled copy) refreshes it."""
    import pickle

    trained = SegmentPolicy(kind="surprise", surprise_rearm="typical", surprise_momentum=0.0)
    trained.update_statistics(torch.cat([torch.full((60,), 3.0), torch.full((40,), 40.0)]))
    assert trained.typical_surprise() > 0
    assert "surprise_typical" not in trained.state_dict()
    loaded = SegmentPolicy(kind="surprise", surprise_rearm="typical")
    assert loaded.typical_surprise() == 0
    loaded.load_state_dict(trained.state_dict())
    assert torch.equal(loaded.typical_surprise(), trained.typical_surprise())
    copied = pickle.loads(pickle.dumps(trained))
    assert torch.equal(copied.typical_surprise(), trained.typical_surprise())
    normalised, read = torch.tensor([0.9]), torch.tensor([1.0])
    assert torch.equal(loaded.surprise_trough(normalised, read, torch.zeros(1)),
                       trained.surprise_trough(normalised, read, torch.zeros(1)))



def test_warmup_holds_surprise_reads_back_for_its_training_sequences():
    surprise, trough = torch.tensor([0.5, 30.0]), torch.zeros(2)
    policy = SegmentPolicy(kind="surprise", surprise_init_scale=1.0, surprise_warmup=2)
    for _ in range(2):
        assert policy.surprise_read(surprise, trough)[0].tolist() == [False, False]
        policy.update_statistics(torch.cat([torch.full((90,), 1.0), torch.full((10,), 40.0)]))
    assert policy.surprise_read(surprise, trough)[0].tolist() == [False, True]
