import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_vta.envs.balls import PALETTE, BallsWorld, make_balls_env
from torchrl_vta.envs.datasets import generate_dataset, load_or_generate
from torchrl_vta.envs.maze import FORWARD, LEFT, RIGHT, DIRECTIONS, MazeWorld, make_maze, make_maze_env


def _colour_sets(pixels: torch.Tensor) -> np.ndarray:
    """[N, T, P]: which palette colours appear anywhere in each frame."""
    px = pixels.numpy()[:, :, None]  # N, T, 1, 3, H, W
    palette = PALETTE[None, None, :, :, None, None]
    return (px == palette).all(3).any((-1, -2))


@pytest.mark.parametrize("world", ["balls", "maze"])
def test_datasets_deterministic_by_seed(world):
    a = generate_dataset(world, 3, 12, seed=7, image_size=16, **({"maze_size": 4} if world == "maze" else {}))
    b = generate_dataset(world, 3, 12, seed=7, image_size=16, **({"maze_size": 4} if world == "maze" else {}))
    c = generate_dataset(world, 3, 12, seed=8, image_size=16, **({"maze_size": 4} if world == "maze" else {}))
    assert a.batch_size == torch.Size([3, 12])
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["pixels"], c["pixels"])
    assert a["pixels"].dtype == torch.uint8 and a["pixels"].shape[-3:] == (3, 16, 16)
    assert a["event"].dtype == torch.bool and a["event"].shape == (3, 12, 1)
    assert not a["event"][:, 0].any()


@pytest.mark.parametrize("random_change_prob", [0.0, 0.1])
def test_balls_events_are_the_frames_where_colours_change(random_change_prob):
    data = generate_dataset("balls", 12, 40, seed=3, image_size=32, random_change_prob=random_change_prob)
    present = _colour_sets(data["pixels"])
    assert (present.sum(-1) == 3).all(), "every ball must be visible with its own colour"
    changed = (present[:, 1:] != present[:, :-1]).any(-1)
    event = data["event"][..., 0].numpy()
    assert not event[:, 0].any()
    np.testing.assert_array_equal(event[:, 1:], changed)
    assert 0.05 < event[:, 1:].mean() < 0.5


def test_balls_audio_exactly_on_collisions():
    world = BallsWorld(8, image_size=16, seed=0)
    obs = world.reset()
    assert not obs["audio"].any()
    collided_any = 0
    for _ in range(60):
        velocity = world.velocity.copy()
        obs = world.step()
        # Speeds are constant between collisions, so a velocity change marks a collision.
        collided = (world.velocity != velocity).any((1, 2))
        np.testing.assert_array_equal((obs["audio"] != 0).any(-1), collided)
        assert (obs["audio"] != 0).any(-1)[obs["event"]].all(), "every wall hit makes a sound"
        collided_any += collided.sum()
    assert collided_any > 0


def test_balls_audio_matches_events_without_ball_collisions():
    data = generate_dataset("balls", 8, 40, seed=1, image_size=16, ball_collisions=False, audio_dim=32)
    assert data["audio"].shape == (8, 40, 32) and data["audio"].dtype == torch.float32
    np.testing.assert_array_equal((data["audio"] != 0).any(-1), data["event"][..., 0])


def test_balls_reward_on_right_wall_hits():
    world = BallsWorld(4, image_size=16, controlled=True, ball_collisions=False, seed=2)
    world.reset()
    rewards = 0
    for _ in range(80):
        vx = world.velocity[:, 0, 0].copy()
        # No-op, up and down pushes leave the sign of the x velocity alone, so without ball
        # collisions only a wall flips it, and the right wall is the one with x > 1/2.
        obs = world.step(world.rng.choice([0, 3, 4], size=4))
        bounced_right = (vx > 0) & (world.velocity[:, 0, 0] < 0) & (world.position[:, 0, 0] > 0.5)
        np.testing.assert_array_equal(obs["reward"] == 1.0, bounced_right)
        rewards += obs["reward"].sum()
    assert rewards > 0


def test_maze_events_are_turns():
    data = generate_dataset("maze", 6, 40, seed=2, image_size=16)
    event = data["event"][..., 0]
    heading, action, position = data["heading"], data["action"], data["position"]
    assert action.shape == (6, 40, 3) and torch.equal(action.sum(-1), torch.ones(6, 40))
    assert not event[:, 0].any()
    # Event at t <=> the heading of frame t differs from frame t - 1 <=> the action after t - 1 turned.
    assert torch.equal(event[:, 1:], heading[:, 1:] != heading[:, :-1])
    turned = (action[..., LEFT] + action[..., RIGHT]).bool()
    assert torch.equal(event[:, 1:], turned[:, :-1])
    moved = (position[:, 1:] - position[:, :-1]).abs().sum(-1)
    # The scripted agent turns in place and otherwise always advances half a block.
    assert torch.equal(moved[event[:, 1:]], torch.zeros(int(event[:, 1:].sum())))
    assert torch.allclose(moved[~event[:, 1:]], torch.tensor(0.5))
    assert 0.05 < event[:, 1:].float().mean() < 0.5


def test_maze_dataset_frames_show_the_recorded_poses():
    seed, n, t = 4, 3, 30
    data = generate_dataset("maze", n, t, seed=seed, image_size=24, maze_size=5)
    for i in range(n):
        world = MazeWorld([make_maze(5, seed=[seed, 1, i])], image_size=24)
        obs = world.set_pose(data["position"][i, :1].numpy(), data["heading"][i, :1].numpy())
        assert np.array_equal(obs["pixels"][0], data["pixels"][i, 0].numpy())
        for step in range(t - 1):
            obs = world.step(data["action"][i, step].argmax().reshape(1).numpy())
            assert np.array_equal(obs["pixels"][0], data["pixels"][i, step + 1].numpy())
            assert obs["event"][0] == data["event"][i, step + 1, 0].item()
            assert world.heading[0] == data["heading"][i, step + 1].item()
            np.testing.assert_allclose(world.position[0], data["position"][i, step + 1].numpy())


def test_maze_rendering_turns():
    world = MazeWorld([make_maze(4, seed=0)], image_size=24, seed=0)
    start = world.reset()["pixels"]
    after_left = world.step(np.array([LEFT]))["pixels"]
    assert not np.array_equal(start, after_left), "a 90-degree turn shows another view"
    assert np.array_equal(world.step(np.array([RIGHT]))["pixels"], start)
    for _ in range(4):
        obs = world.step(np.array([RIGHT]))
    assert np.array_equal(obs["pixels"], start)
    assert start.std() > 10, "frames must not be flat"


def test_maze_goal_reward_and_termination():
    maze = make_maze(4, loop_prob=0.0, seed=3)
    world = MazeWorld([maze], image_size=16, steps_per_block=2)
    row, col = maze.goal
    for heading, (dx, dy) in enumerate(DIRECTIONS):
        if not maze.walls[row - dy, col - dx]:
            break
    world.set_pose(np.array([[col - dx + 0.5, row - dy + 0.5]]), np.array([heading]))
    first = world.step(np.array([FORWARD]))
    second = world.step(np.array([FORWARD]))
    assert first["reward"][0] == 0 and not first["terminated"][0]
    assert second["reward"][0] == 1 and second["terminated"][0]


def test_maze_walls_block_forward():
    maze = make_maze(3, seed=1)
    world = MazeWorld([maze], image_size=16, seed=0)
    world.reset()
    for _ in range(30):
        world.step(np.array([FORWARD]))
        x, y = np.floor(world.position[0]).astype(int)
        assert not maze.walls[y, x]


@pytest.mark.parametrize(
    "make, options",
    [
        (make_balls_env, {}),
        (make_balls_env, {"controlled": True, "audio_dim": 0, "random_change_prob": 0.2}),
        (make_maze_env, {"maze_size": 4}),
        (make_maze_env, {"maze_size": 3, "new_maze_on_reset": True}),
    ],
)
def test_env_specs_and_random_rollout(make, options):
    env = make(image_size=32, max_steps=20, seed=0, **options)
    check_env_specs(env)
    td = env.rollout(25, break_when_any_done=False)
    assert td.batch_size == torch.Size([25])
    assert td["next", "pixels"].dtype == torch.uint8 and td["next", "pixels"].shape == (25, 3, 32, 32)
    assert td["next", "event"].shape == (25, 1) and td["next", "event"].dtype == torch.bool
    assert td["next", "truncated"][19].item() and td["is_init"][20].item()
    if make is make_maze_env:
        turned = (td["action"][:, LEFT] + td["action"][:, RIGHT]).bool()
        assert torch.equal(td["next", "event"][:, 0], turned)
    elif options.get("audio_dim", 64):
        audio = td["next", "audio"]
        assert audio.shape == (25, 64)
        assert (audio != 0).any(-1)[td["next", "event"][:, 0]].all()


@pytest.mark.parametrize("make", [make_balls_env, make_maze_env])
def test_envs_deterministic_by_seed(make):
    kwargs = {"maze_size": 4} if make is make_maze_env else {}
    a = make(image_size=16, seed=5, **kwargs)
    b = make(image_size=16, seed=5, **kwargs)
    torch.manual_seed(0)
    ta = a.rollout(15)
    torch.manual_seed(0)
    tb = b.rollout(15)
    assert torch.equal(ta["next", "pixels"], tb["next", "pixels"])
    assert make(image_size=64).observation_spec["pixels"].shape == (3, 64, 64)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="num_balls"):
        make_balls_env(num_balls=0)
    with pytest.raises(ValueError, match="random_change_prob"):
        make_balls_env(random_change_prob=1.5)
    with pytest.raises(ValueError, match="max_steps"):
        make_balls_env(max_steps=0)
    with pytest.raises(ValueError, match="maze_size"):
        make_maze_env(maze_size=1)
    with pytest.raises(ValueError, match="steps_per_block"):
        make_maze_env(steps_per_block=0)
    with pytest.raises(ValueError, match="world"):
        generate_dataset("pong", 1, 5, seed=0)
    with pytest.raises(ValueError, match="controlled"):
        generate_dataset("balls", 1, 5, seed=0, controlled=True)
    with pytest.raises(ValueError, match="seq_len"):
        generate_dataset("maze", 1, 0, seed=0)


def test_load_or_generate(tmp_path):
    path = tmp_path / "maze"
    first = load_or_generate(path, "maze", 2, 6, seed=1, image_size=16, maze_size=3)
    assert (path / "vta_dataset.json").exists()
    again = load_or_generate(path, "maze", 2, 6, seed=1, image_size=16, maze_size=3)
    fresh = generate_dataset("maze", 2, 6, seed=1, image_size=16, maze_size=3)
    for key in fresh.keys():
        assert torch.equal(again[key], fresh[key]) and torch.equal(first[key], fresh[key])
    with pytest.raises(ValueError, match="seed"):
        load_or_generate(path, "maze", 2, 6, seed=2, image_size=16, maze_size=3)


def test_load_or_generate_keeps_a_concurrent_writers_copy(tmp_path, monkeypatch):
    """Two runs generating the same dataset at once: the one that finishes second loads the
    first one's copy instead of failing on the rename, and leaves no temporary folder."""
    import os

    import torchrl_vta.envs.datasets as datasets

    path = tmp_path / "maze"
    real_replace = os.replace

    def other_process_finished_first(src, dst):
        real_replace(src, dst)  # the "other" writer's copy lands at dst ...
        datasets.generate_dataset("maze", 2, 6, seed=1, image_size=16, maze_size=3).memmap(
            prefix=src)  # ... while ours is still in its temporary folder
        real_replace(src, dst)

    monkeypatch.setattr(datasets.os, "replace", other_process_finished_first)
    data = load_or_generate(path, "maze", 2, 6, seed=1, image_size=16, maze_size=3)
    fresh = generate_dataset("maze", 2, 6, seed=1, image_size=16, maze_size=3)
    assert torch.equal(data["pixels"], fresh["pixels"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maze"]
