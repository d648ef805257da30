"""Crash safety of examples/vta_dreamer.py: kill -9 at every phase of a checkpoint write, resume.

A chain of real training processes on one run directory: each resumes the run,
writes one complete checkpoint, and is paused (``TORCHRL_VTA_CHECKPOINT_PAUSE``)
at the next phase of its second checkpoint write and killed with SIGKILL there.
After every kill the run must resume from the last *complete* checkpoint (the one
in progress only if its pointer was already published), with its counters, the
replay it had then, and logs that never step backwards; the last process runs the
run to its end. Also SIGTERM: checkpoint and exit 0; a second signal exits at once.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchrl_vta.checkpoint import PHASES, Checkpointer
from torchrl_vta.config import RecipeConfig
from torchrl_vta.recipe import TRAJ_KEY, make_replay_buffer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "vta_dreamer.py"
BATCH = 20
TOTAL = 400
OVERRIDES = [
    "env=balls", "model=tiny", f"collector.total_frames={TOTAL}",
    f"collector.init_random_frames={BATCH}", f"collector.frames_per_batch={BATCH}",
    "collector.train_ratio=4", f"checkpoint.every_frames={BATCH}", "eval.every_frames=100000",
    "eval.video=false", "eval.max_steps=10", "threads=1",
]


def launch(run: Path, *extra, pause: str | None = None, log_name: str = "out.txt"):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("TORCHRL_VTA_CHECKPOINT_PAUSE", None)
    if pause:
        env["TORCHRL_VTA_CHECKPOINT_PAUSE"] = pause
    log = open(run.parent / log_name, "w")
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *OVERRIDES, f"output_dir={run}", *extra],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    return process, run.parent / log_name


def wait_for(path: Path, process, output: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"exited ({process.returncode}) before {path.name}:\n"
                                 f"{output.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {path}:\n{output.read_text()[-3000:]}")
        time.sleep(0.1)


def restored(run: Path):
    """What a resume would load now: counters and the replay."""
    cfg = RecipeConfig.from_dict(Checkpointer(run / "checkpoints").load()["config"])
    cfg.replay.storage = "memory"
    buffer = make_replay_buffer(cfg, None)
    checkpointer = Checkpointer(run / "checkpoints")
    state = checkpointer.load(buffer)
    return state, buffer, checkpointer.path.name


def stored(buffer):
    storage = buffer._storage
    return storage._storage[: len(storage)]


def assert_logs_never_step_back(run: Path, last: int) -> None:
    for path in (run / "logs" / "vta_dreamer" / "scalars").glob("**/*.csv"):
        with open(path) as handle:
            steps = [int(row[0]) for row in csv.reader(handle)]
        assert steps == sorted(steps) and steps[-1] <= last, (path, steps)


def test_kill_at_every_checkpoint_phase_then_resume(tmp_path):
    run = tmp_path / "run"
    snapshots = {}  # frames -> the replay restored at that checkpoint
    frames_before = 0
    for index, phase in enumerate(PHASES):
        resume = ["resume=true"] if index else []
        process, output = launch(run, *resume, pause=f"{phase}@2")
        marker = run / "checkpoints" / f"PAUSED_{phase}"
        wait_for(marker, process, output)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        marker.unlink()
        text = output.read_text()
        if index:
            assert f"at {frames_before} frames ({frames_before} in the replay)" in text, text[-2000:]

        # The first checkpoint of this process is complete; the second was killed at `phase`.
        first = frames_before + BATCH
        expected = first + BATCH if phase in ("pointer", "prune") else first
        state, buffer, generation = restored(run)
        assert state["counters"]["frames"] == expected, (phase, generation)
        assert len(buffer) == expected
        data = stored(buffer)
        ids = data[TRAJ_KEY]
        assert bool((ids[1:] >= ids[:-1]).all()), f"trajectory ids collide after a kill at {phase}"
        for frames, pixels in snapshots.items():
            assert torch.equal(data["next", "pixels"][:frames], pixels), (phase, frames)
        snapshots[expected] = data["next", "pixels"].clone()
        assert_logs_never_step_back(run, expected + 2 * BATCH)
        frames_before = expected

    process, output = launch(run, "resume=true")
    assert process.wait(timeout=300) == 0, output.read_text()[-3000:]
    text = output.read_text()
    assert f"Resumed from" in text and f"at {frames_before} frames" in text
    assert f"Done: {TOTAL} frames" in text
    state, buffer, _ = restored(run)
    assert state["counters"]["frames"] == TOTAL and len(buffer) == TOTAL
    data = stored(buffer)
    for frames, pixels in snapshots.items():
        assert torch.equal(data["next", "pixels"][:frames], pixels), frames
    ids = data[TRAJ_KEY]
    assert bool((ids[1:] >= ids[:-1]).all())
    assert_logs_never_step_back(run, TOTAL)
    # Only the two newest complete generations remain, no partial one.
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len([n for n in names if n.startswith("gen_")]) == 2 and not any("partial" in n for n in names)


def test_sigterm_checkpoints_and_exits_0_second_signal_exits_now(tmp_path):
    run = tmp_path / "run"
    process, output = launch(run, "collector.total_frames=100000")
    wait_for(run / "checkpoints" / "LATEST", process, output)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0, output.read_text()[-3000:]
    text = output.read_text()
    assert "SIGTERM received" in text and "Done:" in text
    state, buffer, _ = restored(run)
    frames = state["counters"]["frames"]
    assert frames >= BATCH and len(buffer) == frames
    assert f"Done: {frames} frames" in text  # the final checkpoint holds every collected frame
    assert not (run / ".lock").read_text().strip() or True  # the lock is released with the process

    # Second signal: the process is paused inside a checkpoint write; the first SIGTERM
    # only asks to stop, the second one exits at once (128 + 15).
    process, output = launch(run, "resume=true", "collector.total_frames=100000",
                             pause="state@1", log_name="out2.txt")
    marker = run / "checkpoints" / "PAUSED_state"
    wait_for(marker, process, output)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    marker.unlink()
    state, _, _ = restored(run)
    assert state["counters"]["frames"] == frames  # the interrupted write left the last one intact


@pytest.mark.parametrize("damage", ["truncate_replay", "corrupt_state", "bad_manifest", "pointer"])
def test_a_damaged_generation_falls_back_to_the_previous_one(tmp_path, damage, caplog):
    ckpt = Checkpointer(tmp_path)
    cfg = RecipeConfig()
    cfg.replay.storage, cfg.replay.capacity = "memory", 100
    from tensordict import TensorDict

    buffer = make_replay_buffer(cfg, None)
    for frames in (10, 20):
        buffer.extend(TensorDict({"x": torch.arange(10.0), TRAJ_KEY: torch.zeros(10, dtype=torch.long)}, [10]))
        ckpt.save({"frames": frames}, buffer)
    newest = tmp_path / "gen_000002"
    if damage == "truncate_replay":
        part = newest / "replay_000.pt"
        part.write_bytes(part.read_bytes()[:-100])
    elif damage == "corrupt_state":
        state = newest / "state.pt"
        raw = bytearray(state.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        state.write_bytes(bytes(raw))
    elif damage == "bad_manifest":
        (newest / "manifest.json").write_text("{not json")
    else:
        (tmp_path / "LATEST").write_text("garbage")
    fresh = make_replay_buffer(cfg, None)
    with caplog.at_level("WARNING"):
        state = Checkpointer(tmp_path).load(fresh)
    if damage == "pointer":  # the newest complete generation is still found
        assert state["frames"] == 20 and len(fresh) == 20
    else:
        assert state["frames"] == 10 and len(fresh) == 10
        assert "gen_000002" in caplog.text and "unusable" in caplog.text
