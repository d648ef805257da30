"""Boundary quality of the original VTA and the agent variants (results: BOUNDARY_QUALITY.md).

    python benchmarks/boundary_quality.py --budget-min 60 --max-steps 4000 \\
        --common batch_size=8 optim.lr=1e-3          # one_ball world (the default)
    python benchmarks/boundary_quality.py --datasets one_ball balls maze \\
        --models original agent_surprise --budget-min 60 --max-steps 4000
    python benchmarks/boundary_quality.py --models original --budget-min 5 \\
        --original temperature.every=10

Models: ``original`` (the original VTA), ``agent`` (the agent world model with the
``learned`` boundary kind), ``agent_surprise`` and ``agent_learned_surprise`` (the
``surprise`` and ``learned+surprise`` kinds of the segment policy).

Each model trains with ``examples/vta_video.py`` in its own process (1 torch thread, the
same cached dataset and seed) for a wall-clock budget, then the script prints a markdown
table built from the runs' ``metrics.json``: F1 at tolerance 0/1/2 with the segment limits
forcing the posterior and without, the periodic baseline at the same boundary count,
AUC of P(READ), and boundary vs event rate. Run directories (images included) stay under
``--out``.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "vta_video.py"


#: Hydra overrides of each benchmarked model (``--agent`` options apply to every agent).
MODELS = {
    "original": ["model=original"],
    "agent": ["model=agent"],
    "agent_surprise": ["model=agent", "+model.rssm.boundary_kind=surprise"],
    "agent_learned_surprise": ["model=agent", "+model.rssm.boundary_kind=learned+surprise"],
}


def _cell(values: dict, keys=("0", "1", "2")) -> str:
    return " / ".join(f"{values[k]:.2f}" for k in keys)


def markdown_table(metrics: dict[str, dict]) -> str:
    """One row per (run, forcing) from ``{run label: metrics.json content}``.

    Example:
        >>> report = {"f1": {"0": 0.5, "1": 0.8, "2": 0.9}, "periodic_f1": {"0": 0.1, "1": 0.3, "2": 0.4},
        ...           "precision": {"1": 0.7}, "recall": {"1": 0.9}, "auc": 0.9, "surprise_auc": 0.95,
        ...           "boundary_rate": 0.15, "event_rate": 0.13}
        >>> row = {"steps_done": 10, "train_time_s": 60.0, "forcing_on": report, "forcing_off": report}
        >>> print(markdown_table({"original": row}).splitlines()[2])
        | original | on | 0.50 / 0.80 / 0.90 | 0.70 / 0.90 | 0.10 / 0.30 / 0.40 | 0.900 | 0.950 | 0.150 / 0.130 | 10 (1.0 min) |
    """
    lines = [
        "| model | forcing | F1 τ=0 / 1 / 2 | P / R τ=1 | periodic F1 τ=0 / 1 / 2 | AUC P(READ) "
        "| AUC surprise | boundary / event rate | steps (train time) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, run in metrics.items():
        for forcing in ("on", "off"):
            report = run[f"forcing_{forcing}"]
            lines.append(
                f"| {model} | {forcing} | {_cell(report['f1'])} "
                f"| {report['precision']['1']:.2f} / {report['recall']['1']:.2f} "
                f"| {_cell(report['periodic_f1'])} | {report['auc']:.3f} "
                f"| {report.get('surprise_auc', float('nan')):.3f} "
                f"| {report['boundary_rate']:.3f} / {report['event_rate']:.3f} "
                f"| {run['steps_done']} ({run['train_time_s'] / 60:.1f} min) |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["original", "agent_surprise"],
                        choices=sorted(MODELS))
    parser.add_argument("--datasets", nargs="+", default=["one_ball"],
                        choices=["one_ball", "balls", "maze"])
    parser.add_argument("--budget-min", type=float, default=20.0,
                        help="wall-clock training budget per model, minutes")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "boundary_quality")
    parser.add_argument("--original", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra Hydra overrides for the original model")
    parser.add_argument("--agent", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra Hydra overrides for the agent model")
    parser.add_argument("--common", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra Hydra overrides for every run")
    args = parser.parse_args(argv)
    if args.budget_min <= 0:
        parser.error(f"--budget-min must be > 0, got {args.budget_min}")

    metrics = {}
    for dataset in args.datasets:
        for model in args.models:
            run_dir = args.out / f"{dataset}_{model}"
            extra = args.original if model == "original" else args.agent
            command = [
                sys.executable, str(SCRIPT), f"dataset={dataset}", *MODELS[model],
                f"time_budget_min={args.budget_min}", f"steps={args.max_steps}", "threads=1",
                f"hydra.run.dir={run_dir}", *args.common, *extra,
            ]
            print(" ".join(command), flush=True)
            start = time.monotonic()
            subprocess.run(command, check=True, cwd=ROOT)
            print(f"{dataset} {model}: {(time.monotonic() - start) / 60:.1f} min wall in all",
                  flush=True)
            metrics[f"{dataset} {model}"] = json.loads((run_dir / "metrics.json").read_text())
    table = markdown_table(metrics)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
