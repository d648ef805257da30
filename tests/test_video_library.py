"""torchrl_vta.video as a library: a user's own world, registered, trains and is scored
through the public API, without the example script."""

import json

import pytest
import torch
from tensordict import TensorDict

from torchrl_vta import generate_dataset, register_dataset, registered_datasets
from torchrl_vta.video import DatasetConfig, run_video_experiment, validate_config


def blinking_square(num_sequences, seq_len, *, seed, image_size, rate: float = 0.2):
    """A grey square that changes brightness at random frames (the events)."""
    generator = torch.Generator().manual_seed(seed)
    event = torch.rand(num_sequences, seq_len, generator=generator) < rate
    event[:, 0] = False
    level = 60 + 150 * (event.cumsum(1) % 2)
    pixels = torch.zeros(num_sequences, seq_len, 3, image_size, image_size, dtype=torch.uint8)
    pixels[..., 8:24, 8:24] = level[..., None, None, None].to(torch.uint8)
    return TensorDict(pixels=pixels, event=event[..., None], batch_size=[num_sequences, seq_len])


def test_a_registered_world_trains_and_is_scored(tmp_path):
    register_dataset("blinking_square", blinking_square, overwrite=True)
    assert "blinking_square" in registered_datasets()
    config = validate_config({
        "model": {"name": "agent", "size": "tiny", "init_size": 2, "seq_size": 6},
        "dataset": {"name": "blinking_square", "num_sequences": 4, "eval_sequences": 4,
                    "seq_len": 20, "options": {"rate": 0.25}},
        "eval": {"strip_sequences": 2, "generate_sequences": 1, "jumpy_steps": 2},
        "steps": 2, "batch_size": 2, "data_dir": str(tmp_path / "data"),
    })
    metrics = run_video_experiment(config, tmp_path / "run")
    held_out = generate_dataset("blinking_square", 8, 20, seed=0, rate=0.25)[4:]
    # Scored against the registered world's own events: 2 windows of 10 per sequence, the
    # 6 modelled frames of each, after the first.
    events = held_out["event"][..., 0].reshape(8, 10)[:, 2:8][:, 1:]
    assert metrics["forcing_off"]["event_rate"] == pytest.approx(events.float().mean().item())
    assert metrics["dataset"] == "blinking_square"
    stored = json.loads(next((tmp_path / "data").glob("*/vta_dataset.json")).read_text())
    assert stored["options"] == {"rate": 0.25}
    assert (tmp_path / "run" / "boundary_strip.png").is_file()


def test_a_bad_generator_or_name_fails_naming_what_to_fix():
    def float_events(num_sequences, seq_len, *, seed, image_size):
        data = blinking_square(num_sequences, seq_len, seed=seed, image_size=image_size)
        data["event"] = data["event"].float()
        return data

    register_dataset("float_events", float_events, overwrite=True)
    with pytest.raises(ValueError, match="key 'event' must be torch.bool"):
        generate_dataset("float_events", 2, 5, seed=0)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("float_events", float_events)
    with pytest.raises(TypeError, match=r"keyword arguments \['seed', 'image_size'\]"):
        register_dataset("no_seed", lambda n, t: None)
    with pytest.raises(ValueError, match="register_dataset adds one"):
        DatasetConfig(name="no_such_world")


def test_three_levels_train_and_are_scored_per_level_on_the_nested_world(tmp_path):
    config = validate_config({
        "model": {"name": "agent", "size": "tiny", "levels": 3, "init_size": 2, "seq_size": 8,
                  "rssm": {"boundary_kind": "surprise"}},
        "dataset": {"name": "nested_balls", "num_sequences": 4, "eval_sequences": 4,
                    "seq_len": 20, "image_size": 32, "options": {"num_balls": 1}},
        "eval": {"strip_sequences": 2, "generate_sequences": 1, "jumpy_steps": 2},
        "steps": 2, "batch_size": 2, "data_dir": str(tmp_path / "data"),
    })
    metrics = run_video_experiment(config, tmp_path / "run")
    held_out = generate_dataset("nested_balls", 8, 20, seed=0, image_size=32, num_balls=1)[4:]
    # One window of 12 frames per sequence; its 8 modelled frames, after the first.
    scenes = held_out["scene_event"][:, :12, 0][:, 2:10][:, 1:]
    level2 = metrics["forcing_off"]["level2"]
    assert level2["event_rate"] == pytest.approx(scenes.float().mean().item())
    assert set(level2["f1"]) == {"0", "1", "2"}
    assert (tmp_path / "run" / "boundary_strip.png").is_file()
    with pytest.raises(ValueError, match="model.levels must be an int >= 2"):
        validate_config({"model": {"name": "agent", "levels": 1}})
