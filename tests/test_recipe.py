"""Smoke tests of examples/vta_dreamer.py and the recipe builders (tiny preset, CPU)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from torchrl_vta.agent import Agent, Learner
from torchrl_vta.config import RecipeConfig
from torchrl_vta.envs import make_env
from torchrl_vta.modules import TemperatureSchedule
from torchrl_vta.checkpoint import Checkpointer
from torchrl_vta.recipe import make_logger, make_replay_buffer
from torchrl_vta.viz import plot_learning_curves

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "vta_dreamer.py"


def load_script():
    spec = importlib.util.spec_from_file_location("vta_dreamer_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config(*overrides) -> RecipeConfig:
    load_script()  # registers the schema
    with initialize_config_dir(str(ROOT / "configs"), version_base=None):
        cfg = compose("vta_dreamer", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


def scalars(run: Path, name: str):
    path = run / "logs" / "vta_dreamer" / "scalars" / f"{name}.csv"
    return [line.split(",") for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "env_overrides",
    [
        ["env=dmc"],
        ["env=atari", "env.options.game=Pong"],
    ],
    ids=["dmc", "atari"],
)
def test_train_checkpoint_and_resume(tmp_path, env_overrides):
    script = load_script()
    run = tmp_path / "run"
    overrides = [*env_overrides, "model=tiny", f"output_dir={run}", "collector.total_frames=160"]
    first = script.train(config(*overrides))
    assert first["frames"] == 160 and first["updates"] > 0
    assert (run / "checkpoints" / "LATEST").exists()
    assert list((run / "videos").glob("eval_*.gif"))
    assert list((run / "pictures").glob("openloop_*.png"))
    assert scalars(run, "train/loss_reco") and scalars(run, "eval/return")

    state = Checkpointer(run / "checkpoints").load()
    assert state["counters"]["frames"] == 160

    second = script.train(config(*overrides[:-1], "collector.total_frames=200", "resume=true"))
    assert second["frames"] == 200
    assert second["updates"] > first["updates"]
    steps = [int(row[0]) for row in scalars(run, "eval/return")]
    assert steps[-1] == 200 and 160 in steps
    curves = plot_learning_curves({"run": run}, tmp_path / "curves.png")
    assert curves.stat().st_size > 0
    # The replay came back with the checkpoint: 160 restored + 40 new steps.
    resumed = Checkpointer(run / "checkpoints")
    buffer = make_replay_buffer(config(*overrides), tmp_path / "scratch")
    resumed.load(buffer)
    assert len(buffer) == 200


def test_three_levels_train_resume_and_log_every_level(tmp_path):
    script = load_script()
    run = tmp_path / "run"
    overrides = ["env=balls", "+env.options.scene_every=2", "model=tiny", "model.levels=3",
                 f"output_dir={run}", "collector.total_frames=120"]
    assert script.train(config(*overrides))["frames"] == 120
    second = script.train(config(*overrides[:-1], "collector.total_frames=160", "resume=true"))
    assert second["frames"] == 160
    for name in ("train/loss_boundary_level2", "train/loss_kl_level2", "train/loss_boundary",
                 "eval/boundary_f1_tau1_level2", "eval/boundary_f1_tau1"):
        assert scalars(run, name), name
    assert list((run / "pictures").glob("openloop_*.png"))


def test_resume_drops_what_a_killed_run_logged_after_its_checkpoint(tmp_path):
    scalars_dir = tmp_path / "logs" / "vta_dreamer" / "scalars"
    (scalars_dir / "eval").mkdir(parents=True)
    (scalars_dir / "eval" / "return.csv").write_text("2000,1.0\n4000,2.0\n6000,3.0\n")
    logger = make_logger(RecipeConfig(), tmp_path / "logs", "vta_dreamer", resume_step=4000)
    logger.log_scalar("eval/return", 9.0, step=6000)
    steps = [row[0] for row in scalars(tmp_path, "eval/return")]
    assert steps == ["2000", "4000", "6000"]
    assert scalars(tmp_path, "eval/return")[-1][1].startswith("9")


@pytest.mark.parametrize("levels", [2, 3])
def test_learner_checkpoint_resumes_bit_for_bit(tmp_path, levels):
    env = make_env("maze", image_size=16, max_steps=30, seed=0)
    batch = torch.stack([env.rollout(12, break_when_any_done=False) for _ in range(2)])

    def fresh():
        torch.manual_seed(0)
        agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)),
                               levels=levels)
        agent.world_model.rssm.segment_policy.schedule = TemperatureSchedule(1.0, 0.1, 0.5, 1)
        return agent, Learner(agent, horizon=3, model_lr=1e-3)

    agent, learner = fresh()
    for _ in range(2):
        learner.update(batch.clone())
    # The learner anneals the segment policy's temperature to its update count.
    assert agent.world_model.rssm.temperature == pytest.approx(0.1 + 0.9 * 0.25)
    Checkpointer(tmp_path).save({"agent": agent.state_dict(), "learner": learner.state_dict()})
    torch.manual_seed(123)
    reference = learner.update(batch.clone())

    agent2, learner2 = fresh()
    state = Checkpointer(tmp_path).load()
    agent2.load_state_dict(state["agent"])
    learner2.load_state_dict(state["learner"])
    assert agent2.world_model.rssm.temperature == pytest.approx(0.1 + 0.9 * 0.25)
    torch.manual_seed(123)
    resumed = learner2.update(batch.clone())
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key
    for (name, p1), p2 in zip(agent.named_parameters(), agent2.parameters()):
        assert torch.equal(p1, p2), name


def run_cli(*overrides):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *overrides],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["env=dmcx"], "env/dmcx"),
        (["replay.batch_sise=2"], "batch_sise"),
        (["replay.batch_size=abc"], "batch_size"),
        (["model.levels=0"], "model.levels=0 must be an int >= 1"),
        (["env.name=carla"], "env.name='carla' is not one of"),
        (["env.options.tsk=walker_walk"], "Key 'tsk' is not in struct"),
        (["+env.options.tsk=walker_walk"], "unknown option(s) 'tsk'"),
    ],
)
def test_bad_config_fails_fast_with_a_clear_message(overrides, message, tmp_path):
    result = run_cli(*overrides, "model=tiny", f"output_dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    # Nothing was trained: no checkpoint was written.
    assert not (tmp_path / "checkpoints").exists()


def test_config_validation_names_the_key():
    cfg = RecipeConfig()
    cfg.eval.openloop_context = 100
    with pytest.raises(ValueError, match="eval.openloop_context"):
        cfg.validate()
    cfg = RecipeConfig(resume=True, output_dir=None)
    with pytest.raises(ValueError, match="resume=true needs output_dir"):
        cfg.validate()


# ---------------------------------------------------------------- reliability (issue 14)
import logging

from torchrl_vta.config_resume import resume_config
from torchrl_vta.recipe import TRAJ_KEY, configure_threads
from torchrl_vta.rundir import RunDirectoryError, claim_run_dir

QUICK = ["env=balls", "model=tiny", "collector.frames_per_batch=20", "collector.init_random_frames=40",
         "collector.train_ratio=4", "checkpoint.every_frames=20", "eval.every_frames=20",
         "eval.max_steps=5", "threads=1"]


def test_run_dir_protection_resume_from_saved_config_and_small_fixes(tmp_path):
    script = load_script()
    run = tmp_path / "run"
    first = script.train(config(*QUICK, f"output_dir={run}", "collector.total_frames=60"))
    assert first["frames"] == 60
    # 12: no open-loop picture before the first update (updates start at 40 frames)...
    assert (run / "videos" / "eval_20.gif").exists() and not (run / "pictures" / "openloop_20.png").exists()
    assert (run / "pictures" / "openloop_60.png").exists()
    # ... no empty CSV-logger videos folder; a checkpoint does not split the running episode.
    assert not (run / "logs" / "vta_dreamer" / "videos").exists()
    buffer = make_replay_buffer(config(*QUICK, f"output_dir={run}"), tmp_path / "scratch")
    Checkpointer(run / "checkpoints").load(buffer)
    assert buffer._storage._storage[:60].get(TRAJ_KEY).unique().numel() == 1  # one 500-step episode

    # 4: a fresh run on it is refused; a second live run is refused by the lock.
    with pytest.raises(RunDirectoryError, match="already holds a run .*resume=true.*overwrite=true"):
        script.train(config(*QUICK, f"output_dir={run}"))
    lock = claim_run_dir(run, resume=True)
    with pytest.raises(RunDirectoryError, match="in use by another live run"):
        claim_run_dir(run, resume=True)
    lock.close()

    # 5: resume from the saved config: only the keys given change (here from the defaults).
    defaults = config("resume=true", f"output_dir={run}", "collector.total_frames=80")
    with pytest.raises(ValueError, match=r"replay.seq_len \(8 in the run, 32 given\)"):
        script.train(defaults, ["collector.total_frames", "replay.seq_len"])
    second = script.train(defaults, ["collector.total_frames", "output_dir", "resume"])
    assert second["frames"] == 80 and second["updates"] > first["updates"]
    # 12: resuming a finished run trains nothing.
    again = script.train(config("resume=true", f"output_dir={run}"), ["output_dir", "resume"])
    assert again["frames"] == 80 and again["updates"] == second["updates"]

    # overwrite=true starts over.
    third = script.train(config(*QUICK, f"output_dir={run}", "collector.total_frames=60", "overwrite=true"))
    assert third["frames"] == 60
    assert [int(r[0]) for r in scalars(run, "eval/return")] == [20, 40, 60]


def test_resume_config_keeps_the_saved_values():
    import dataclasses

    saved = dataclasses.asdict(RecipeConfig())
    saved["model"]["preset"] = "test"
    requested = RecipeConfig(resume=True, output_dir="x", device="cpu")
    merged = resume_config(saved, requested, ["device"])  # model.preset not given: kept
    assert merged.model.preset == "test" and merged.device == "cpu"
    with pytest.raises(ValueError, match=r"model.preset \('test' in the run, 'cpu' given\)"):
        resume_config(saved, requested, ["device", "model.preset"])
    with pytest.raises(ValueError, match="model.preset"):
        resume_config(saved, requested)  # every differing key counts as given


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("collector.train_ratio", 0, "collector.train_ratio=0 trains nothing"),
        ("collector.init_random_frames", 10**6, r"collector.init_random_frames \(1000000\) >= collector.total_frames"),
        ("optim.model_clip", 0, "optim.model_clip must be > 0"),
        ("device", "cuda", "device=cuda: "),
        ("env.options", {"task": 123}, r"env.options.task=123 \(int\) should be a str"),
        ("model.rssm", {"max_seg_lenn": 3}, "unknown key.* model.rssm.max_seg_lenn"),
        ("loss.world_model", {"kl_dynn": 1}, "unknown key.* loss.world_model.kl_dynn"),
        ("env.options", {"max_steps": 10}, r"replay.seq_len \(64\) is longer than every episode"),
        ("threads", -1, "threads must be >= 0"),
    ],
)
def test_settings_that_train_nothing_or_fail_late_are_rejected(key, value, message):
    if key == "device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    cfg = RecipeConfig()
    if key.startswith("env.options"):
        cfg.env.name = "balls" if "max_steps" in value else "dmc"
    obj, *path = key.split(".")
    target = cfg if not path else getattr(cfg, obj)
    setattr(target, path[-1] if path else obj, value)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_config_tree_readme_overrides_threads_and_log_every(caplog):
    cfg = config("model=tiny", "+model.rssm.limit_mode=off", "output_dir=x")
    assert cfg.validate().model.rssm["limit_mode"] == "off"
    assert cfg.logger.log_every == 1  # 12: tiny's value is not overridden by logger/csv.yaml
    assert config("output_dir=x").threads == 0
    expected = max(1, min(8, len(__import__("os").sched_getaffinity(0)) // 2))
    try:
        assert configure_threads(0) == expected == torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    cfg = config("model=tiny", "replay.batch_size=100000", "output_dir=x")
    with caplog.at_level(logging.WARNING):
        cfg.validate()
    assert "exceeds replay.capacity" in caplog.text
    script = load_script()
    with pytest.raises(ValueError, match="resume=true needs output_dir"):
        script._default_run_dir(None, True)


def test_wandb_offline_needs_no_api_key_and_tensorboard_is_in_all(tmp_path, monkeypatch):
    text = (ROOT / "pyproject.toml").read_text()
    assert 'tensorboard = ["tensorboard' in text and "plot,tensorboard]" in text
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = RecipeConfig()
    cfg.logger.backend = "wandb"
    logger = make_logger(cfg, tmp_path / "logs", "demo")
    logger.log_scalar("x", 1.0, step=1)
    import wandb

    wandb.finish()
    assert type(logger).__name__ == "WandbLogger" and list((tmp_path / "logs").rglob("*.wandb"))


def test_make_learner_passes_every_loss_and_optim_field_and_defaults_are_the_learners():
    import inspect

    from torchrl_vta.config import LEARNER_ARGUMENTS
    from torchrl_vta.recipe import make_agent, make_learner

    signature = inspect.signature(Learner.__init__).parameters
    cfg = RecipeConfig()
    for section, names in LEARNER_ARGUMENTS.items():
        for name, argument in names.items():
            assert getattr(getattr(cfg, section), name) == signature[argument].default, name
    cfg.model.preset = "test"
    cfg.loss.horizon, cfg.loss.gamma, cfg.loss.lmbda = 3, 0.9, 0.5
    cfg.loss.entropy_coef, cfg.loss.slow_critic_tau = 0.01, 0.5
    cfg.optim.model_lr, cfg.optim.actor_clip = 0.123, 7.0
    cfg.optim.max_skipped_updates = 4
    learner = make_learner(make_agent(make_env("maze", image_size=16), cfg), cfg)
    assert learner.actor_loss.horizon == 3 and learner.gamma == 0.9 and learner.lmbda == 0.5
    assert learner.actor_loss.entropy_coef == 0.01
    assert learner.target_updater.eps == pytest.approx(0.5)
    assert learner.optimizers[0].param_groups[0]["lr"] == 0.123
    assert learner.clips[1] == 7.0 and learner.guard.max_consecutive == 4


def test_env_factory_adds_reward_sum_and_the_recipe_logs_each_finished_episode(tmp_path):
    """``episode_reward`` is the running return of the current episode (reset with it), and
    the recipe logs one ``train/episode_return`` per finished episode."""
    from torchrl_vta.recipe import make_env_factory

    cfg = config("env=highway", "env.options.max_steps=7")
    env = make_env_factory(cfg)()
    rollout = env.rollout(20, break_when_any_done=False)
    reward = rollout["next", "reward"].squeeze(-1)
    done = rollout["next", "done"].squeeze(-1)
    assert done.sum() >= 2 and (reward > 0).any()
    running, expected = 0.0, []
    for r, d in zip(reward.tolist(), done.tolist()):
        running += r
        expected.append(running)
        running = 0.0 if d else running
    torch.testing.assert_close(rollout["next", "episode_reward"].squeeze(-1), torch.tensor(expected))

    script = load_script()
    run = tmp_path / "run"
    script.train(config("env=maze", "env.options.image_size=16", "env.options.max_steps=10",
                        "model=tiny", f"output_dir={run}", "collector.total_frames=60",
                        "collector.frames_per_batch=20", "collector.init_random_frames=40",
                        "eval.every_frames=1000", "threads=1"))
    assert len(scalars(run, "train/episode_return")) == 6


def test_pictures_and_videos_reach_the_tensorboard_and_wandb_loggers(tmp_path, monkeypatch):
    """The recipe sends its open-loop strip and evaluation episode to the run's logger, with
    the frame count as step; wandb (offline) stores the image and the video as media."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script = load_script()
    run = tmp_path / "tb"
    script.train(config(*QUICK, "logger=tensorboard", f"output_dir={run}", "collector.total_frames=60"))
    events = EventAccumulator(str(run / "logs" / "vta_dreamer"), size_guidance={"images": 0})
    events.Reload()
    # TensorBoard keeps a logged video as an animated image: both land under "images".
    assert {"eval/openloop", "eval/episode"} <= set(events.Tags()["images"])
    strips = events.Images("eval/openloop")
    # The strip as drawn (the PNG in pictures/ is the same image upscaled twice).
    import imageio.v2 as imageio

    png = imageio.imread(run / "pictures" / "openloop_60.png")
    assert [s.step for s in strips] == [40, 60] and 2 * strips[-1].width == png.shape[1]
    assert [e.step for e in events.Images("eval/episode")] == [20, 40, 60]

    from torchrl_vta import log_image, log_video

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = RecipeConfig()
    cfg.logger.backend = "wandb"
    logger = make_logger(cfg, tmp_path / "wandb", "demo")
    import numpy as np
    import wandb

    assert log_image(logger, "eval/openloop", np.full((8, 12, 3), 200, np.uint8), step=5)
    assert log_video(logger, "eval/episode", torch.rand(4, 3, 8, 8), step=5)
    wandb.finish()
    media = {path.suffix for path in (tmp_path / "wandb").rglob("media/**/*") if path.is_file()}
    assert {".png", ".gif"} <= media, media
    assert not log_image(make_logger(RecipeConfig(), tmp_path / "csv", "demo"), "x",
                         np.zeros((4, 4, 3), np.uint8), step=1)
