"""Soak test of examples/vta_dreamer.py: random kill -9 + resume cycles and injected faults.

    python benchmarks/soak.py --kills 20 --out benchmarks/results/soak.md

One tiny run (env=balls model=tiny, checkpoint every 20 frames) is launched again and
again on one output_dir with resume=true. Each cycle either kills it with SIGKILL at a
random time, or injects a fault: NaN rewards in replayed batches, a corrupt / truncated
checkpoint file or manifest, a full disk (``shutil.disk_usage`` reporting 1 kB free), or
SIGTERM. After each cycle the restored checkpoint is checked: counters = replay size,
trajectory ids never step back, no CSV steps backwards, finite weights. The table says,
per cycle, what was restored and what was lost (frames collected after the last
complete checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "vta_dreamer.py"
sys.path.insert(0, str(ROOT))

from torchrl_vta.checkpoint import Checkpointer  # noqa: E402
from torchrl_vta.config import RecipeConfig  # noqa: E402
from torchrl_vta.recipe import TRAJ_KEY, make_replay_buffer  # noqa: E402

OVERRIDES = ["env=balls", "model=tiny", "collector.total_frames=1000000",
             "collector.init_random_frames=20", "collector.frames_per_batch=20",
             "collector.train_ratio=4", "checkpoint.every_frames=20", "eval.every_frames=200",
             "eval.max_steps=10", "threads=1", "replay.capacity=100000"]

# Fault wrappers run the script in a process with one function patched.
_NAN = """
import runpy, sys, torch
from torchrl_vta.agent import Learner
update = Learner.update
def poisoned(self, batch):
    if torch.rand(()) < 0.3:
        batch = batch.clone(); batch["next", "reward"][0, 0] = float("nan")
    return update(self, batch)
Learner.update = poisoned
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
_FULL_DISK = """
import runpy, shutil, sys
usage = shutil.disk_usage("/")
shutil.disk_usage = lambda path: usage._replace(free=1000)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def launch(run: Path, log: Path, *, wrapper: str | None = None, resume: bool = True):
    args = [str(SCRIPT), *OVERRIDES, f"output_dir={run}"] + (["resume=true"] if resume else [])
    command = [sys.executable, *(["-c", wrapper] if wrapper else []), *args]
    handle = open(log, "w")
    return subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def reached(run: Path) -> int:
    """Frames a process reached, from its CSV rows (before a resume truncates them)."""
    best = 0
    for path in (run / "logs" / "vta_dreamer" / "scalars").glob("**/*.csv"):
        with open(path) as handle:
            steps = [int(row[0]) for row in csv.reader(handle)]
        if steps != sorted(steps):
            raise AssertionError(f"{path} steps backwards")
        best = max(best, max(steps, default=0))
    return best


def check(run: Path) -> dict:
    ckpt = Checkpointer(run / "checkpoints")
    state = ckpt.load()
    cfg = RecipeConfig.from_dict(state["config"])
    cfg.replay.storage = "memory"
    buffer = make_replay_buffer(cfg, None)
    ckpt = Checkpointer(run / "checkpoints")
    state = ckpt.load(buffer)
    frames = state["counters"]["frames"]
    ids = buffer._storage._storage[: len(buffer)].get(TRAJ_KEY)
    assert len(buffer) == frames, (len(buffer), frames)
    assert bool((ids[1:] >= ids[:-1]).all()), "trajectory ids collide"
    assert all(torch.isfinite(v).all() for v in state["agent"].values() if v.is_floating_point())
    skipped = int(state["learner"]["guard.skipped"].sum())
    return {"frames": frames, "generation": ckpt.path.name, "skipped": skipped}


def wait_started(process, run: Path, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    latest = run / "checkpoints" / "LATEST"
    before = latest.stat().st_mtime_ns if latest.exists() else None
    while time.monotonic() < deadline and process.poll() is None:
        if latest.exists() and latest.stat().st_mtime_ns != before:
            return
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="soak_"))
    run, log = work / "run", work / "out.txt"
    plan = ["kill"] * (args.kills - 3) + ["nan"] * 5 + ["corrupt_state"] * 4 + ["truncate_replay"] * 4 \
        + ["bad_manifest"] * 2 + ["full_disk"] * 3 + ["sigterm"] * 4
    rng.shuffle(plan)
    plan = ["kill"] * 3 + plan  # the run starts and holds two generations before any damage
    rows = []
    started = False
    for cycle, kind in enumerate(plan, 1):
        resume = started
        before = check(run) if started else {"frames": 0}
        note = ""
        began = time.monotonic()
        if kind in ("corrupt_state", "truncate_replay", "bad_manifest"):
            newest = Checkpointer(run / "checkpoints").published()
            target = {"corrupt_state": newest / "state.pt", "truncate_replay": newest / "replay_000.pt",
                      "bad_manifest": newest / "manifest.json"}[kind]
            raw = bytearray(target.read_bytes())
            if kind == "corrupt_state":
                raw[len(raw) // 2] ^= 0xFF
            elif kind == "truncate_replay":
                raw = raw[: len(raw) // 2]
            else:
                raw = bytearray(b"{")
            target.write_bytes(bytes(raw))
            fallback = check(run)
            note = f"damaged {newest.name}/{target.name}; load fell back to {fallback['generation']}"
            before = fallback
        wrapper = {"nan": _NAN, "full_disk": _FULL_DISK}.get(kind)
        process = launch(run, log, wrapper=wrapper, resume=resume)
        if kind == "full_disk":
            code = process.wait(timeout=300)
            text = log.read_text()
            assert code != 0 and "not enough disk space" in text, text[-2000:]
            note = "refused at start-up: " + next(
                line for line in text.splitlines() if "not enough disk space" in line).split(": ", 1)[1][:90]
        else:
            wait_started(process, run)
            time.sleep(rng.uniform(0.0, 3.0))
            if kind == "sigterm":
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=300)
                assert code == 0, log.read_text()[-2000:]
            elif kind == "nan":
                time.sleep(2)
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=300)
                assert code == 0, log.read_text()[-2000:]
            else:
                process.send_signal(signal.SIGKILL)
                code = process.wait(timeout=60)
        started = True
        frames_reached = reached(run)
        after = check(run)
        if kind == "nan":
            note = f"{after['skipped']} non-finite parts skipped so far, weights finite"
        if kind == "sigterm":
            note = "exit 0 after a final checkpoint"
        lost = max(frames_reached - after["frames"], 0)
        rows.append({"cycle": cycle, "fault": kind, "exit": code, "resumed_from": before["frames"],
                     "reached": frames_reached, "restored": after["frames"], "lost_frames": lost,
                     "note": note, "seconds": round(time.monotonic() - began, 1)})
        print(json.dumps(rows[-1]), flush=True)
    table = ["| # | fault | exit | resumed from | reached | checkpoint after | frames lost | note |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['cycle']} | {r['fault']} | {r['exit']} | {r['resumed_from']} | {r['reached']} | "
              f"{r['restored']} | {r['lost_frames']} | {r['note']} |" for r in rows]
    kills = sum(r["fault"] == "kill" for r in rows)
    summary = (f"{kills} kill -9 cycles, {len(rows) - kills} faults; every cycle resumed; "
               f"max frames lost {max(r['lost_frames'] for r in rows)} "
               f"(checkpoint.every_frames=20, frames_per_batch=20).")
    text = "\n".join(table) + "\n\n" + summary + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
