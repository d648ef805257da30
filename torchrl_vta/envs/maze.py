"""The first-person maze as a TorchRL env (:class:`MazeEnv`, :func:`make_maze_env`), with
ground-truth turn events.

The layouts are :mod:`~torchrl_vta.envs.maze_layout`'s (:func:`make_maze`); the camera, its
actions, the rendering and the events are :mod:`~torchrl_vta.envs.maze_world`'s
(:class:`MazeWorld`, rules in that module's docstring).

Reward (RL). +1 on the step that brings the agent onto the goal block's centre, which also
terminates the episode; 0 otherwise. The time limit is :class:`~torchrl.envs.StepCounter`'s.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import Compose, EnvBase, InitTracker, StepCounter, TransformedEnv

from torchrl_vta.envs.maze_layout import DIRECTIONS, Maze, make_maze
from torchrl_vta.envs.maze_world import FORWARD, LEFT, NUM_ACTIONS, RIGHT, MazeWorld

__all__ = [
    "DIRECTIONS",
    "FORWARD",
    "LEFT",
    "RIGHT",
    "Maze",
    "make_maze",
    "MazeWorld",
    "MazeEnv",
    "make_maze_env",
]


class MazeEnv(EnvBase):
    """TorchRL env: one agent in a first-person maze, rewarded for reaching the goal.

    Keys: ``pixels`` uint8 ``[3, H, W]``, ``event`` bool ``[1]``, ``reward`` float32 ``[1]``,
    ``done``/``terminated`` bool ``[1]`` (on reaching the goal); action: one-hot float32 ``[3]``
    over ``(forward, left, right)``. ``pose`` int64 ``[3]`` is the ground-truth camera pose
    ``(x, y, heading)``, ``x``/``y`` in steps (``steps_per_block`` per block) on the block
    grid: not an observation for the agent (the encoder reads float and uint8 keys only), but
    what exploration is measured by (distinct poses visited).

    Args:
        image_size, steps_per_block, fov: see :class:`MazeWorld`.
        maze_size, loop_prob: see :func:`make_maze`.
        maze_seed: seed of the maze layout (``None``: drawn from ``seed``).
        new_maze_on_reset: draw a fresh maze at every reset instead of keeping one layout.
        seed: seed of start poses (and of mazes when ``maze_seed`` is ``None``).
        device: device of the output tensors.

    Example:
        >>> env = MazeEnv(image_size=32, maze_size=3, seed=0)
        >>> td = env.rollout(3)
        >>> td["next", "pixels"].shape, td["action"].shape
        (torch.Size([3, 3, 32, 32]), torch.Size([3, 3]))
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        maze_size: int = 7,
        loop_prob: float = 0.1,
        steps_per_block: int = 2,
        fov: float = 66.0,
        maze_seed=None,
        new_maze_on_reset: bool = False,
        seed=None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(device=device, batch_size=torch.Size([]))
        rng = np.random.default_rng(seed)
        self.maze_size = maze_size
        self.loop_prob = loop_prob
        self.new_maze_on_reset = bool(new_maze_on_reset)
        maze = make_maze(maze_size, loop_prob=loop_prob, seed=rng if maze_seed is None else maze_seed)
        self.world = MazeWorld([maze], image_size=image_size, steps_per_block=steps_per_block, fov=fov, seed=rng)
        self.observation_spec = Composite(
            pixels=Bounded(0, 255, (3, image_size, image_size), dtype=torch.uint8, device=self.device),
            event=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            pose=Unbounded((3,), dtype=torch.int64, device=self.device),
            device=self.device,
        )
        self.action_spec = OneHot(NUM_ACTIONS, dtype=torch.float32, device=self.device)
        self.reward_spec = Unbounded((1,), dtype=torch.float32, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self.world.rng = np.random.default_rng(seed)

    def _to_tensordict(self, obs: dict, with_reward: bool) -> TensorDictBase:
        terminated = torch.from_numpy(obs["terminated"][:1].copy())
        out = TensorDict(
            {
                "pixels": torch.from_numpy(obs["pixels"][0]),
                "event": torch.from_numpy(obs["event"][:1].copy()),
                "pose": torch.from_numpy(np.concatenate([self.world.units[0], self.world.heading[:1]])),
                "done": terminated,
                "terminated": terminated.clone(),
            },
            batch_size=(),
        )
        if with_reward:
            out["reward"] = torch.from_numpy(obs["reward"][:1].copy())
        return out.to(self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if self.new_maze_on_reset:
            self.world.set_mazes([make_maze(self.maze_size, loop_prob=self.loop_prob, seed=self.world.rng)])
        return self._to_tensordict(self.world.reset(), with_reward=False)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"].argmax(-1).reshape(1).cpu().numpy()
        return self._to_tensordict(self.world.step(action), with_reward=True)


def make_maze_env(
    *,
    image_size: int = 64,
    maze_size: int = 7,
    loop_prob: float = 0.1,
    steps_per_block: int = 2,
    fov: float = 66.0,
    maze_seed=None,
    new_maze_on_reset: bool = False,
    max_steps: int | None = 500,
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> TransformedEnv:
    """Builds :class:`MazeEnv` wrapped with :class:`~torchrl.envs.InitTracker` and a time limit.

    Args:
        image_size, maze_size, loop_prob, steps_per_block, fov, maze_seed, new_maze_on_reset,
            seed, device: see :class:`MazeEnv`.
        max_steps: episode length enforced by :class:`~torchrl.envs.StepCounter`
            (sets ``truncated``); ``None`` for no limit.

    Example:
        >>> env = make_maze_env(image_size=32, maze_size=3, max_steps=5, seed=0)
        >>> td = env.rollout(10, break_when_any_done=False)
        >>> td["next", "step_count"].shape
        torch.Size([10, 1])
    """
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
    env = MazeEnv(
        image_size=image_size,
        maze_size=maze_size,
        loop_prob=loop_prob,
        steps_per_block=steps_per_block,
        fov=fov,
        maze_seed=maze_seed,
        new_maze_on_reset=new_maze_on_reset,
        seed=seed,
        device=device,
    )
    return TransformedEnv(env, Compose(InitTracker(), StepCounter(max_steps=max_steps)))
