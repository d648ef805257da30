"""Atari (ALE v5 through gymnasium) with optional real game sound as a TorchRL env."""

from __future__ import annotations

import difflib

import torch
from torchrl.envs import (
    EnvBase,
    GymWrapper,
    InitTracker,
    PermuteTransform,
    RenameTransform,
    StepCounter,
    TransformedEnv,
    UnsqueezeTransform,
)

from torchrl_vta.envs.transforms import AudioInjection, CenterAudio, ResizeImage, check_audio_args

__all__ = ["make_atari_env"]

_INSTALL_HINT = 'the "atari" env needs ale-py: pip install "torchrl_vta[atari]"'


def _import_ale():
    try:
        import ale_py
        import gymnasium as gym
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    gym.register_envs(ale_py)
    return gym


def _check_game(gym, game: str) -> None:
    prefix, suffix = "ALE/", "-v5"
    games = sorted(
        env_id[len(prefix) : -len(suffix)]
        for env_id in gym.registry
        if env_id.startswith(prefix) and env_id.endswith(suffix)
    )
    if game not in games:
        close = difflib.get_close_matches(game, games, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown Atari game {game!r}.{hint} Valid games: {', '.join(games)}")


def make_atari_env(
    game: str = "Pong",
    *,
    image_size: int = 64,
    frameskip: int = 4,
    repeat_action_probability: float = 0.25,
    sound: bool = True,
    grayscale: bool = False,
    seed: int | None = None,
    audio_dim: int = 0,
    audio_noise_std: float = 0.1,
    device: str | torch.device = "cpu",
) -> EnvBase:
    """Build an ALE v5 game (minimal action set, one-hot actions) with TorchRL transforms.

    ALE's own ``frameskip`` repeats each action (rewards summed, the last frame returned,
    no max-pooling) and ``repeat_action_probability`` makes actions sticky, as in the v5
    protocol (Machado et al., 2018). Frames are resized with :class:`ResizeImage`.

    Args:
        game: ALE game name as in ``ALE/<game>-v5``, e.g. ``"Pong"``, ``"Breakout"``.
        image_size: output height and width.
        frameskip: emulator frames per env step.
        repeat_action_probability: sticky-action probability.
        sound: return the game's audio: ALE's ``sound_obs``, the 512 unsigned 8-bit samples
            of the last emulated frame, as float32 ``(x - 128) / 128`` (silence is 0).
        grayscale: one-channel frames (``[1, H, W]``) instead of RGB.
        seed: seeds the emulator (sticky actions, game randomness) and injected audio.
        audio_dim: if > 0, add an ``audio`` observation of Gaussian noise of this length;
            only valid with ``sound=False`` (the game's own audio takes the key otherwise).
        audio_noise_std: standard deviation of the injected audio noise.
        device: device of the output tensors.

    Output keys: ``pixels`` (uint8 ``[3 or 1, image_size, image_size]``), ``audio``
    (float32 ``(512,)`` with ``sound``, ``(audio_dim,)`` when injected), ``is_init``,
    ``step_count``, one-hot ``action``, float32 ``reward`` and the done keys.

    Example:
        >>> env = make_atari_env("Pong", seed=0)
        >>> td = env.reset()
        >>> td["pixels"].shape, td["audio"].shape
        (torch.Size([3, 64, 64]), torch.Size([512]))
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be > 0, got {image_size!r}")
    if frameskip < 1:
        raise ValueError(f"frameskip must be >= 1, got {frameskip!r}")
    if not 0.0 <= repeat_action_probability <= 1.0:
        raise ValueError(
            f"repeat_action_probability must be in [0, 1], got {repeat_action_probability!r}"
        )
    check_audio_args(audio_dim, audio_noise_std)
    if sound and audio_dim > 0:
        raise ValueError(
            "audio_dim > 0 injects synthetic audio, but sound=True already gives the game's "
            "audio under 'audio'; pass sound=False to inject noise instead, or audio_dim=0"
        )

    gym = _import_ale()
    _check_game(gym, game)
    gym_env = gym.make(
        f"ALE/{game}-v5",
        obs_type="grayscale" if grayscale else "rgb",
        frameskip=frameskip,
        repeat_action_probability=repeat_action_probability,
        full_action_space=False,
        sound_obs=sound,
    )
    base_env = GymWrapper(gym_env, categorical_action_encoding=False, device=device)
    # With sound_obs the observation is a dict {"image", "sound"}; without it GymWrapper
    # names a bare RGB frame "pixels" and a bare grayscale frame "observation".
    native_keys = ["image", "sound"] if sound else list(base_env.observation_spec.keys())
    target_keys = ["pixels", "audio"] if sound else ["pixels"]
    env = TransformedEnv(base_env)
    if native_keys != target_keys:
        env.append_transform(RenameTransform(native_keys, target_keys))
    if sound:
        env.append_transform(CenterAudio(in_keys=["audio"]))
    if grayscale:
        env.append_transform(UnsqueezeTransform(-3, in_keys=["pixels"]))
    else:
        env.append_transform(PermuteTransform((-1, -3, -2), in_keys=["pixels"]))
    env.append_transform(ResizeImage(image_size, in_keys=["pixels"]))
    if audio_dim > 0:
        env.append_transform(AudioInjection(audio_dim, audio_noise_std, seed=seed))
    env.append_transform(InitTracker())
    env.append_transform(StepCounter())
    if seed is not None:
        env.set_seed(seed)
    return env
