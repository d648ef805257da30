"""Env throughput: env steps per second, stepping directly and through a TorchRL Collector.

Both modes use random actions, so the numbers measure the env (simulation, rendering,
transforms) and the collection machinery, not a policy.

Example (from the repository root, with the package installed or ``PYTHONPATH=.``):
    MUJOCO_GL=egl python benchmarks/env_throughput.py --frames 1000 --envs dmc atari --out env_throughput.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402
import torchrl  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402

from torchrl_vta.envs import env_options, make_env  # noqa: E402

logger = logging.getLogger("env_throughput")

# Env steps repeat the action this many times in the simulator (action repeat / frameskip).
_REPEAT_OPTION = {"dmc": "action_repeat", "atari": "frameskip"}


def step_directly(env, frames: int) -> float:
    """Seconds to take ``frames`` random env steps with ``step_and_maybe_reset``."""
    td = env.reset()
    start = time.perf_counter()
    for _ in range(frames):
        td = env.rand_action(td)
        _, td = env.step_and_maybe_reset(td)
    return time.perf_counter() - start


def step_with_collector(env, frames: int, frames_per_batch: int) -> float:
    """Seconds for a :class:`~torchrl.collectors.Collector` with a random policy to gather ``frames``."""
    collector = Collector(env, policy=None, frames_per_batch=frames_per_batch, total_frames=frames)
    start = time.perf_counter()
    collected = sum(batch.numel() for batch in collector)
    seconds = time.perf_counter() - start
    collector.shutdown()
    if collected < frames:
        raise RuntimeError(f"collector returned {collected} frames, expected {frames}")
    return seconds


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1000, help="env steps per measurement")
    parser.add_argument("--envs", nargs="+", default=["dmc", "atari"], help="registered env names")
    parser.add_argument("--frames-per-batch", type=int, default=200, help="collector batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default="env_throughput.json", help="JSON results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    for name in args.envs:
        repeat = env_options(name).get(_REPEAT_OPTION.get(name), 1)
        for mode in ("direct", "collector"):
            env = make_env(name, seed=0)
            env.rollout(3)  # warm-up: renderer contexts, first-call allocations
            if mode == "direct":
                seconds = step_directly(env, args.frames)
            else:
                seconds = step_with_collector(env, args.frames, min(args.frames_per_batch, args.frames))
            env.close()
            rows.append(
                {
                    "env": name,
                    "mode": mode,
                    "env_steps": args.frames,
                    "seconds": round(seconds, 3),
                    "env_steps_per_s": round(args.frames / seconds, 1),
                    "sim_frames_per_s": round(args.frames * repeat / seconds, 1),
                    "repeat": repeat,
                }
            )
            logger.info("%s/%s: %.1f env steps/s", name, mode, args.frames / seconds)

    header = (
        f"{'env':<8}{'mode':<11}{'steps':>7}{'seconds':>9}"
        f"{'steps/s':>9}{'repeat':>8}{'sim frames/s':>14}"
    )
    lines = [header] + [
        f"{r['env']:<8}{r['mode']:<11}{r['env_steps']:>7}{r['seconds']:>9.2f}"
        f"{r['env_steps_per_s']:>9.1f}{r['repeat']:>8}{r['sim_frames_per_s']:>14.1f}"
        for r in rows
    ]
    logger.info("\n".join(lines))
    result = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "torchrl": torchrl.__version__,
        },
        "results": rows,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    logger.info("wrote %s", args.out)
    return rows


if __name__ == "__main__":
    main()
