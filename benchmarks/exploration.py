"""Exploration on ``maze``: distinct poses visited by random actions, the task-only agent and
Plan2Explore (flat and hierarchical disagreement), and task fine-tuning after reward-free
pretraining against training from scratch.

Subcommands (every run is ``examples/vta_dreamer.py`` in its own process, 1 torch thread;
a run directory that already holds a checkpoint is resumed, so a killed benchmark goes on
where it stopped)::

    # coverage: AGENTS x seeds, N env steps each (then the table and the curves)
    python benchmarks/exploration.py run --root runs/exploration --seeds 0 1 2 --frames 6000
    # fine-tuning: M task steps from each p2e_hier run's weights vs M steps from scratch
    python benchmarks/exploration.py finetune --root runs/exploration --seeds 0 1 2 --frames 3000
    python benchmarks/exploration.py report --root runs/exploration \\
        --out benchmarks/results/exploration_maze.json --plot benchmarks/images/exploration_maze.png
    # runs whose directories are gone: merge an earlier report's rows (same config!)
    python benchmarks/exploration.py report --root runs/exploration \\
        --include benchmarks/results/exploration_seed0.json --out ...

Coverage is read from each run's last checkpoint: its replay holds every env step in
collection order with the maze's ground-truth ``pose`` ``(x, y, heading)``; counted are
distinct poses, cells (blocks of the grid) and states (cell × heading). The random baseline
steps the same maze (``seed``) with uniform actions. Every row also has its goal rate: the
share of finished training episodes (from the run's logged ``train/episode_return``; for
random, of its own rollout) that reached the goal, which separates fine-tuned from scratch
runs where a few evaluation episodes (``--eval-episodes``, at the end) cannot. The
recipe's random prefill (``collector.init_random_frames``) is part of every agent's budget.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "vta_dreamer.py"
#: Every run: the maze, one thread; evaluation only at the end (``--model`` picks the preset).
COMMON = ["env=maze", "threads=1"]
#: Overrides of each agent.
AGENTS = {
    "task": ["explore.mode=off"],
    "p2e": ["explore.mode=reward_free"],
    "p2e_hier": ["explore.mode=reward_free", "explore.hierarchical=true"],
}
FINETUNE_FROM = "p2e_hier"


def _launch(run: Path, overrides: list[str], log: Path) -> None:
    resume = (run / "checkpoints" / "LATEST").exists()
    command = [sys.executable, str(SCRIPT), *overrides, f"output_dir={run}"] + (
        ["resume=true"] if resume else [])
    with open(log, "a") as handle:
        subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, check=True)


def _budget(args) -> list[str]:
    frames = args.frames
    return [f"model={args.model}", f"collector.total_frames={frames}", f"eval.every_frames={frames}",
            f"eval.episodes={args.eval_episodes}",
            f"checkpoint.every_frames={max(frames // 6, 1)}", *args.overrides]


def run(args) -> None:
    """Train every agent at every seed for ``--frames`` env steps (resuming where present)."""
    for seed in args.seeds:
        for name in args.agents:
            run_dir = args.root / f"{name}_seed{seed}"
            _launch(run_dir, [*COMMON, *AGENTS[name], f"seed={seed}",
                              *_budget(args)], args.root / f"{name}_seed{seed}.log")


def finetune(args) -> None:
    """``--frames`` task steps from the pretrained weights and from scratch, per seed."""
    for seed in args.seeds:
        source = args.root / f"{FINETUNE_FROM}_seed{seed}"
        if not (source / "checkpoints" / "LATEST").exists():
            raise FileNotFoundError(f"{source} has no checkpoint: run the coverage runs first.")
        for name, extra in (("finetuned", [f"init_from={source}"]), ("scratch", [])):
            run_dir = args.root / f"{name}_seed{seed}"
            _launch(run_dir, [*COMMON, "explore.mode=off", f"seed={seed}", *extra,
                              *_budget(args)], args.root / f"{name}_seed{seed}.log")


def poses_of_run(run: Path) -> tuple[torch.Tensor, dict]:
    """The ``("next", "pose")`` of every stored env step of a run, in collection order,
    and the run's env options and seed."""
    from torchrl_vta.checkpoint import Checkpointer
    from torchrl_vta.config import RecipeConfig
    from torchrl_vta.recipe import make_replay_buffer

    checkpointer = Checkpointer(run / "checkpoints")
    state = checkpointer.load()
    cfg = RecipeConfig.from_dict(state["config"])
    if cfg.collector.num_envs != 1:
        raise ValueError(f"{run}: coverage needs one env (collection order), got {cfg.collector.num_envs}.")
    cfg.replay.storage = "memory"
    buffer = make_replay_buffer(cfg, None)
    checkpointer.load(buffer)
    stored = buffer.storage[: len(buffer)]
    return stored["next", "pose"], {"options": dict(cfg.env.options), "seed": cfg.seed,
                                    "frames": state["counters"]["frames"],
                                    "eval_return": state["counters"].get("eval_return")}


def random_rollout(seed: int, options: dict, frames: int):
    """``frames`` uniform-random steps in the maze of ``seed`` (episodes auto-reset)."""
    from torchrl_vta.envs import make_env

    env = make_env("maze", seed=seed, **options)
    generator = torch.Generator().manual_seed(seed)
    actions = torch.eye(3)[torch.randint(3, (frames,), generator=generator)]
    step = iter(actions)
    return env.rollout(frames, lambda td: td.set("action", next(step)),
                       break_when_any_done=False)


def episode_success(rewards: torch.Tensor, done: torch.Tensor) -> dict:
    """Finished episodes and the share of them that reached the goal (any reward > 0).

    Example:
        >>> rewards = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
        >>> done = torch.tensor([False, False, True, False, False, True])
        >>> episode_success(rewards, done)
        {'episodes': 2, 'success': 0.5}
    """
    rewards, done = rewards.flatten(), done.flatten().bool()
    ends = done.nonzero().flatten().tolist()
    starts = [0] + [e + 1 for e in ends[:-1]]
    hits = [bool(rewards[a : b + 1].gt(0).any()) for a, b in zip(starts, ends)]
    return {"episodes": len(hits), "success": sum(hits) / len(hits) if hits else None}


def train_success(run: Path) -> dict:
    """Training episodes of a run (its logged ``train/episode_return``; a killed and resumed
    run's rewound entries dropped, episodes that ended in one batch all kept) and their goal
    rate."""
    from torchrl_vta.viz import read_scalar_log

    path = run / "logs" / "vta_dreamer" / "scalars" / "train" / "episode_return.csv"
    returns = read_scalar_log(path, keep_ties=True)[1] if path.exists() else []
    return {"episodes": len(returns),
            "success": float((returns > 0).mean()) if len(returns) else None}


def coverage(poses: torch.Tensor, steps_per_block: int, checkpoints) -> dict:
    """Distinct poses and distinct cells among the first ``k`` steps, for each ``k``.

    Examples:
        >>> poses = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 0, 1], [2, 0, 1]])
        >>> coverage(poses, 2, [2, 4])
        {'poses': {2: 2, 4: 4}, 'cells': {2: 1, 4: 2}, 'states': {2: 2, 4: 3}}
    """
    cells = torch.div(poses[:, :2], steps_per_block, rounding_mode="floor")
    # The state: a cell and a heading.
    states = torch.cat([cells, poses[:, 2:]], -1)
    return {kind: {k: len({tuple(v) for v in values[:k].tolist()}) for k in checkpoints}
            for kind, values in (("poses", poses), ("cells", cells), ("states", states))}


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values),
            "min": min(values), "max": max(values), "n": len(values)}


def report(args) -> dict:
    """Coverage per agent and seed (plus random), fine-tuning returns; JSON and a plot."""
    from torchrl_vta.envs.registry import env_options

    runs = sorted(p for p in args.root.iterdir() if (p / "checkpoints" / "LATEST").exists())
    rows, curves = {}, {}
    for run_dir in runs:
        name, _, seed = run_dir.name.rpartition("_seed")
        poses, info = poses_of_run(run_dir)
        frames = len(poses)
        steps = (info["options"].get("steps_per_block")
                 or env_options("maze")["steps_per_block"])
        checkpoints = sorted({min(frames, k) for k in range(args.every, frames + args.every, args.every)})
        cov = coverage(poses, steps, checkpoints)
        rows.setdefault(name, {})[int(seed)] = {"frames": frames, "eval_return": info["eval_return"],
                                                "coverage": cov, "train": train_success(run_dir)}
        # Random actions for as many steps as the coverage runs (fine-tuning runs may be shorter).
        if name not in ("finetuned", "scratch") and int(seed) not in rows.get("random", {}):
            random = random_rollout(int(seed), info["options"], frames)
            rows.setdefault("random", {})[int(seed)] = {
                "frames": frames, "coverage": coverage(random["next", "pose"], steps, checkpoints),
                "train": episode_success(random["next", "reward"], random["next", "done"])}
    for path in args.include or []:
        for name, seeds in json.loads(Path(path).read_text())["runs"].items():
            for seed, row in seeds.items():
                # JSON made the integer keys strings.
                row["coverage"] = {kind: {int(k): v for k, v in values.items()}
                                   for kind, values in row["coverage"].items()}
                rows.setdefault(name, {}).setdefault(int(seed), row)
    summary = {}
    for name, seeds in rows.items():
        summary[name] = {}
        for kind in ("poses", "cells", "states"):
            # Runs merged from an earlier report may lack a kind counted since.
            final = [r["coverage"][kind][max(r["coverage"][kind])] for r in seeds.values()
                     if kind in r["coverage"]]
            if final:
                summary[name][f"distinct_{kind}"] = _spread(final)
        returns = [r["eval_return"] for r in seeds.values() if r.get("eval_return") is not None]
        if returns:
            summary[name]["eval_return"] = _spread(returns)
        success = [r["train"]["success"] for r in seeds.values()
                   if r.get("train", {}).get("success") is not None]
        if success:
            summary[name]["train_success"] = _spread(success)
        curves[name] = seeds
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "date": datetime.date.today().isoformat()},
           "command": " ".join(sys.argv), "included": [str(p) for p in args.include or []],
           "summary": summary, "runs": rows}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        _plot(curves, args.plot)
    for name, row in summary.items():
        poses = row["distinct_poses"]
        print(f"{name:>10}: distinct poses {poses['mean']:.0f} ± {poses['std']:.0f} "  # noqa: T201
              f"(n={poses['n']}), cells {row['distinct_cells']['mean']:.1f}"
              + (f", eval return {row['eval_return']['mean']:.2f}" if "eval_return" in row else "")
              + (f", goal rate {row['train_success']['mean']:.2f}" if "train_success" in row else ""))
    return out


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = sorted(name for name in curves if name not in ("finetuned", "scratch"))
    seeds = sorted({seed for name in names for seed in curves[name]})
    # One panel per seed: each seed is its own maze, so only curves within a panel compare.
    figure, axes = plt.subplots(1, len(seeds), figsize=(4 * len(seeds), 3.6), squeeze=False)
    for axis, seed in zip(axes[0], seeds):
        for name in names:
            run = curves[name].get(seed)
            if run is None:
                continue
            # Reports merged from before states were counted only have poses.
            kind = "states" if "states" in run["coverage"] else "poses"
            steps = sorted(run["coverage"][kind])
            axis.plot(steps, [run["coverage"][kind][k] for k in steps], color=f"C{names.index(name)}",
                      label=name, linestyle="-" if kind == "states" else ":")
        axis.set_title(f"seed {seed}")
        axis.set_xlabel("env steps")
    axes[0][0].set_ylabel("distinct states (cell, heading)")
    axes[0][0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "finetune"):
        command = sub.add_parser(name)
        command.add_argument("--root", type=Path, required=True)
        command.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        command.add_argument("--frames", type=int, default=6000)
        command.add_argument("--model", default="cpu", help="the model preset group (tiny: tests)")
        command.add_argument("--eval-episodes", type=int, default=5,
                             help="evaluation episodes at the end of each run")
        command.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
        if name == "run":
            command.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    command = sub.add_parser("report")
    command.add_argument("--root", type=Path, required=True)
    command.add_argument("--every", type=int, default=250)
    command.add_argument("--include", type=Path, nargs="*",
                         help="earlier report JSONs whose runs are added (seeds not in --root)")
    command.add_argument("--out", type=Path)
    command.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    if args.command != "report":
        args.root.mkdir(parents=True, exist_ok=True)
    {"run": run, "finetune": finetune, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
