"""The ``traffic`` world: signalised intersection with a padded, slot-stable vehicle set."""

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_vta.envs import env_options, make_env, registered_envs
from torchrl_vta.envs.traffic import (
    CONTINUOUS_FEATURE_INDICES,
    DISCRETE_FEATURE_CARDINALITIES,
    DISCRETE_FEATURE_INDICES,
    LANE_ID_INDEX,
    NUM_PHASES,
    SITE_ID_INDEX,
    VEHICLE_DISCRETE_COLUMNS,
    VEHICLE_FEATURES,
    TrafficWorld,
    make_traffic_env,
    traffic_sequences,
)
from torchrl_vta.envs.traffic_world import MIN_GAP, VEHICLE_LENGTH


def _run(world: TrafficWorld, steps: int, action=None) -> dict:
    """Frames 0..steps of a world as arrays ``[T, B, ...]`` (plus the phase)."""
    frames = [world.reset()]
    phases = [world.phase.copy()]
    for _ in range(steps):
        frames.append(world.step(action))
        phases.append(world.phase.copy())
    out = {key: np.stack([f[key] for f in frames]) for key in frames[0]}
    out["phase"] = np.stack(phases)
    return out


def _along(vehicles: np.ndarray) -> np.ndarray:
    """Position along each vehicle's own driving direction."""
    return vehicles[..., 0] * vehicles[..., 4] + vehicles[..., 1] * vehicles[..., 5]


def test_feature_constants():
    assert VEHICLE_FEATURES[:4] == ("x", "y", "vx", "vy")
    assert VEHICLE_FEATURES[-2:] == ("site_id", "lane_id")
    assert DISCRETE_FEATURE_INDICES == (SITE_ID_INDEX, LANE_ID_INDEX) == (6, 7)
    assert DISCRETE_FEATURE_CARDINALITIES == (4, 2)
    assert VEHICLE_DISCRETE_COLUMNS == {6: 4, 7: 2}
    assert sorted(CONTINUOUS_FEATURE_INDICES + DISCRETE_FEATURE_INDICES) == list(range(len(VEHICLE_FEATURES)))


@pytest.mark.parametrize(
    "options", [{}, {"controlled": True, "observe_signal": True}, {"lanes": 1, "max_vehicles": 5}]
)
def test_env_specs_and_rollout(options):
    env = make_traffic_env(max_steps=20, **options)
    check_env_specs(env)
    td = env.rollout(25, break_when_any_done=False)
    m = options.get("max_vehicles", 16)
    assert td["next", "vehicles"].shape == (25, m, len(VEHICLE_FEATURES))
    assert td["next", "vehicles"].dtype == torch.float32
    assert td["next", "vehicles_mask"].shape == (25, m) and td["next", "vehicles_mask"].dtype == torch.bool
    assert td["event"].shape == td["next", "event"].shape == (25, 1) and td["next", "event"].dtype == torch.bool
    assert td["action"].shape == (25, 2 if options.get("controlled") else 1)
    has_signal = ("next", "signal") in td.keys(True)
    assert has_signal == bool(options.get("observe_signal"))
    assert td["next", "truncated"][19].item() and td["is_init"][20].item()
    assert not td["event"][0].item() and not td["event"][20].item(), "a reset frame has no event"
    assert env.observation_spec["vehicles"].is_in(td["next", "vehicles"])
    discrete = td["next", "vehicles"][..., list(DISCRETE_FEATURE_INDICES)]
    assert torch.equal(discrete, discrete.round())
    assert discrete[..., 1].max() <= options.get("lanes", 2) - 1


def test_registered_with_all_options():
    assert "traffic" in registered_envs()
    options = env_options("traffic")
    for name in ("seed", "max_vehicles", "arrival_rate", "controlled", "observe_signal", "max_steps", "lanes"):
        assert name in options
    assert options["controlled"] is False and options["max_steps"] == 500
    env = make_env("traffic", max_vehicles=8, observe_signal=True)
    assert env.reset()["vehicles"].shape == (8, len(VEHICLE_FEATURES))
    with pytest.raises(ValueError, match="arrival_ratee"):
        make_env("traffic", arrival_ratee=0.1)


def test_deterministic_by_seed():
    def rollout(seed):
        env = make_traffic_env(seed=seed, observe_signal=True)
        return env.rollout(60)

    a, b, c = rollout(3), rollout(3), rollout(4)
    for key in ("vehicles", "vehicles_mask", "event", "signal", "reward"):
        assert torch.equal(a["next", key], b["next", key]), key
    assert not torch.equal(a["next", "vehicles"], c["next", "vehicles"])
    assert not torch.equal(a["next", "signal"], c["next", "signal"])


def test_events_are_exactly_the_phase_changes_and_not_periodic():
    world = TrafficWorld(4, green_min=8, green_max=16, clearance_steps=2, seed=0)
    run = _run(world, 400)
    event, phase = run["event"], run["phase"]
    assert not event[0].any()
    np.testing.assert_array_equal(event[1:], phase[1:] != phase[:-1])
    np.testing.assert_array_equal(run["signal"].argmax(-1), phase)
    greens = []
    for b in range(4):
        starts = np.flatnonzero(event[:, b])
        lengths = np.diff(starts)
        kinds = phase[starts[:-1], b]
        assert (lengths[kinds % 2 == 1] == 2).all(), "clearances last clearance_steps"
        greens.extend(lengths[kinds % 2 == 0])
    greens = np.array(greens)
    assert greens.min() >= 8 and greens.max() <= 16
    assert len(np.unique(greens)) >= 5, "green durations vary: the events are not periodic"
    assert 0.08 < event[1:].mean() < 0.25
    # The env reports the same thing, and phases cycle NS green -> clearance -> EW green.
    td = make_traffic_env(seed=1, observe_signal=True).rollout(120)
    signal = torch.cat([td["signal"][:1], td["next", "signal"]]).argmax(-1)
    changed = signal[1:] != signal[:-1]
    assert torch.equal(td["next", "event"][:, 0], changed)
    assert ((signal[1:][changed] - signal[:-1][changed]) % NUM_PHASES == 1).all()


def test_vehicles_enter_and_leave_in_stable_slots():
    world = TrafficWorld(2, seed=2)
    run = _run(world, 400)
    vehicles, mask = run["vehicles"], run["vehicles_mask"]
    assert (vehicles[~mask] == 0).all(), "absent slots are exactly zero"
    assert (np.abs(vehicles[..., :2]) <= 1.0).all()
    entered = ~mask[:-1] & mask[1:]
    left = mask[:-1] & ~mask[1:]
    assert entered.sum() > 20 and left.sum() > 20
    kept = mask[:-1] & mask[1:]
    ids = vehicles[..., list(DISCRETE_FEATURE_INDICES)]
    assert (ids[:-1][kept] == ids[1:][kept]).all(), "a slot's site and lane never change"
    # Same vehicle: it moved by exactly its reported velocity, forward only.
    moved = vehicles[1:, ..., :2] - vehicles[:-1, ..., :2]
    np.testing.assert_allclose(moved[kept], vehicles[1:, ..., 2:4][kept], atol=1e-6)
    assert (_along(vehicles[1:])[kept] >= _along(vehicles[:-1])[kept] - 1e-6).all()
    # Arrivals appear on the box edge; departures were about to cross the far edge.
    np.testing.assert_allclose(_along(vehicles[1:])[entered], -1.0, atol=1e-6)
    assert (_along(vehicles[:-1])[left] > 1.0 - world.max_speed - 1e-6).all()
    # A new vehicle takes the lowest slot that was free: lower free slots were all taken too.
    for t, b, i in zip(*np.nonzero(entered)):
        lower_free = ~mask[t, b, :i]
        assert mask[t + 1, b, :i][lower_free].all()


def test_full_slots_drop_arrivals():
    world = TrafficWorld(1, max_vehicles=3, arrival_rate=0.5, seed=0)
    run = _run(world, 100)
    assert run["vehicles_mask"].sum(-1).max() == 3
    assert run["vehicles"].shape[-2] == 3


def test_no_overlap_or_crossing_in_a_lane_and_one_road_in_the_junction():
    world = TrafficWorld(16, arrival_rate=0.06, seed=5)
    run = _run(world, 250)
    vehicles, mask = run["vehicles"], run["vehicles_mask"]
    along = _along(vehicles)
    lane = vehicles[..., SITE_ID_INDEX] * 2 + vehicles[..., LANE_ID_INDEX]
    same = mask[..., :, None] & mask[..., None, :] & (lane[..., :, None] == lane[..., None, :])
    same &= ~np.eye(world.max_vehicles, dtype=bool)
    gap = np.abs(along[..., :, None] - along[..., None, :])
    assert same.any() and gap[same].min() >= VEHICLE_LENGTH + MIN_GAP - 1e-6
    # The order inside a lane never changes (nobody passes through the vehicle ahead).
    ahead = along[..., :, None] < along[..., None, :]
    both = same[:-1] & same[1:]
    assert (ahead[:-1][both] == ahead[1:][both]).all()
    half = world.junction_half_width
    inside = mask & (np.abs(along) < half + VEHICLE_LENGTH / 2)
    north_south = vehicles[..., SITE_ID_INDEX] % 2 == 0
    assert not ((inside & north_south).any(-1) & (inside & ~north_south).any(-1)).any()
    assert (inside & north_south).any() and (inside & ~north_south).any()


def test_vehicles_facing_red_stop_before_the_line():
    world = TrafficWorld(8, arrival_rate=0.04, seed=3)
    world.reset()
    line = world.stop_position + 1e-6
    queued = 0
    for _ in range(200):
        before = world.alive & (world.s <= line)
        was_at_line = world.alive & (np.abs(world.s - world.stop_position) < 1e-6)
        position = world.s.copy()
        world.step()
        red = world.facing_red()
        stays = before & red & world.alive
        assert (world.s[stays] <= line).all(), "no vehicle crosses its stop line on red"
        waiting = red & was_at_line
        assert (world.v[waiting] == 0).all() and (world.s[waiting] == position[waiting]).all()
        queued += waiting.sum()
    assert queued > 50


def test_reward_is_minus_the_fraction_standing_still():
    run = _run(TrafficWorld(3, seed=4), 100)
    mask = run["vehicles_mask"]
    still = mask & (np.abs(run["vehicles"][..., 2:4]).sum(-1) == 0)
    expected = -still.sum(-1) / np.maximum(mask.sum(-1), 1)
    np.testing.assert_allclose(run["reward"][1:], expected[1:], atol=1e-6)
    assert (run["reward"][1:] < 0).any()


def test_controlled_switch_requests_respect_min_green():
    env = make_traffic_env(controlled=True, observe_signal=True, warmup_steps=0, min_green=5,
                           clearance_steps=2, max_steps=None, seed=0)
    keep, switch = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    td = env.reset()
    start = td["signal"].argmax().item()
    assert start in (0, 2)

    def step(action):
        nonlocal td
        td = env.step(td.set("action", action))["next"]
        return td["event"].item(), td["signal"].argmax().item()

    assert [step(keep) for _ in range(30)] == [(False, start)] * 30, "keep never switches"
    # The green has shown long enough: a request ends it at once, then the clearance runs.
    trace = [step(switch) for _ in range(2 + 5 + 2)]
    other = (start + 2) % 4
    expected = [(True, start + 1), (False, start + 1), (True, other)]
    expected += [(False, other)] * 4 + [(True, (other + 1) % 4), (False, (other + 1) % 4)]
    assert trace == expected, "requests within min_green frames of a green's start are ignored"
    with pytest.raises(ValueError, match="action"):
        env.base_env.world.step(np.array([2]))


def test_traffic_sequences():
    a = traffic_sequences(3, 40, seed=7, lanes=1)
    b = traffic_sequences(3, 40, seed=7, lanes=1)
    c = traffic_sequences(3, 40, seed=8, lanes=1)
    assert a.batch_size == (3, 40) and a["vehicles"].shape == (3, 40, 16, len(VEHICLE_FEATURES))
    assert a["event"].shape == (3, 40, 1) and not a["event"][:, 0].any()
    for key in a.keys():
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["vehicles"], c["vehicles"])
    phase = a["signal"].argmax(-1)
    assert torch.equal(a["event"][:, 1:, 0], phase[:, 1:] != phase[:, :-1])
    assert (a["vehicles"][..., LANE_ID_INDEX] == 0).all()
    with pytest.raises(ValueError, match="controlled"):
        traffic_sequences(1, 5, seed=0, controlled=True)
    with pytest.raises(ValueError, match="length"):
        traffic_sequences(1, 0, seed=0)


@pytest.mark.parametrize(
    "option, value",
    [
        ("max_vehicles", 0),
        ("lanes", 3),
        ("arrival_rate", 1.5),
        ("max_speed", 0.5),
        ("green_min", 0),
        ("green_max", 4),
        ("clearance_steps", 0),
        ("min_green", 0),
        ("warmup_steps", -1),
        ("controlled", "yes"),
        ("observe_signal", 1),
        ("max_steps", 0),
    ],
)
def test_bad_options_raise(option, value):
    with pytest.raises(ValueError, match=option):
        make_traffic_env(**{option: value})
