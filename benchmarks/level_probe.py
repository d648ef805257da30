"""Which level of a trained agent video model carries the scene: linear probes per state part.

Runs a ``vta_video.py`` run directory's agent model (``model.pt``, its ``.hydra/config.yaml``;
a world with scenes, e.g. ``nested_one_ball``) over training windows with forcing off and
fits, for each part of the state (the observation level's belief ``h`` and latent ``s``, each
abstract level's belief ``c_j`` and latent ``z_j``, and the encoder's embedding), a
multinomial logistic regression of the scene (the frame's background colour, its most common
pixel) on the first half of the sequences; it reports the accuracy on the other half beside
the majority-class rate. A level whose own KL decides the level above it must carry what
the level above segments: where ``c_1`` does not hold the scene, ``p(z_1 | c_1)`` cannot
predict it, every level-1 READ re-reads it, and level 2 cannot tell a scene switch from a
colour change (``benchmarks/BOUNDARY_QUALITY.md``, issue 15).

    python benchmarks/level_probe.py runs/nested_levels3 --sequences 300 --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def background(frames: torch.Tensor) -> torch.Tensor:
    """Each frame's most common colour as one integer ``r * 65536 + g * 256 + b`` (the
    background, where the foreground covers less than half of the frame).

    Example:
        >>> frames = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
        >>> frames[1, 2] = 9
        >>> frames[1, :, 0, 0] = 255
        >>> background(frames).tolist()
        [0, 9]
    """
    packed = frames.long()
    packed = (packed[:, 0] * 65536 + packed[:, 1] * 256 + packed[:, 2]).flatten(1)
    return packed.mode(-1).values


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor,
                   steps: int = 300) -> float:
    """Held-out accuracy of a linear softmax classifier of ``labels`` ``[N]`` (``0..K-1``)
    from ``features`` ``[N, D]``, fitted with Adam on the rows where ``train`` is True
    (features standardised on them) and scored on the others.

    Example:
        >>> x = torch.randn(200, 3)
        >>> y = (x[:, 0] > 0).long()
        >>> probe_accuracy(x, y, torch.arange(200) < 100) > 0.9
        True
    """
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    classes = int(labels.max()) + 1
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[train] @ weight + bias, labels[train])
        (loss + 1e-4 * weight.pow(2).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = (x[~train] @ weight + bias).argmax(-1)
    return float((predicted == labels[~train]).float().mean())


def main(argv=None) -> dict:
    """Run the probes (arguments as on the command line) and return the report."""
    from torchrl_vta.video import load_data, load_video_run
    from torchrl_vta.video.data import windows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a vta_video.py output directory (model=agent)")
    parser.add_argument("--sequences", type=int, default=300, help="training sequences used")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config, variant = load_video_run(args.run)
    if config.model.name != "agent":
        raise SystemExit(f"{args.run} holds a model={config.model.name} run; the probe reads "
                         "the agent world model's levels (model=agent).")
    train, _ = load_data(config.dataset, config.run.data_dir)
    pixels = windows(train["pixels"][: args.sequences], config.window)
    _, labels = torch.unique(background(pixels.flatten(0, 1)), return_inverse=True)
    if int(labels.max()) == 0:
        raise SystemExit(f"dataset {config.dataset.name!r} has one background: nothing to "
                         "probe (use a world with scenes, e.g. nested_one_ball).")
    upper = variant.levels - 1
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad(), variant.policy.limits("off"):
        for begin in range(0, pixels.shape[0], config.eval.batch_size):
            out = variant.world_model(variant._tensordict(pixels[begin: begin + config.eval.batch_size]))["next"]
            found = {"embed": out["embed"], "h": out["belief"], "s": out["state"]}
            for key, name in (("abs_belief", "c"), ("abs_state", "z")):
                if upper:
                    for level, chunk in enumerate(out[key].chunk(upper, -1), start=1):
                        found[f"{name}_{level}"] = chunk
            for name, value in found.items():
                parts.setdefault(name, []).append(value.flatten(0, 1))
    # Whole sequences on either side, so no window is in both halves.
    train_rows = (torch.arange(pixels.shape[0]) < pixels.shape[0] // 2)
    train_rows = train_rows[:, None].expand(-1, pixels.shape[1]).flatten()
    held = labels[~train_rows]
    report = {"run": str(args.run), "scenes": int(labels.max()) + 1,
              "majority_rate": round(float(held.bincount().max() / held.numel()), 3),
              "accuracy": {name: round(probe_accuracy(torch.cat(values), labels, train_rows), 3)
                           for name, values in parts.items()}}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)  # noqa: T201
    return report


if __name__ == "__main__":
    main()
