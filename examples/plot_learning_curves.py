"""Plot the learning curves of recipe runs side by side.

Each ``LABEL=OUTPUT_DIR`` is the ``output_dir`` of an ``examples/vta_dreamer.py``
run (CSV logger). Resumed runs are read correctly: what a killed run logged past
its last checkpoint is dropped.

    python examples/plot_learning_curves.py \\
        VTA=outputs/cpu_learning/cartpole_L2 flat=outputs/cpu_learning/cartpole_L1 \\
        --reference random=240 --reference "zero action=760" --out curves.png
"""

from __future__ import annotations

import argparse
import logging

from torchrl_vta.viz import plot_learning_curves

logger = logging.getLogger("plot_learning_curves")


def _pair(text: str, what: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label or not value:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return label, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=lambda text: _pair(text, "LABEL=OUTPUT_DIR"),
                        help="LABEL=OUTPUT_DIR, one per run (the label ends at the first =)")
    parser.add_argument("--out", default="learning_curves.png", help="PNG to write")
    parser.add_argument("--scalar", action="append", dest="scalars",
                        help="scalar to plot (repeatable; default: eval/return and train/episode_return, those logged)")
    parser.add_argument("--reference", action="append", default=[],
                        type=lambda text: _pair(text, "NAME=VALUE"),
                        help="a labelled horizontal line, NAME=VALUE (repeatable)")
    parser.add_argument("--mark", action="append", default=[],
                        type=lambda text: _pair(text, "NAME=STEP"),
                        help="a labelled vertical line at an env step, NAME=STEP (repeatable)")
    parser.add_argument("--window", type=int, default=16, help="moving-average window for noisy scalars")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        references = {name: float(value) for name, value in args.reference}
        marks = {name: float(value) for name, value in args.mark}
    except ValueError as err:
        parser.error(f"--reference and --mark need a number after '=': {err}")
    path = plot_learning_curves(dict(args.runs), args.out, scalars=args.scalars, references=references,
                                marks=marks, window=args.window, title=args.title)
    logger.info("wrote %s", path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
