"""Tests for torchrl_vta.envs: registry, dmc and atari builders, transforms."""

import math
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from torchrl_vta.envs import (
    AudioInjection,
    CenterAudio,
    ResizeImage,
    env_options,
    make_atari_env,
    make_dmc_env,
    make_env,
    register_env,
    registered_envs,
)
from torchrl_vta.envs import registry as registry_module


# --------------------------------------------------------------------------- registry


def test_import_does_not_load_simulators():
    code = (
        "import sys, torchrl_vta.envs; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dm_control', 'ale_py')]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_env_lists_valid_names():
    with pytest.raises(ValueError, match="unknown env 'nope'.*atari, balls, dmc, highway, maze"):
        make_env("nope")


def test_unknown_option_is_rejected_before_import(monkeypatch):
    # dm_control made unimportable: the option check must fire first.
    monkeypatch.setitem(sys.modules, "dm_control", None)
    with pytest.raises(ValueError, match="'taks'.*'dmc'.*valid options: task, image_size"):
        make_env("dmc", taks="walker_walk")
    monkeypatch.setitem(sys.modules, "ale_py", None)
    with pytest.raises(ValueError, match="'sond'.*'atari'.*sound"):
        make_env("atari", sond=True)


def test_missing_dependencies_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)
    with pytest.raises(ImportError, match=r'pip install "torchrl_vta\[dmc\]"'):
        make_env("dmc")
    monkeypatch.setitem(sys.modules, "ale_py", None)
    with pytest.raises(ImportError, match=r'pip install "torchrl_vta\[atari\]"'):
        make_env("atari")


def test_register_env_and_options(monkeypatch):
    monkeypatch.setattr(registry_module, "_BUILDERS", dict(registry_module._BUILDERS))
    calls = []

    def build(*, size=3):
        calls.append(size)
        return make_atari_env("Pong", sound=False, image_size=size)

    register_env("toy", build)
    assert "toy" in registered_envs()
    assert env_options("toy") == {"size": 3}
    assert make_env("toy", size=8).reset()["pixels"].shape == (3, 8, 8)
    assert calls == [8]
    with pytest.raises(ValueError, match="already registered"):
        register_env("toy", build)
    with pytest.raises(ValueError, match="'colour'"):
        make_env("toy", colour=1)
    assert calls == [8]


# --------------------------------------------------------------------------- dmc


@pytest.fixture(scope="module")
def walker():
    return make_dmc_env("walker_walk", seed=0)


def test_dmc_specs_and_pixels(walker):
    check_env_specs(walker)
    td = walker.rollout(12)
    pixels = td["next", "pixels"]
    assert pixels.shape == (12, 3, 64, 64) and pixels.dtype == torch.uint8
    assert (pixels[1:] != pixels[:-1]).flatten(1).any(1).all(), "frames should change every step"
    assert td["action"].dtype == torch.float32 and td["action"].shape == (12, 6)
    assert td["next", "reward"].dtype == torch.float32
    assert td["is_init"][0].item() and not td["is_init"][1:].any()
    assert td["next", "step_count"].squeeze(-1).tolist() == list(range(1, 13))
    # No proprio, no audio, no episode_reward by default.
    assert set(walker.observation_spec.keys()) == {"pixels", "is_init", "step_count"}


def test_dmc_proprio_and_injected_audio():
    env = make_dmc_env("cheetah_run", proprio=True, audio_dim=16, seed=0, image_size=32)
    check_env_specs(env)
    td = env.reset()
    assert td["position"].shape == (8,) and td["position"].dtype == torch.float32
    assert td["velocity"].shape == (9,) and td["velocity"].dtype == torch.float32
    assert td["pixels"].shape == (3, 32, 32)
    assert td["audio"].shape == (16,) and td["audio"].dtype == torch.float32


@pytest.mark.parametrize("repeat", [1, 2])
def test_dmc_action_repeat_steps_physics(repeat):
    env = make_dmc_env("cheetah_run", action_repeat=repeat, seed=0, image_size=16)
    env.rollout(5)
    dm_env = env.base_env._env
    assert dm_env.physics.data.time == pytest.approx(5 * repeat * dm_env.control_timestep())


def test_dmc_action_repeat_stops_at_episode_end():
    from dm_control import suite

    from torchrl_vta.envs.dmc import _ActionRepeat

    # cartpole: 0.01 s control step, so a 0.05 s limit gives 5 control steps: 2 + 2 + 1.
    raw = suite.load("cartpole", "balance", task_kwargs={"time_limit": 0.05})
    env = _ActionRepeat(raw, 2)
    env.reset()
    action = torch.zeros(1).numpy()
    timesteps = [env.step(action) for _ in range(3)]
    assert [t.last() for t in timesteps] == [False, False, True]
    assert timesteps[-1].discount == 1.0  # time limit: truncation, not termination
    assert 1.0 < timesteps[0].reward <= 2.0 and timesteps[-1].reward <= 1.0


def test_dmc_seed_reproducible_and_bad_task():
    first = make_dmc_env("walker_walk", seed=3, image_size=16).reset()["pixels"]
    again = make_dmc_env("walker_walk", seed=3, image_size=16).reset()["pixels"]
    other = make_dmc_env("walker_walk", seed=4, image_size=16).reset()["pixels"]
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ValueError, match="unknown dm_control task 'walker_walkk'.*walker_walk"):
        make_dmc_env("walker_walkk")
    with pytest.raises(ValueError, match="action_repeat"):
        make_dmc_env("walker_walk", action_repeat=0)


# --------------------------------------------------------------------------- atari


def test_pong_sound_is_real_audio():
    env = make_env("atari", game="Pong", seed=0)
    check_env_specs(env)
    assert env.observation_spec["audio"].shape == (512,)
    td = env.rollout(200)
    audio = td["next", "audio"]
    assert audio.dtype == torch.float32 and audio.shape == (200, 512)
    assert audio.min() >= -1.0 and audio.max() < 1.0
    assert not torch.equal(audio.amax(0), audio.amin(0)), "Pong's sound should change over 200 steps"
    pixels = td["next", "pixels"]
    assert pixels.shape == (200, 3, 64, 64) and pixels.dtype == torch.uint8
    assert td["action"].shape == (200, 6) and (td["action"].sum(-1) == 1).all()  # one-hot
    assert td["is_init"][0].item()


def test_atari_variants_and_errors():
    env = make_atari_env("Pong", sound=False, grayscale=True, seed=0)
    check_env_specs(env)
    assert env.reset()["pixels"].shape == (1, 64, 64)
    assert "audio" not in env.observation_spec.keys()
    with pytest.raises(ValueError, match="unknown Atari game 'Pongg'. Did you mean Pong"):
        make_atari_env("Pongg")
    with pytest.raises(ValueError, match="already gives the game's audio"):
        make_atari_env("Pong", sound=True, audio_dim=8)


def test_atari_seed_reproducible():
    rollouts = []
    for seed in (1, 1, 2):
        torch.manual_seed(0)  # same random actions each time
        rollouts.append(make_atari_env("Breakout", seed=seed).rollout(60)["next", "pixels"])
    assert torch.equal(rollouts[0], rollouts[1])
    assert not torch.equal(rollouts[0], rollouts[2])


# --------------------------------------------------------------------------- transforms


def test_audio_injection_statistics_and_spec():
    env = make_atari_env("Pong", sound=False, audio_dim=64, audio_noise_std=0.5, seed=0)
    spec = env.observation_spec["audio"]
    assert spec.shape == (64,) and spec.dtype == torch.float32
    check_env_specs(env)
    td = env.rollout(100)
    audio = torch.cat([td["audio"], td["next", "audio"][-1:]])
    n = audio.numel()
    assert abs(audio.mean().item()) < 5 * 0.5 / math.sqrt(n)
    assert audio.std().item() == pytest.approx(0.5, rel=0.05)
    assert not torch.equal(td["audio"][1], td["next", "audio"][1]), "fresh noise every step"


def test_audio_injection_silence_seed_and_errors():
    td = TensorDict(batch_size=[4])
    assert torch.equal(AudioInjection(5, noise_std=0.0)(td.clone())["audio"], torch.zeros(4, 5))
    a = AudioInjection(5, seed=7)(td.clone())["audio"]
    b = AudioInjection(5, seed=7)(td.clone())["audio"]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="audio_dim"):
        AudioInjection(-1)
    with pytest.raises(ValueError, match="noise_std"):
        AudioInjection(4, noise_std=-0.1)
    with pytest.raises(ValueError, match="noise_std"):
        AudioInjection(4, noise_std=float("nan"))
    env = make_atari_env("Pong")
    with pytest.raises(ValueError, match="already has an observation 'audio'"):
        env.append_transform(AudioInjection(4))
        env.observation_spec


def test_builders_validate_audio_args_before_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)
    monkeypatch.setitem(sys.modules, "ale_py", None)
    with pytest.raises(ValueError, match="audio_dim"):
        make_env("dmc", audio_dim=-2)
    with pytest.raises(ValueError, match="audio_noise_std"):
        make_env("atari", sound=False, audio_dim=4, audio_noise_std=-1.0)


def test_resize_image_and_center_audio():
    resize = ResizeImage((20, 30))
    flat = torch.full((2, 5, 3, 64, 48), 200, dtype=torch.uint8)
    out = resize(TensorDict(pixels=flat, batch_size=[2, 5]))["pixels"]
    assert out.shape == (2, 5, 3, 20, 30) and out.dtype == torch.uint8
    assert (out == 200).all(), "a constant image must stay constant (no rounding drift)"
    smooth = resize(TensorDict(pixels=torch.rand(3, 64, 48)))["pixels"]
    assert smooth.shape == (3, 20, 30) and smooth.dtype == torch.float32
    samples = torch.tensor([0, 128, 255], dtype=torch.uint8)
    assert CenterAudio()(TensorDict(audio=samples))["audio"].tolist() == [-1.0, 0.0, 127 / 128]
