"""The ``highway`` env: highway-env's Kinematics observation as a padded vehicle set."""

import subprocess
import sys

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_vta.envs import env_options, make_env, registered_envs
from torchrl_vta.envs.highway import HIGHWAY_SCENARIOS, make_highway_env

pytest.importorskip("highway_env", reason='highway-env is not installed (pip install "torchrl_vta[highway]")')


@pytest.mark.parametrize("action, action_shape", [("discrete", (5,)), ("continuous", (2,))])
def test_env_specs_and_set_layout(action, action_shape):
    env = make_highway_env(action=action, vehicles_count=6, max_steps=6)
    check_env_specs(env)
    td = env.rollout(12, break_when_any_done=False)
    assert td["action"].shape == (12, *action_shape)
    for frames in (td, td["next"]):
        vehicles, mask = frames["vehicles"], frames["vehicles_mask"]
        assert vehicles.shape == (12, 6, 6) and vehicles.dtype == torch.float32
        assert mask.shape == (12, 6) and mask.dtype == torch.bool
        assert mask[:, 0].all(), "row 0 is the ego vehicle"
        assert (vehicles[~mask] == 0).all(), "absent rows are exactly zero"
        for key in ("crashed", "event"):
            assert frames[key].shape == (12, 1) and frames[key].dtype == torch.bool
    assert "observation" not in td.keys()
    assert not td["event"][td["is_init"]].any() and not td["crashed"][td["is_init"]].any()
    assert (td["next", "step_count"] <= 6).all()
    assert torch.equal(td["is_init"][1:], td["next", "done"][:-1]), "a new episode follows each end"


def test_mask_is_the_presence_column_in_any_position():
    env = make_highway_env(features=("x", "y", "presence", "vx"), vehicles_count=12, seed=1)
    raw = env.base_env.rollout(5)  # before VehicleSet: the [V, F] Kinematics rows
    presence = raw["next", "observation"][..., 2] > 0.5
    out = env.transform[0](raw["next"].clone())
    assert torch.equal(out["vehicles_mask"], presence)
    assert out["vehicles"].shape == (5, 12, 3)
    kept = raw["next", "observation"][..., [0, 1, 3]]
    assert torch.equal(out["vehicles"][presence], kept[presence])
    assert not presence.all(), "12 rows leave some slots empty on highway-fast"


def test_deterministic_by_seed():
    def first(seed):
        env = make_highway_env(seed=seed)
        actions = torch.eye(5)[torch.tensor([1, 3, 0, 1, 4, 2, 1, 1])]
        td = env.reset()
        frames = [td["vehicles"]]
        for a in actions:
            td = env.step(td.set("action", a))["next"]
            frames.append(td["vehicles"])
        return torch.stack(frames)

    a, b, c = first(3), first(3), first(4)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], c[0])


def test_crashes_and_lane_changes_are_reported():
    env = make_highway_env(seed=0, max_steps=None)
    left = torch.eye(5)[0]
    td = env.reset()
    events = []
    for _ in range(30):
        td = env.step(td.set("action", left))["next"]
        events.append(td["event"].item())
        # highway-fast terminates on a collision only.
        assert td["crashed"].item() == td["terminated"].item()
        if td["done"].item():
            break
    # Three lanes: steering left changes lane at least once, then holds the leftmost lane.
    assert any(events) and not all(events)


def test_registered_and_lazy():
    assert "highway" in registered_envs()
    options = env_options("highway")
    assert options["scenario"] == "highway-fast-v0" and options["action"] == "discrete"
    assert make_env("highway", vehicles_count=4).reset()["vehicles"].shape == (4, 6)
    code = ("import sys; from torchrl_vta.envs import make_env; make_env('traffic'); "
            "print(sorted({'highway_env', 'pygame', 'pandas'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "options, match",
    [
        ({"scenario": "highway-vv0"}, "scenario"),
        ({"scenario": "merge-v1", "action": "continuous"}, "action"),
        ({"action": "steer"}, "action"),
        ({"vehicles_count": 0}, "vehicles_count"),
        ({"features": ("x", "y")}, "features"),
        ({"features": ("presence", "speed")}, "features"),
        ({"absolute": 1}, "absolute"),
        ({"see_behind": "yes"}, "see_behind"),
        ({"duration": 0}, "duration"),
        ({"max_steps": 0}, "max_steps"),
        ({"seed": -1}, "seed"),
        ({"config": {"lanes_countt": 4}}, "lanes_countt"),
        ({"config": {"observation": {}}}, "observation"),
        ({"scenario": "merge-v1", "duration": 10}, "duration"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        make_highway_env(**options)
    assert options.get("scenario", "merge-v1") in HIGHWAY_SCENARIOS or match == "scenario"


def test_world_model_routes_the_vehicle_set_and_its_loss_is_finite():
    from torchrl_vta import WorldModelLoss, make_world_model

    env = make_highway_env(max_steps=50, seed=0)
    model = make_world_model(env.observation_spec, env.action_spec, preset="test")
    assert model.encoder.routing == {"vehicles": "set"}
    assert model.encoder.set_mask_keys == {"vehicles": "vehicles_mask"}
    batch = torch.stack([env.rollout(8, break_when_any_done=False) for _ in range(2)])
    losses = WorldModelLoss(model)(batch)
    assert all(torch.isfinite(v).all() for v in losses.values() if v.is_floating_point())
    WorldModelLoss.total(losses).backward()


def test_config_composes():
    pytest.importorskip("hydra")
    from tests.test_recipe import config

    cfg = config("env=highway", "model=tiny")
    assert cfg.env.name == "highway" and cfg.model.encoder["set_discrete"] == {}
    env = make_env(cfg.env.name, **cfg.env.options)
    assert env.reset()["vehicles"].shape == (8, 6)
