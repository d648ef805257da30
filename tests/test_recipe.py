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


def test_resume_drops_what_a_killed_run_logged_after_its_checkpoint(tmp_path):
    scalars_dir = tmp_path / "logs" / "vta_dreamer" / "scalars"
    (scalars_dir / "eval").mkdir(parents=True)
    (scalars_dir / "eval" / "return.csv").write_text("2000,1.0\n4000,2.0\n6000,3.0\n")
    logger = make_logger(RecipeConfig(), tmp_path / "logs", "vta_dreamer", resume_step=4000)
    logger.log_scalar("eval/return", 9.0, step=6000)
    steps = [row[0] for row in scalars(tmp_path, "eval/return")]
    assert steps == ["2000", "4000", "6000"]
    assert scalars(tmp_path, "eval/return")[-1][1].startswith("9")


def test_learner_checkpoint_resumes_bit_for_bit(tmp_path):
    env = make_env("maze", image_size=16, max_steps=30, seed=0)
    batch = torch.stack([env.rollout(12, break_when_any_done=False) for _ in range(2)])

    def fresh():
        torch.manual_seed(0)
        agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        return agent, Learner(agent, horizon=3, model_lr=1e-3)

    agent, learner = fresh()
    for _ in range(2):
        learner.update(batch.clone())
    Checkpointer(tmp_path).save({"agent": agent.state_dict(), "learner": learner.state_dict()})
    torch.manual_seed(123)
    reference = learner.update(batch.clone())

    agent2, learner2 = fresh()
    state = Checkpointer(tmp_path).load()
    agent2.load_state_dict(state["agent"])
    learner2.load_state_dict(state["learner"])
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
        (["model.levels=3"], "model.levels=3 is not one of"),
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
