"""DeepMind Control Suite from pixels (optionally with proprioception) as a TorchRL env."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torchrl.envs import (
    DMControlWrapper,
    DoubleToFloat,
    EnvBase,
    FlattenObservation,
    InitTracker,
    PermuteTransform,
    StepCounter,
    TransformedEnv,
)

from torchrl_vta.envs.transforms import AudioInjection, check_audio_args

__all__ = ["make_dmc_env", "split_task"]

_INSTALL_HINT = 'the "dmc" env needs dm_control and mujoco: pip install "torchrl_vta[dmc]"'


def split_task(task: str, valid: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """Split ``"domain_task"`` at the first ``_`` that gives a valid ``(domain, task)`` pair.

    Domains and tasks may contain underscores themselves (``ball_in_cup``,
    ``swingup_sparse``), hence the search over split points.

    Example:
        >>> split_task("ball_in_cup_catch", [("ball_in_cup", "catch"), ("walker", "walk")])
        ('ball_in_cup', 'catch')
    """
    valid = set(valid)
    for i, char in enumerate(task):
        if char == "_" and (task[:i], task[i + 1 :]) in valid:
            return task[:i], task[i + 1 :]
    names = ", ".join(sorted(f"{d}_{t}" for d, t in valid))
    raise ValueError(f"unknown dm_control task {task!r}; expected 'domain_task', one of: {names}")


def _import_dm_control():
    # dm_control picks its OpenGL backend when first imported; EGL renders headless.
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
        from dm_control.suite.wrappers import pixels
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return suite, pixels


class _ActionRepeat:
    """dm_env wrapper repeating each action ``repeat`` times, summing rewards.

    It sits *below* dm_control's pixels wrapper so that one frame is rendered per env step
    rather than per physics control step (rendering costs ~100x a control step on CPU).
    Unlike TorchRL's ``FrameSkipTransform`` it stops at the end of an episode, so the
    final time step (and its terminal discount) is never skipped over.
    """

    def __init__(self, env, repeat: int):
        self._env = env
        self._repeat = repeat

    def reset(self):
        return self._env.reset()

    def step(self, action):
        reward = 0.0
        for _ in range(self._repeat):
            timestep = self._env.step(action)
            reward += timestep.reward
            if timestep.last():
                break
        return timestep._replace(reward=reward)

    def __getattr__(self, name):
        # physics, task, specs, ...: everything else is the wrapped env's.
        return getattr(self._env, name)


def make_dmc_env(
    task: str = "walker_walk",
    *,
    image_size: int = 64,
    camera_id: int = 0,
    proprio: bool = False,
    action_repeat: int = 2,
    seed: int | None = None,
    audio_dim: int = 0,
    audio_noise_std: float = 0.1,
    device: str | torch.device = "cpu",
) -> EnvBase:
    """Build a dm_control suite task rendered to uint8 pixels, with TorchRL transforms.

    Frames are rendered directly at ``image_size`` (no resize) through dm_control's pixels
    wrapper and wrapped with :class:`~torchrl.envs.DMControlWrapper`.

    Args:
        task: ``"domain_task"``, e.g. ``"walker_walk"``, ``"cheetah_run"``, ``"ball_in_cup_catch"``.
        image_size: rendered height and width.
        camera_id: dm_control camera index.
        proprio: also return the proprioceptive vectors (float32, flat 1-D, dm_control names).
        action_repeat: control steps per env step (rewards summed, only the last frame
            rendered; a repeat cut short by the episode end stops there).
        seed: seeds the task's random state (initial states) and the injected audio.
        audio_dim: if > 0, add an ``audio`` observation of Gaussian noise of this length.
        audio_noise_std: standard deviation of the injected audio noise.
        device: device of the output tensors.

    Output keys: ``pixels`` (uint8 ``[3, image_size, image_size]``), the proprio keys if
    ``proprio`` (``position``, ``velocity``, ...), ``audio`` if ``audio_dim > 0``,
    ``is_init`` (InitTracker), ``step_count`` (StepCounter, counts env steps), plus
    float32 ``action`` / ``reward`` and ``done`` / ``terminated`` / ``truncated``.

    Example:
        >>> env = make_dmc_env("cheetah_run", seed=0)
        >>> env.reset()["pixels"].shape
        torch.Size([3, 64, 64])
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be > 0, got {image_size!r}")
    if action_repeat < 1:
        raise ValueError(f"action_repeat must be >= 1, got {action_repeat!r}")
    check_audio_args(audio_dim, audio_noise_std)

    suite, pixels = _import_dm_control()
    domain, task_name = split_task(task, suite.ALL_TASKS)
    dm_env = suite.load(domain, task_name, task_kwargs={"random": seed})
    proprio_specs = dm_env.observation_spec()
    if action_repeat > 1:
        dm_env = _ActionRepeat(dm_env, action_repeat)
    dm_env = pixels.Wrapper(
        dm_env,
        pixels_only=not proprio,
        render_kwargs={"height": image_size, "width": image_size, "camera_id": camera_id},
    )

    env = TransformedEnv(DMControlWrapper(dm_env, device=device))
    env.append_transform(DoubleToFloat())
    env.append_transform(PermuteTransform((-1, -3, -2), in_keys=["pixels"]))
    if proprio:
        # A few tasks (manipulator, stacker) have matrix observations; the encoder wants vectors.
        matrices = [key for key, spec in proprio_specs.items() if len(spec.shape) > 1]
        if matrices:
            env.append_transform(FlattenObservation(-2, -1, in_keys=matrices))
    if audio_dim > 0:
        env.append_transform(AudioInjection(audio_dim, audio_noise_std, seed=seed))
    env.append_transform(InitTracker())
    env.append_transform(StepCounter())
    return env
