"""Bouncing balls that change colour on wall hits as a TorchRL env, with ground-truth events.

The simulator is :class:`~torchrl_vta.envs.balls_world.BallsWorld` (rules in that module's
docstring); :class:`BallsEnv` runs one world and never terminates, :func:`make_balls_env`
adds TorchRL's :class:`~torchrl.envs.InitTracker` and a
:class:`~torchrl.envs.StepCounter` time limit.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import Compose, EnvBase, InitTracker, StepCounter, TransformedEnv

from torchrl_vta.envs.balls_world import PALETTE, BallsWorld

__all__ = ["PALETTE", "BallsWorld", "BallsEnv", "make_balls_env"]


class BallsEnv(EnvBase):
    """TorchRL env around a single :class:`BallsWorld` (never terminates; add a time limit).

    Keys: ``pixels`` uint8 ``[3, H, W]``, ``audio`` float32 ``[audio_dim]`` (if ``audio_dim > 0``),
    ``event`` bool ``[1]``, ``scene_event`` bool ``[1]`` (if ``scene_every`` is set),
    ``reward`` float32 ``[1]``, ``done``/``terminated`` bool ``[1]``;
    action: one-hot float32 ``[5]`` when ``controlled`` else ``[1]`` (no-op).
    Keyword arguments are those of :class:`BallsWorld` (without ``batch_size``) plus ``device``.

    Example:
        >>> env = BallsEnv(image_size=32, seed=0)
        >>> td = env.rollout(3)
        >>> td["next", "pixels"].shape, td["next", "event"].dtype
        (torch.Size([3, 3, 32, 32]), torch.bool)
        >>> BallsEnv(image_size=32, scene_every=2).observation_spec["scene_event"].shape
        torch.Size([1])
    """

    def __init__(self, *, device: torch.device | str = "cpu", **world_options) -> None:
        super().__init__(device=device, batch_size=torch.Size([]))
        self.world = BallsWorld(1, **world_options)
        size, audio_dim = self.world.image_size, self.world.audio_dim
        observation = Composite(
            pixels=Bounded(0, 255, (3, size, size), dtype=torch.uint8, device=self.device),
            event=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            device=self.device,
        )
        if self.world.scenes is not None:
            observation["scene_event"] = Categorical(2, (1,), dtype=torch.bool, device=self.device)
        if audio_dim > 0:
            observation["audio"] = Bounded(-1.0, 1.0, (audio_dim,), dtype=torch.float32, device=self.device)
        self.observation_spec = observation
        self.action_spec = OneHot(self.world.num_actions, dtype=torch.float32, device=self.device)
        self.reward_spec = Unbounded((1,), dtype=torch.float32, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self.world.rng = np.random.default_rng(seed)

    def _to_tensordict(self, obs: dict, with_reward: bool) -> TensorDictBase:
        out = TensorDict(
            {
                "pixels": torch.from_numpy(obs["pixels"][0]),
                "event": torch.from_numpy(obs["event"][:1]),
            },
            batch_size=(),
        )
        if "audio" in obs:
            out["audio"] = torch.from_numpy(obs["audio"][0])
        if "scene_event" in obs:
            out["scene_event"] = torch.from_numpy(obs["scene_event"][:1])
        false = torch.zeros(1, dtype=torch.bool)
        out["done"] = false
        out["terminated"] = false.clone()
        if with_reward:
            out["reward"] = torch.from_numpy(obs["reward"][:1])
        return out.to(self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        return self._to_tensordict(self.world.reset(), with_reward=False)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"].argmax(-1).reshape(1).cpu().numpy()
        return self._to_tensordict(self.world.step(action), with_reward=True)


def make_balls_env(
    *,
    image_size: int = 64,
    num_balls: int = 3,
    radius: float = 0.08,
    speed: float = 0.03,
    random_change_prob: float = 0.0,
    ball_collisions: bool = True,
    audio_dim: int = 64,
    controlled: bool = False,
    push: float = 0.01,
    scene_every: int | None = None,
    scene_jitter: int = 0,
    max_steps: int | None = 500,
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> TransformedEnv:
    """Builds :class:`BallsEnv` wrapped with :class:`~torchrl.envs.InitTracker` and a time limit.

    Args:
        image_size, num_balls, radius, speed, random_change_prob, ball_collisions, audio_dim,
            controlled, push, scene_every, scene_jitter: see :class:`BallsWorld`.
        max_steps: episode length enforced by :class:`~torchrl.envs.StepCounter`
            (sets ``truncated``); ``None`` for endless episodes.
        seed: seed of the world's random generator (``None``: fresh entropy).
        device: device of the output tensors.

    Example:
        >>> env = make_balls_env(image_size=32, max_steps=4, seed=0)
        >>> td = env.rollout(10)
        >>> td.shape, td["next", "truncated"][-1].item()
        (torch.Size([4]), True)
    """
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
    env = BallsEnv(
        image_size=image_size,
        num_balls=num_balls,
        radius=radius,
        speed=speed,
        random_change_prob=random_change_prob,
        ball_collisions=ball_collisions,
        audio_dim=audio_dim,
        controlled=controlled,
        push=push,
        scene_every=scene_every,
        scene_jitter=scene_jitter,
        seed=seed,
        device=device,
    )
    return TransformedEnv(env, Compose(InitTracker(), StepCounter(max_steps=max_steps)))
