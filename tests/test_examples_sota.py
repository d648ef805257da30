"""Smoke tests of examples/vta_dreamer.py in the form of TorchRL's sota-implementation tests.

One shell command per configuration, with overrides that shrink the run to
seconds, launched from the repository root as a user would type it. ``$RUN_DIR``
is the per-test output directory. Each run must finish and leave the outputs the
README promises: checkpoint, CSV scalars, evaluation GIF and open-loop strip.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tiny sizes (model=tiny), 80 env steps of which 40 random prefill, a low train
# ratio (a few updates), evaluation and checkpoint at the end of the run.
_TINY = """model=tiny \\
  collector.total_frames=80 \\
  collector.init_random_frames=40 \\
  collector.frames_per_batch=20 \\
  collector.train_ratio=4 \\
  eval.max_steps=20 \\
  logger.backend=csv"""

commands = {
    "balls": f"""python examples/vta_dreamer.py env=balls \\
  {_TINY} \\
  output_dir=$RUN_DIR
""",
    "balls_levels1": f"""python examples/vta_dreamer.py env=balls model.levels=1 \\
  {_TINY} \\
  output_dir=$RUN_DIR
""",
    "maze_two_envs": f"""python examples/vta_dreamer.py env=maze env.options.image_size=32 \\
  collector.num_envs=2 \\
  {_TINY} \\
  output_dir=$RUN_DIR
""",
    "balls_resume": f"""python examples/vta_dreamer.py env=balls \\
  {_TINY} \\
  collector.total_frames=60 \\
  output_dir=$RUN_DIR \\
&& python examples/vta_dreamer.py env=balls \\
  {_TINY} \\
  resume=true \\
  output_dir=$RUN_DIR
""",
}

_TIMEOUT_S = 300


def run_command(command: str, run_dir: Path) -> str:
    env = dict(os.environ)
    env.update(
        RUN_DIR=str(run_dir),
        MUJOCO_GL=env.get("MUJOCO_GL", "egl"),
        # One intra-op thread per run: the test workers share the cores.
        OMP_NUM_THREADS="1",
    )
    # `python` in the commands is the interpreter running the tests.
    command = command.replace("python examples/", f'"{sys.executable}" examples/')
    result = subprocess.run(
        command,
        shell=True,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"command failed with exit code {result.returncode}:\n{command}\n"
            f"--- output (last 4000 characters) ---\n{result.stdout[-4000:]}"
        )
    return result.stdout


def read_scalar(run_dir: Path, name: str) -> list[tuple[int, float]]:
    path = run_dir / "logs" / "vta_dreamer" / "scalars" / f"{name}.csv"
    with open(path) as handle:
        return [(int(row[0]), float(row[1])) for row in csv.reader(handle)]


@pytest.mark.parametrize("name", list(commands))
def test_commands(name, tmp_path):
    import torch

    run_dir = tmp_path / "run"
    output = run_command(commands[name], run_dir)
    assert "Done: 80 frames" in output

    from torchrl_vta.checkpoint import Checkpointer

    checkpoint = Checkpointer(run_dir / "checkpoints").load()
    assert checkpoint["counters"]["frames"] == 80
    assert int(checkpoint["learner"]["updates"]) > 0
    assert (run_dir / "videos" / "eval_80.gif").stat().st_size > 0
    assert (run_dir / "pictures" / "openloop_80.png").stat().st_size > 0
    reco = read_scalar(run_dir, "train/loss_reco")
    assert reco and all(value == value for _, value in reco)  # logged, no NaN
    assert read_scalar(run_dir, "eval/return")[-1][0] == 80

    levels = 1 if "levels1" in name else 2
    assert checkpoint["config"]["model"]["levels"] == levels
    boundary_logged = (run_dir / "logs" / "vta_dreamer" / "scalars" / "train" /
                       "boundary_rate.csv").exists()
    assert boundary_logged == (levels == 2)
    # Both worlds have true events: hierarchical runs score their READs against them.
    scored = (run_dir / "logs" / "vta_dreamer" / "scalars" / "eval" / "boundary_f1_tau1.csv")
    assert scored.exists() == (levels == 2)
    if levels == 2:
        assert 0 <= read_scalar(run_dir, "eval/boundary_f1_tau1")[-1][1] <= 1
        assert read_scalar(run_dir, "eval/event_rate")[-1][1] > 0
    if name.endswith("_resume"):
        assert "Resumed from" in output
        steps = [step for step, _ in read_scalar(run_dir, "eval/return")]
        assert 60 in steps and steps[-1] == 80
