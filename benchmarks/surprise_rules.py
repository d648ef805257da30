"""Score the surprise criterion offline on stored training windows (no retraining).

Each ``results/surprise_train_windows_*.json`` holds, for the *training* windows of a trained
agent world model, the per-step surprise (normalised by the scale it was trained with, and
that scale), the READs it made, the true events and its EMA histogram of ``log(1 + surprise)``.
This script replays those surprises through :class:`~torchrl_vta.SegmentPolicy`'s criterion
with each running scale (``surprise_reference`` ``"split"`` and ``"max"``, the latter with a
prominence sweep, to show how sensitive it is; ``"split3"`` too) and prints F1 at τ = 1 and
the READ rate next to the READs the model made when trained, and each split with
``surprise_rearm="typical"`` (after a READ, the trough restarts at the typical surprise). The
numbers ignore that other READs would have changed training and the belief after them: they
choose what to try in a held-out run, they do not replace it.

    python benchmarks/surprise_rules.py benchmarks/results/surprise_train_windows_*.json
    python benchmarks/surprise_rules.py --run RUN_DIR [--windows 200]   # a vta_video.py run

``--run`` builds the record from a trained agent run (``surprise`` kind) on its first
``--windows`` training sequences, forcing off.

Example:
    >>> history = torch.tensor([0.5] * 90 + [20.0] * 10).log1p()
    >>> record = {"scale_nats": 1.0, "histogram_log1p": torch.histc(history, 128, 0, 9.2104).tolist(),
    ...           "normalised_surprise": [[0.0, 0.4, 20.0, 0.6]], "read": [[1, 0, 1, 0]],
    ...           "event": [[0, 0, 1, 0]]}
    >>> rows = score_record(record, rules=(("max", 0.1),))
    >>> rows[0]["rule"], rows[0]["f1"], rows[1]["f1"]
    ('as trained', 1.0, 1.0)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from torchrl_vta.metrics import boundary_scores
from torchrl_vta.modules.segment_policy import SegmentPolicy


def criterion_reads(policy: SegmentPolicy, surprise: torch.Tensor) -> torch.Tensor:
    """READs ``[N, T]`` of the surprise criterion on ``surprise [N, T]`` (nats), step 0
    structural, as in the RSSM.

    Example:
        >>> policy = SegmentPolicy(kind="surprise", surprise_init_scale=2.0)
        >>> criterion_reads(policy, torch.tensor([[5.0, 0.1, 4.0, 3.9, 0.5]])).int().tolist()
        [[1, 0, 1, 0, 0]]
    """
    reads = torch.zeros(surprise.shape, dtype=torch.bool)
    reads[:, 0] = True
    start = torch.zeros(surprise.shape[0], dtype=surprise.dtype)
    trough = policy.surprise_trough(start, reads[:, 0], start, reads[:, 0])
    for t in range(1, surprise.shape[1]):
        read, normalised = policy.surprise_read(surprise[:, t], trough)
        trough = policy.surprise_trough(normalised, read, trough)
        reads[:, t] = read
    return reads


def _score(read: torch.Tensor, event: torch.Tensor) -> tuple[float, float]:
    first = torch.zeros_like(read)
    first[:, 0] = True
    scores = boundary_scores(read & ~first, event & ~first, tolerance=1)
    return scores["f1"], float(read[:, 1:].float().mean())


def local_reads(surprise: torch.Tensor, ratio: float, rate: float = 0.3) -> torch.Tensor:
    """READs ``[N, T]`` of a criterion with no global scale: step ``t`` READs where
    ``log(1 + surprise)`` exceeds a causal EMA (``rate``) of the window's earlier non-READ
    steps by at least ``ratio``; step 0 structural, step 1 starts the EMA.

    Example:
        >>> local_reads(torch.tensor([[9.0, 1.0, 1.2, 30.0, 1.1]]), ratio=1.5).int().tolist()
        [[1, 0, 0, 1, 0]]
    """
    logs = surprise.clamp_min(0).log1p()
    reads = torch.zeros(surprise.shape, dtype=torch.bool)
    reads[:, 0] = True
    baseline = logs[:, 1].clone()
    for t in range(2, surprise.shape[1]):
        reads[:, t] = logs[:, t] - baseline >= ratio
        baseline = torch.where(reads[:, t], baseline, (1 - rate) * baseline + rate * logs[:, t])
    return reads


RULES = (("split", 0.1), ("split", 0.1, "typical"), ("split_interior", 0.1),
         ("split_interior", 0.1, "typical"), ("split3", 0.1), ("max", 0.05), ("max", 0.1),
         ("max", 0.2), ("local", 0.5), ("local", 1.0), ("local", 1.5), ("local", 2.0))
"""(surprise_reference, surprise_prominence[, surprise_rearm]) scored by default;
``("local", ratio)`` is :func:`local_reads` (no histogram)."""


def score_record(record: dict, rules=RULES) -> list[dict]:
    """Rows ``{rule, f1, read_rate}``: the READs as trained, then the criterion for each
    ``(surprise_reference, surprise_prominence)`` in ``rules`` (other options at their
    defaults), its scale re-derived from the stored histogram.
    """
    surprise = torch.tensor(record["normalised_surprise"]) * record["scale_nats"]
    event = torch.tensor(record["event"]).bool()
    f1, rate = _score(torch.tensor(record["read"]).bool(), event)
    rows = [{"rule": "as trained", "f1": f1, "read_rate": rate}]
    histogram = torch.tensor(record["histogram_log1p"])
    for reference, prominence, *rearm in rules:
        if reference == "local":
            f1, rate = _score(local_reads(surprise, prominence), event)
            rows.append({"rule": f"local, ratio {prominence}", "f1": f1, "read_rate": rate})
            continue
        rearm = rearm[0] if rearm else "rise"
        policy = SegmentPolicy(kind="surprise", surprise_reference=reference,
                               surprise_prominence=prominence, surprise_rearm=rearm)
        policy.load_histogram(histogram)
        f1, rate = _score(criterion_reads(policy, surprise), event)
        label = f"{reference}, prominence {prominence}" + (
            f", rearm {rearm}" if rearm != "rise" else "")
        rows.append({"rule": label, "f1": f1, "read_rate": rate})
    return rows


def record_from_run(run: Path, windows: int = 200) -> dict:
    """The record :func:`score_record` reads, from a trained ``vta_video.py`` agent run
    (``surprise`` kind): its first ``windows`` training sequences, forcing off, modelled
    frames only."""
    from torchrl_vta.video import load_data, load_video_run
    from torchrl_vta.video.data import windows as cut

    config, variant = load_video_run(run)
    policy = getattr(variant, "policy", None)
    if policy is None or policy.kind != "surprise":
        raise ValueError(f"{run}: --run needs an agent run with boundary_kind=surprise.")
    train, _ = load_data(config.dataset, config.run.data_dir)
    pixels = cut(train[:windows]["pixels"], config.window)
    events = cut(train[:windows]["event"][..., 0], config.window)
    normalised, reads = [], []
    with torch.no_grad():
        for begin in range(0, pixels.shape[0], config.eval.batch_size):
            inference = variant.boundaries(pixels[begin : begin + config.eval.batch_size], False)
            normalised.append(inference.prob)
            reads.append(inference.read)
    modelled = slice(config.model.init_size, config.model.init_size + config.model.seq_size)
    return {"scale_nats": float(policy.surprise_scale),
            "histogram_log1p": policy.surprise_histogram.tolist(),
            "normalised_surprise": torch.cat(normalised)[:, modelled].tolist(),
            "read": torch.cat(reads)[:, modelled].int().tolist(),
            "event": events[:, modelled].int().tolist()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="stored training-window records")
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a vta_video.py agent run directory (repeatable)")
    parser.add_argument("--windows", type=int, default=200, help="training sequences of --run")
    args = parser.parse_args(argv)
    if not args.files and not args.run:
        parser.error("give stored records (files) or --run RUN_DIR")
    torch.set_num_threads(1)
    lines = ["| windows | event rate | rule | F1 τ=1 | READ rate |", "|---|---|---|---|---|"]
    sources = [(path, lambda path=path: json.loads(path.read_text())) for path in args.files]
    sources += [(run, lambda run=run: record_from_run(run, args.windows)) for run in args.run]
    for path, load in sources:
        record = load()
        event_rate = float(torch.tensor(record["event"])[:, 1:].float().mean())
        for row in score_record(record):
            lines.append(f"| {path.stem} | {event_rate:.3f} | {row['rule']} | "
                         f"{row['f1']:.3f} | {row['read_rate']:.3f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
