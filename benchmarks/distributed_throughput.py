"""Throughput of the recipe's engines with 1 and 2 processes: env steps/s and updates/s.

Two measurements, each with the recipe's own builders and config (Hydra overrides as for
``examples/vta_dreamer.py``; default ``env=balls model=cpu``):

* ``collect``: env steps per second of ``make_collector`` for each ``collector.backend``
  and worker count, acting with the agent's policy (encoder, hierarchical acting filter,
  actor), timed over ``--batches`` batches after one warm-up batch;
* ``learn``: learner updates per second of one rank of ``torchrun --nproc_per_node=N``
  (``learner.ddp=true``), timed over ``--updates`` updates after ``--warmup``, on slice
  batches from a replay filled with random-action steps. Each update replays
  ``replay.batch_size x replay.seq_len`` steps per rank, so the replayed steps per second
  are ``updates/s x N x batch x seq_len``.

``run`` does both for 1 and 2 processes (launching ``torchrun`` itself) and writes one
JSON with machine, command and date::

    python benchmarks/distributed_throughput.py run --out benchmarks/results/distributed_throughput.json
    python benchmarks/distributed_throughput.py collect --backends local distributed --workers 2
    torchrun --nproc_per_node=2 benchmarks/distributed_throughput.py learn -- threads=1
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ["env=balls", "model=cpu", "threads=1", "logger=none"]


def recipe_config(overrides: list[str]):
    """The recipe's config for ``overrides`` (composed as ``examples/vta_dreamer.py`` does)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    spec = importlib.util.spec_from_file_location("vta_dreamer", ROOT / "examples" / "vta_dreamer.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the schema
    with initialize_config_dir(str(ROOT / "configs"), version_base=None):
        cfg = OmegaConf.to_object(compose("vta_dreamer", overrides=[*DEFAULTS, *overrides]))
    cfg.validate()
    torch.set_num_threads(max(cfg.threads, 1))
    return cfg


def collect(backend: str, workers: int, batches: int, overrides: list[str]) -> dict:
    """Env steps/s of ``collector.backend=backend`` with ``workers`` envs."""
    from torchrl_vta import make_agent, make_collector, make_env_factory

    cfg = recipe_config([*overrides, f"collector.backend={backend}",
                         f"collector.num_envs={workers}"])
    agent = make_agent(make_env_factory(cfg)(), cfg)
    per_batch = cfg.collector.frames_per_batch * workers
    collector = make_collector(cfg, agent.policy, remaining_frames=(batches + 1) * per_batch,
                               init_random_frames=0, primer_factory=agent.make_primer,
                               device=torch.device("cpu"))
    try:
        iterator = iter(collector)
        next(iterator)  # warm-up: worker start, first resets
        start = time.perf_counter()
        frames = sum(batch.numel() for _, batch in zip(range(batches), iterator))
        seconds = time.perf_counter() - start
    finally:
        collector.shutdown()
    return {"backend": backend, "workers": workers, "frames": frames, "seconds": seconds,
            "env_steps_per_s": frames / seconds}


def learn(updates: int, warmup: int, overrides: list[str]) -> dict | None:
    """Updates/s of this rank (a collective under ``torchrun``); ``None`` on ranks > 0."""
    from torchrl_vta import DataParallel, make_agent, make_collector, make_env_factory
    from torchrl_vta.recipe import make_learner, make_replay_buffer, replay_keys

    distributed = "WORLD_SIZE" in os.environ
    cfg = recipe_config([*overrides, f"learner.ddp={str(distributed).lower()}",
                         "collector.backend=local", "collector.num_envs=1", "replay.storage=memory"])
    parallel = DataParallel.from_environment(cfg.learner.backend) if distributed \
        else DataParallel.single()
    torch.manual_seed(cfg.seed + parallel.rank)
    agent = make_agent(make_env_factory(cfg)(), cfg)
    learner = make_learner(agent, cfg, data_parallel=parallel)
    with tempfile.TemporaryDirectory() as scratch:
        replay = make_replay_buffer(cfg, scratch)
        per_batch = cfg.collector.frames_per_batch
        steps = -(-4 * cfg.replay.batch_size * cfg.replay.seq_len // per_batch) * per_batch
        collector = make_collector(cfg, agent.policy, remaining_frames=steps,
                                   init_random_frames=steps, primer_factory=agent.make_primer,
                                   device=torch.device("cpu"), seed_offset=parallel.rank)
        keys = replay_keys(list(agent.world_model.encoder.in_keys))
        for data in collector:
            replay.extend(data.select(*keys, strict=False))
        collector.shutdown()

        def update():
            batch = replay.sample().reshape(cfg.replay.batch_size, cfg.replay.seq_len)
            learner.update(batch)

        for _ in range(warmup):
            update()
        parallel.barrier()
        start = time.perf_counter()
        for _ in range(updates):
            update()
        parallel.barrier()
        seconds = time.perf_counter() - start
    result = {"ranks": parallel.world_size, "updates": updates, "seconds": seconds,
              "updates_per_s": updates / seconds,
              "replayed_steps_per_s": updates * parallel.world_size * cfg.replay.batch_size
              * cfg.replay.seq_len / seconds,
              "batch_per_rank": [cfg.replay.batch_size, cfg.replay.seq_len]}
    main = parallel.is_main
    parallel.close()
    return result if main else None


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "date": datetime.date.today().isoformat()}


def run(args) -> dict:
    """Both measurements for 1 and 2 processes, ``learn`` through ``torchrun``."""
    rows = {"machine": _machine(), "command": " ".join(["python", *sys.argv]),
            "overrides": [*DEFAULTS, *args.overrides], "collect": [], "learn": []}
    for workers in (1, 2):
        for backend in args.backends:
            rows["collect"].append(collect(backend, workers, args.batches, args.overrides))
    for ranks in (1, 2):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={ranks}", __file__, "learn", "--updates", str(args.updates),
                 "--warmup", str(args.warmup), "--out", out.name, "--", *args.overrides],
                check=True, cwd=ROOT)
            rows["learn"].append(json.loads(Path(out.name).read_text()))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["run", "collect", "learn"])
    parser.add_argument("--backends", nargs="+", default=["local", "multiprocess", "distributed"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    # Recipe overrides follow "--" (Hydra syntax, which argparse would try to parse).
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    if args.mode == "run":
        result = run(args)
    elif args.mode == "collect":
        result = [collect(b, w, args.batches, args.overrides)
                  for w in args.workers for b in args.backends]
    else:
        result = learn(args.updates, args.warmup, args.overrides)
        if result is None:
            return
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
