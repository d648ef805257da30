"""How wide a set embedding must be to carry a traffic frame: a single-frame autoencoder.

``SetEncoder`` (with slot ids) then ``SetDecoder`` on frames of the ``traffic`` world,
trained with the set loss; reported every 250 updates: the reconstruction and existence
losses and the mean position error of the vehicles present on the training batch, and the
position error, velocity error and existence F1 on held-out frames (another seed of the
generator: a small training set is memorised long before it is learned), for each
``--units``. A width that cannot reconstruct one frame bounds every world model built on it::

    python benchmarks/set_capacity.py --units 64 256 --out benchmarks/results/set_capacity.json

``--encoder flat`` swaps the set encoder for a reference MLP on the flattened padded set
(slot ``k`` with its own input weights), the decoder unchanged::

    python benchmarks/set_capacity.py --units 256 --encoder flat --out benchmarks/results/set_capacity_flat_heldout.json

``--gru-hidden 144 384`` trains the teacher-forced sequence baseline instead (set width
``--units``, windows of 32 steps, batch 16, as ``traffic_prediction.py``) and reports the
position error of its reconstruction of the current frame::

    python benchmarks/set_capacity.py --units 256 --gru-hidden 144 --updates 500 \\
        --out benchmarks/results/set_capacity_sequence_gru144.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

from torchrl_vta.envs.traffic import VEHICLE_DISCRETE_COLUMNS, traffic_sequences
from torchrl_vta.modules.sets import SetDecoder, SetEncoder
from torchrl_vta.prediction_metrics import displacement_errors, existence_f1


def _heldout(encoder, decoder, frames) -> dict:
    """Position and velocity errors (vehicles present) and existence F1 on ``frames`` ``[N]``
    (scored as one horizon step holding every frame)."""
    with torch.no_grad():
        values, exists = decoder.decode(decoder(encoder(frames["vehicles"], frames["vehicles_mask"])))
    mask, truth = frames["vehicles_mask"][:, None], frames["vehicles"][:, None]
    values = values[:, None]

    def error(columns: slice) -> float:
        return displacement_errors(values[..., columns], truth[..., columns], mask)["fde"].item()

    return {"heldout_position_error": error(slice(0, 2)),
            "heldout_velocity_error": error(slice(2, 4)),
            "heldout_existence_f1": existence_f1(exists[:, None], mask).item()}


class FlatEncoder(torch.nn.Module):
    """Reference, not a set encoder: an MLP on the whole padded set flattened (absent slots
    zeroed, the mask as a column), so slot ``k`` has its own input weights; ``[*B, units]``."""

    def __init__(self, slots: int, features: int, units: int):
        super().__init__()
        width, nn = 2 * units, torch.nn
        self.net = nn.Sequential(nn.Flatten(-2), nn.Linear(slots * (features + 1), width),
                                 nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width),
                                 nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, units),
                                 nn.LayerNorm(units), nn.SiLU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        present = mask[..., None].to(x.dtype)
        return self.net(torch.cat([x * present, present], -1))


def run(units: int, args, rows: list[dict], emit) -> None:
    torch.manual_seed(0)
    frames = traffic_sequences(args.train_sequences, 100, seed=100).reshape(-1)
    heldout = traffic_sequences(16, 50, seed=10_000).reshape(-1)
    slots, features = frames["vehicles"].shape[-2:]
    encoder = (FlatEncoder(slots, features, units) if args.encoder == "flat" else
               SetEncoder(features, discrete=VEHICLE_DISCRETE_COLUMNS, units=units, layers=2,
                          heads=4, slot_ids=slots))
    decoder = SetDecoder(units, slots=slots, features=features,
                         discrete=VEHICLE_DISCRETE_COLUMNS, units=units)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    for step in range(args.updates + 1):
        batch = frames[torch.randint(0, frames.shape[0], (args.batch,), generator=generator)]
        prediction = decoder(encoder(batch["vehicles"], batch["vehicles_mask"]))
        reconstruction, existence = decoder.loss(prediction, batch["vehicles"],
                                                 batch["vehicles_mask"])
        loss = (reconstruction + existence).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            with torch.no_grad():
                values, _ = decoder.decode(prediction)
                mask = batch["vehicles_mask"]
                error = ((values[..., :2] - batch["vehicles"][..., :2]).norm(dim=-1) * mask).sum()
            rows.append({"units": units, "encoder": args.encoder, "update": step,
                         "reconstruction": reconstruction.mean().item(),
                         "existence": existence.mean().item(),
                         "position_error": (error / mask.sum()).item(),
                         **_heldout(encoder, decoder, heldout)})
            emit()


def run_sequence(hidden: int, args, rows: list[dict], emit) -> None:
    """The traffic baseline (set encoder, GRU of ``hidden`` units, set decoders), teacher
    forced on windows of ``--window`` steps (batch ``--sequences``) as
    ``traffic_prediction.py`` trains it: the position error of its reconstruction of the
    current frame, every 100 updates (the GRU between the set encoder and the decoder is
    the only difference from the single-frame autoencoder)."""
    from torchrl_vta.modules.set_baseline import DeterministicSetModel

    torch.manual_seed(0)
    data = traffic_sequences(64, 200, seed=100)
    slots, features = data["vehicles"].shape[-2:]
    model = DeterministicSetModel(slots, features, discrete=VEHICLE_DISCRETE_COLUMNS,
                                  units=args.units[0], hidden=hidden, layers=2, heads=4,
                                  slot_ids=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    for step in range(args.updates + 1):
        rows_index = torch.randint(0, data.shape[0], (args.sequences,), generator=generator)
        starts = torch.randint(0, data.shape[1] - args.window + 1, (args.sequences,), generator=generator)
        window = data[rows_index[:, None], starts[:, None] + torch.arange(args.window)]
        losses = model.loss(window["vehicles"], window["vehicles_mask"])
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                reconstruction, _, _ = model(window["vehicles"], window["vehicles_mask"])
                values, _ = model.reconstruct.decode(reconstruction)
                mask = window["vehicles_mask"]
                error = ((values[..., :2] - window["vehicles"][..., :2]).norm(dim=-1) * mask).sum()
            rows.append({"units": args.units[0], "gru_hidden": hidden, "update": step,
                         "loss": losses["loss"].item(),
                         "position_error": (error / mask.sum()).item()})
            emit()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-sequences", type=int, default=32,
                        help="training sequences of 100 frames for the single-frame autoencoder")
    parser.add_argument("--encoder", choices=("set", "flat"), default="set",
                        help="flat: a reference MLP on the flattened padded set instead of "
                             "SetEncoder (the decoder stays SetDecoder)")
    parser.add_argument("--gru-hidden", type=int, nargs="*", default=[],
                        help="instead: the teacher-forced sequence baseline with these GRU widths "
                             "(set width: the first --units)")
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": 1, "date": datetime.date.today().isoformat()},
              "command": " ".join(["python", *sys.argv]), "rows": []}

    def emit() -> None:
        # Each row as it comes (stderr, and the --out file rewritten), so a long or killed
        # run keeps what it measured.
        sys.stderr.write(json.dumps(report["rows"][-1]) + "\n")
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")

    if args.gru_hidden:
        for hidden in args.gru_hidden:
            run_sequence(hidden, args, report["rows"], emit)
    else:
        for units in args.units:
            run(units, args, report["rows"], emit)
    if not args.out:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
