"""Record how the surprise criterion's statistics evolve while a video model trains.

Runs ``examples/vta_video.py`` with the given overrides and, every ``--every`` training
updates, appends the segment policy's EMA histogram of ``log(1 + surprise)`` and its scale
(the event split, nats) to a JSON file, rewritten as it goes, so a killed run keeps what it
had. It answers *why* a READ rate jumps: replay any split rule over the recorded histograms
(:func:`torchrl_vta.modules.surprise_split.split_surprise`) to see where it would have cut.

    python benchmarks/surprise_trace.py results/trace.json -- model=agent dataset=maze \
        +model.rssm.boundary_kind=surprise threads=1 batch_size=8 optim.lr=1e-3 \
        +model.loss.abs_free_bits=0 steps=5000 seed=1

Example:
    >>> import torch
    >>> from torchrl_vta import SegmentPolicy
    >>> records = []
    >>> policy = SegmentPolicy(kind="surprise", surprise_momentum=0.0)
    >>> with recording(records, every=1):
    ...     policy.update_statistics(torch.tensor([1.0] * 9 + [30.0]))
    >>> records[0]["update"], records[0]["level"], 1.0 < records[0]["scale_nats"] < 30.0
    (0, 1, True)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import runpy
import sys
from pathlib import Path

from torchrl_vta.modules.segment_policy import SegmentPolicy

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vta_video.py"


@contextlib.contextmanager
def recording(records: list, every: int = 50, path: Path | None = None):
    """Within the block, every ``every``-th training call of
    :meth:`SegmentPolicy.update_statistics` appends ``{update, level, scale_nats,
    histogram_log1p, above_scale}`` to ``records`` (and rewrites ``path`` as JSON when given).

    Each policy is counted on its own, so with ``levels >= 3`` every abstract level is traced;
    ``level`` numbers the policies in the order they are first updated (level 1 first, as
    the model updates them), and ``above_scale`` is the share of the call's valid steps whose
    surprise lay above the scale from before the update.
    """
    original = SegmentPolicy.update_statistics
    levels: dict[int, int] = {}  # id(policy) -> level, in the order of first update
    calls: dict[int, int] = {}  # id(policy) -> training updates so far

    def traced(self, surprise, valid=None):
        if not self.training:
            original(self, surprise, valid)
            return
        level = levels.setdefault(id(self), len(levels) + 1)
        count = calls.get(id(self), 0)
        calls[id(self)] = count + 1
        recorded = count % every == 0
        # The scale the call's decisions were made with, read only when it is recorded.
        before = self.surprise_scale.item() if recorded else None
        original(self, surprise, valid)
        if recorded:
            steps = surprise if valid is None else surprise[valid.bool()]
            rate = steps.gt(before).float().mean().item() if steps.numel() else None
            records.append({"update": count, "level": level,
                            "scale_nats": self.surprise_scale.item(),
                            "histogram_log1p": self.surprise_histogram.tolist(),
                            "above_scale": rate})
            if path is not None:
                path.write_text(json.dumps({"records": records}))

    SegmentPolicy.update_statistics = traced
    try:
        yield records
    finally:
        SegmentPolicy.update_statistics = original


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON file of the records")
    parser.add_argument("--every", type=int, default=50, help="record every N updates")
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after "--" goes to the example (Hydra overrides look like options).
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    if args.every < 1:
        parser.error(f"--every must be >= 1, got {args.every}.")
    sys.argv = [str(EXAMPLE), *args.overrides]
    with recording([], args.every, args.out):
        runpy.run_path(str(EXAMPLE), run_name="__main__")


if __name__ == "__main__":
    main()
