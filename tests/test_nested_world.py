"""The balls world with nested events: scenes (background colours) that switch on every
k-th colour-change event (torchrl_vta.envs.scenes)."""

import json

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_vta.envs import make_env
from torchrl_vta.envs.balls import PALETTE, BallsWorld, make_balls_env
from torchrl_vta.envs.datasets import generate_dataset, load_or_generate, registered_datasets
from torchrl_vta.envs.scenes import SCENE_PALETTE


def _rollout(world: BallsWorld, steps: int) -> list[dict]:
    return [world.reset()] + [world.step() for _ in range(steps)]


def _scene_index(pixels: torch.Tensor) -> np.ndarray:
    """[N, T]: the one scene colour present in each frame (asserts there is exactly one)."""
    px = pixels.numpy()[:, :, None]  # N, T, 1, 3, H, W
    present = (px == SCENE_PALETTE[None, None, :, :, None, None]).all(3).any((-1, -2))
    assert (present.sum(-1) == 1).all(), "every frame shows exactly one scene colour"
    return present.argmax(-1)


def _events_per_scene(event: np.ndarray, scene_event: np.ndarray) -> tuple[list[int], list[int]]:
    """Events counted up to and including each scene event, and the events after the last one."""
    gaps, tails = [], []
    for ev, sc in zip(event, scene_event):
        count = 0
        for e, s in zip(ev, sc):
            count += int(e)
            if s:
                gaps.append(count)
                count = 0
        tails.append(count)
    return gaps, tails


def test_scene_palette_is_distinct_and_dark():
    scenes, balls = SCENE_PALETTE.astype(float), PALETTE.astype(float)
    assert len({tuple(c) for c in SCENE_PALETTE}) == len(SCENE_PALETTE) >= 2
    assert np.linalg.norm(scenes, axis=-1).min() > 50, "distinct from black"
    assert np.linalg.norm(scenes[:, None] - balls[None], axis=-1).min() > 100, "far from every ball colour"
    assert (scenes.max(-1) < 128).all(), "dark, so far from the white marker"


@pytest.mark.parametrize("options", [{}, {"random_change_prob": 0.1, "controlled": True, "audio_dim": 8}])
def test_scene_every_none_is_the_plain_world(options):
    plain = _rollout(BallsWorld(4, image_size=16, seed=11, **options), 80)
    explicit = _rollout(BallsWorld(4, image_size=16, seed=11, scene_every=None, scene_jitter=0, **options), 80)
    for a, b in zip(plain, explicit):
        assert "scene_event" not in b and a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    plain_data = generate_dataset("balls", 3, 20, seed=2, image_size=16)
    none_data = generate_dataset("balls", 3, 20, seed=2, image_size=16, scene_every=None)
    assert "scene_event" not in plain_data.keys() and set(plain_data.keys()) == set(none_data.keys())
    for key in plain_data.keys():
        assert torch.equal(plain_data[key], none_data[key]), key
    assert "scene_event" not in make_balls_env(image_size=16).observation_spec.keys()


def test_scene_world_deterministic_by_seed():
    a = _rollout(BallsWorld(3, image_size=16, scene_every=2, scene_jitter=1, seed=5), 60)
    b = _rollout(BallsWorld(3, image_size=16, scene_every=2, scene_jitter=1, seed=5), 60)
    c = _rollout(BallsWorld(3, image_size=16, scene_every=2, scene_jitter=1, seed=6), 60)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    stack = lambda run, key: np.stack([o[key] for o in run])  # noqa: E731
    assert stack(a, "scene_event").any()
    assert not np.array_equal(stack(a, "pixels"), stack(c, "pixels"))


@pytest.mark.parametrize("every, jitter", [(1, 0), (3, 0), (3, 1), (2, 3)])
def test_scene_events_are_every_kth_event(every, jitter):
    data = generate_dataset("balls", 16, 150, seed=4, image_size=16, scene_every=every, scene_jitter=jitter)
    event, scene_event = data["event"][..., 0].numpy(), data["scene_event"][..., 0].numpy()
    assert data["scene_event"].shape == data["event"].shape and data["scene_event"].dtype == torch.bool
    assert not event[:, 0].any() and not scene_event[:, 0].any()
    assert not (scene_event & ~event).any(), "every scene event is a colour-change event"
    gaps, tails = _events_per_scene(event, scene_event)
    low, high = max(1, every - jitter), every + jitter
    assert len(gaps) > 20
    assert low <= min(gaps) and max(gaps) <= high
    assert max(tails) < high, "no scene outlives its events"
    if jitter == 0:
        assert set(gaps) == {every}
    else:
        assert len(set(gaps)) > 1, "the jitter varies the events per scene"


def test_background_changes_exactly_at_scene_events():
    data = generate_dataset("balls", 12, 80, seed=9, image_size=16, scene_every=2, scene_jitter=1)
    scene = _scene_index(data["pixels"])
    changed = scene[:, 1:] != scene[:, :-1]
    np.testing.assert_array_equal(changed, data["scene_event"][:, 1:, 0].numpy())
    assert changed.any()
    # The modal pixel colour is the background, and the balls keep their own visible colours.
    first = data["pixels"][:, 0].numpy()
    background_share = (first.reshape(12, 3, -1) == SCENE_PALETTE[scene[:, 0]][..., None]).all(1).mean(-1)
    assert (background_share > 0.5).all()
    px = data["pixels"].numpy()[:, :, None]
    balls = (px == PALETTE[None, None, :, :, None, None]).all(3).any((-1, -2))
    assert (balls.sum(-1) == 3).all()
    np.testing.assert_array_equal((balls[:, 1:] != balls[:, :-1]).any(-1), data["event"][:, 1:, 0].numpy())


def test_env_with_scenes_passes_specs_and_is_deterministic():
    env = make_env("balls", image_size=16, max_steps=20, seed=0, scene_every=2)
    td = env.rollout(45, break_when_any_done=False)
    scene_event, event = td["next", "scene_event"], td["next", "event"]
    assert scene_event.shape == (45, 1) and scene_event.dtype == torch.bool
    assert scene_event.any() and not (scene_event & ~event).any()
    assert env.observation_spec["scene_event"].shape == (1,)
    again = make_balls_env(image_size=16, max_steps=20, seed=0, scene_every=2).rollout(45, break_when_any_done=False)
    assert torch.equal(td["next", "pixels"], again["next", "pixels"])
    assert torch.equal(scene_event, again["next", "scene_event"])
    check_env_specs(env)


def test_nested_balls_dataset():
    assert "nested_balls" in registered_datasets()
    nested = generate_dataset("nested_balls", 3, 20, seed=1, image_size=16)
    balls = generate_dataset("balls", 3, 20, seed=1, image_size=16, scene_every=3, scene_jitter=1)
    assert nested["scene_event"].shape == (3, 20, 1) and nested["scene_event"].dtype == torch.bool
    assert set(nested.keys()) == set(balls.keys())
    for key in nested.keys():
        assert torch.equal(nested[key], balls[key]), key
    other = generate_dataset("nested_balls", 3, 20, seed=1, image_size=16, scene_every=5)
    assert not torch.equal(other["scene_event"], nested["scene_event"])


@pytest.mark.parametrize(
    "options, name",
    [
        ({"scene_every": 0}, "scene_every"),
        ({"scene_every": -2}, "scene_every"),
        ({"scene_every": 2.5}, "scene_every"),
        ({"scene_every": True}, "scene_every"),
        ({"scene_every": 3, "scene_jitter": -1}, "scene_jitter"),
        ({"scene_every": 3, "scene_jitter": 0.5}, "scene_jitter"),
        ({"scene_jitter": 1}, "scene_jitter=1 needs scenes: set scene_every"),
    ],
)
def test_bad_scene_options_raise(options, name):
    with pytest.raises(ValueError, match=name):
        BallsWorld(1, **options)
    with pytest.raises(ValueError, match=name):
        make_env("balls", **options)
    with pytest.raises(ValueError, match=name):
        generate_dataset("balls", 1, 5, seed=0, **options)


def test_cache_from_before_scenes_still_loads(tmp_path):
    path = tmp_path / "balls"
    data = load_or_generate(path, "balls", 2, 6, seed=0, image_size=16)
    meta = path / "vta_dataset.json"
    stored = json.loads(meta.read_text())
    # A cache written before the scene options existed records none of them.
    del stored["options"]["scene_every"], stored["options"]["scene_jitter"]
    meta.write_text(json.dumps(stored))
    assert torch.equal(load_or_generate(path, "balls", 2, 6, seed=0, image_size=16)["pixels"], data["pixels"])
    with pytest.raises(ValueError, match="scene_every"):
        load_or_generate(path, "balls", 2, 6, seed=0, image_size=16, scene_every=3)
