"""Which events a trained video model misses, and how much it takes in at them.

Runs a ``vta_video.py`` run directory's model (``model.pt``, its ``.hydra/config.yaml``) over
training windows (never the held-out ones) with forcing off and prints, for the events it
READs (hits) and those it does not (misses), the per-step information intake
``KL(q(s)||p(s)) + READ * KL(q(z)||p(z))`` at lags -1 ... +3 against the quiet steps; on
``balls`` also hits and misses by the palette colour that appears and the one that leaves
(read from the frames' pixels). ``rule_f1`` is the model's own READs' F1 on those windows;
``best_threshold`` the best F1 of one global threshold on the model's boundary score (the
surprise criterion's normalised surprise, or P(READ)), chosen with the event labels: a
reference for what the signal allows, not a result (a causal peak rule can beat it a little).

    python benchmarks/missed_events.py runs/balls_agent --windows 200 --out missed.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from torchrl_vta.metrics import boundary_scores


def colours_present(frame: torch.Tensor, palette: torch.Tensor, tolerance: float = 20.0,
                    min_pixels: int = 3) -> set[int]:
    """Palette indices with at least ``min_pixels`` pixels within ``tolerance`` of them.

    Example:
        >>> palette = torch.tensor([[255.0, 0, 0], [0, 0, 255.0]])
        >>> frame = torch.zeros(3, 4, 4, dtype=torch.uint8)
        >>> frame[0, :2, :2] = 255
        >>> colours_present(frame, palette)
        {0}
    """
    pixels = frame.permute(1, 2, 0).reshape(-1, 3).float()
    close = torch.cdist(pixels, palette) < tolerance
    return set(torch.nonzero(close.sum(0) >= min_pixels).flatten().tolist())


def best_threshold(score: torch.Tensor, event: torch.Tensor, tolerances=(0, 1, 2),
                   most: int = 500) -> dict:
    """Best boundary F1 of a single threshold (READ where ``score >= threshold``) on ``score``
    ``[N, T]`` against ``event``, per tolerance, with the READ rate where it is reached. The
    thresholds are the distinct scores in the upper half (at most ``most``, evenly by rank).

    Example:
        >>> score = torch.tensor([[0.1, 5.0, 0.2, 0.1, 4.0, 0.3]])
        >>> event = torch.tensor([[False, True, False, False, True, False]])
        >>> best_threshold(score, event, tolerances=(0,))["0"]
        {'f1': 1.0, 'read_rate': 0.333}
    """
    flat = score.numpy()
    values = np.unique(flat)
    values = values[values >= np.median(flat)]
    values = values[np.unique(np.linspace(0, len(values) - 1, min(most, len(values))).round()
                              .astype(int))]
    best = {}
    for tolerance in tolerances:
        top = (-1.0, 0.0)
        for threshold in values:
            read = score >= float(threshold)
            f1 = boundary_scores(read, event, tolerance=tolerance)["f1"]
            top = max(top, (float(f1), float(read.float().mean())))
        best[str(tolerance)] = {"f1": round(top[0], 3), "read_rate": round(top[1], 3)}
    return best


def main(argv=None) -> dict:
    """Run the analysis (arguments as on the command line) and return the report."""
    from torchrl_vta.video import load_data, load_video_run
    from torchrl_vta.video.data import windows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a vta_video.py output directory")
    parser.add_argument("--windows", type=int, default=200, help="training sequences used")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config, variant = load_video_run(args.run)
    train, _ = load_data(config.dataset, config.run.data_dir)
    data = train[: args.windows]
    pixels = windows(data["pixels"], config.window)
    events = windows(data["event"][..., 0], config.window)
    intake, reads, scores = [], [], []
    with torch.no_grad():
        for begin in range(0, pixels.shape[0], config.eval.batch_size):
            inference = variant.boundaries(pixels[begin : begin + config.eval.batch_size], False)
            intake.append(inference.surprise)
            reads.append(inference.read)
            scores.append(inference.prob)
    modelled = slice(config.model.init_size, config.model.init_size + config.model.seq_size)
    best = best_threshold(torch.cat(scores)[:, modelled], events[:, modelled].bool())
    intake = torch.cat(intake)[:, modelled].numpy()
    read = torch.cat(reads)[:, modelled].numpy().astype(bool)
    event = events[:, modelled].numpy().astype(bool)
    frames = pixels[:, modelled]
    groups = {"hit": event & read, "miss": event & ~read}
    out = {"run": str(args.run), "event_rate": float(event.mean()), "read_rate": float(read.mean()),
           "quiet_quantiles": dict(zip(("25", "50", "75", "90"), np.quantile(
               intake[~event], [0.25, 0.5, 0.75, 0.9]).round(2).tolist())),
           "rule_f1": {str(t): round(float(boundary_scores(read, event, tolerance=t)["f1"]), 3)
                       for t in (0, 1, 2)},
           "best_threshold": best}
    for name, mask in groups.items():
        rows, steps = np.nonzero(mask)
        lags = {}
        for lag in range(-1, 4):
            values = [intake[i, t + lag] for i, t in zip(rows, steps) if 0 <= t + lag < intake.shape[1]]
            lags[str(lag)] = float(np.median(values)) if values else None
        out[name] = {"count": int(mask.sum()), "median_intake_by_lag": lags}
    if config.dataset.name == "balls":
        from torchrl_vta.envs.balls_world import PALETTE

        palette = torch.tensor(np.asarray(PALETTE), dtype=torch.float32)
        for name, mask in groups.items():
            appears, leaves = Counter(), Counter()
            for i, t in zip(*np.nonzero(mask)):
                if t == 0:
                    continue
                before, now = (colours_present(frames[i, s], palette) for s in (t - 1, t))
                appears.update(now - before)
                leaves.update(before - now)
            out[name]["appears"] = {int(c): appears[c] for c in range(len(palette))}
            out[name]["leaves"] = {int(c): leaves[c] for c in range(len(palette))}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)  # noqa: T201
    return out


if __name__ == "__main__":
    main()
