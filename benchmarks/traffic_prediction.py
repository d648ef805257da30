"""Trajectory prediction on the ``traffic`` world: the hierarchical stochastic world model
against the deterministic set baseline, with the same data, updates and batch.

Per seed, both models train on windows of scripted-signal sequences
(:func:`torchrl_vta.envs.traffic.traffic_sequences`) and predict held-out sequences
(other seeds of the generator) open loop from a context window:

* ``vta``: :func:`~torchrl_vta.make_world_model` (two levels, the set path of the
  encoder/decoder, surprise boundaries by default) trained by
  :class:`~torchrl_vta.WorldModelLoss`; its prediction is ``rssm.generate`` (the prior,
  sampled) decoded by the set decoder, reported as the mean of ``--samples`` samples and
  as best-of-N;
* ``baseline``: :class:`~torchrl_vta.modules.set_baseline.DeterministicSetModel` (set
  encoder, GRU with teacher forcing, Huber + prediction + existence losses), feeding its
  own predictions back.

Reported per horizon 1..H: ADE, FDE (positions ``x, y`` of the vehicles present in the
truth, by slot), existence F1; the same scores of two references (constant velocity from
the last context frame, and its set of vehicles kept); each model's filtering quality (its
reconstruction of the context frames: ``filter_position_error``, ``filter_existence_f1``),
which bounds its predictions; the boundary F1 (τ = 0/1/2) of the hierarchical model's
posterior READs (forcing off) against the signal-phase events on the held-out sequences;
with ``--eval-every N``, learning curves of these scores every ``N`` updates. The world
model's existence BCE weight is ``--existence-scale`` (5 in ``env=traffic``'s recipe config
and the committed 3-seed rows; 1, the library default, in the older rows)::

    python benchmarks/traffic_prediction.py --seeds 0 1 2 --updates 2000 --existence-scale 5 --out benchmarks/results/traffic_prediction.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data import Categorical, Composite, Unbounded

from torchrl_vta import WorldModelLoss, make_world_model
from torchrl_vta.envs.traffic import VEHICLE_DISCRETE_COLUMNS, traffic_sequences
from torchrl_vta.metrics import boundary_scores
from torchrl_vta.modules.set_baseline import DeterministicSetModel
from torchrl_vta.prediction_metrics import best_of_n, displacement_errors, existence_f1

POSITION = [0, 1]  # x, y columns of the vehicle features


def _windows(data: TensorDict, batch: int, length: int, generator: torch.Generator) -> TensorDict:
    rows = torch.randint(0, data.shape[0], (batch,), generator=generator)
    starts = torch.randint(0, data.shape[1] - length + 1, (batch,), generator=generator)
    index = starts[:, None] + torch.arange(length)
    return data[rows[:, None], index]


def _loss_input(window: TensorDict) -> TensorDict:
    batch, steps = window.shape
    zeros = torch.zeros(batch, steps, 1)
    is_init = torch.zeros(batch, steps, 1, dtype=torch.bool)
    is_init[:, 0] = True
    return TensorDict({"action": torch.zeros(batch, steps, 0), "is_init": is_init,
                       "next": {"vehicles": window["vehicles"],
                                "vehicles_mask": window["vehicles_mask"],
                                "reward": zeros, "terminated": zeros.bool()}},
                      batch_size=[batch, steps])


def train(model, loss_fn, data, args, generator, evaluate=None) -> tuple[float, list[dict]]:
    """``args.updates`` Adam steps on random windows: ``(training seconds, curve)``, the
    curve holding ``evaluate()`` every ``args.eval_every`` updates (none when 0), its time
    and its random draws left out (the trained model is the one a run without a curve gets)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    seconds, curve = 0.0, []
    for update in range(args.updates + 1):
        if evaluate is not None and args.eval_every and update % args.eval_every == 0:
            with torch.random.fork_rng():  # sampled predictions leave training's draws alone
                curve.append({"update": update, **evaluate()})
        if update == args.updates:
            break
        start = time.perf_counter()
        model.train()
        window = _windows(data, args.batch, args.window, generator)
        loss = loss_fn(window)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        optimizer.step()
        seconds += time.perf_counter() - start
    return seconds, curve


@torch.no_grad()
def predict_vta(model, context: TensorDict, horizon: int, samples: int):
    """``samples`` open-loop futures: positions ``[N, B, H, K, 2]``, existence ``[N, B, H, K]``."""
    model.eval()
    repeated = context.expand(samples, *context.shape).reshape(-1, context.shape[-1])
    embed = model.encoder(repeated["vehicles"], repeated["vehicles_mask"])
    batch, steps = embed.shape[:2]
    with model.rssm.sampling():  # N different futures of one context
        out = model.rssm.generate(embed, embed.new_zeros(batch, steps, 0),
                                  embed.new_zeros(batch, horizon, 0), mode="full")
    prediction = dict(zip(model.decoder.out_keys, model.decoder(out["obs_feature"])))["vehicles"]
    values, exists = model.decoder.sets[0].decode(prediction)
    shape = (samples, context.shape[0], horizon)
    return values[..., POSITION].reshape(*shape, *values.shape[-2:-1], 2), exists.reshape(
        *shape, exists.shape[-1])


def _filtering(values: torch.Tensor, exists: torch.Tensor, frames: TensorDict) -> dict:
    """Position error (vehicles present) and existence F1 of reconstructed ``frames``
    ``[B, T]``, every frame scored as one horizon step of its own."""
    def frame_wise(x):
        return x.flatten(0, 1)[:, None]

    mask = frame_wise(frames["vehicles_mask"])
    error = displacement_errors(frame_wise(values[..., POSITION]),
                                frame_wise(frames["vehicles"][..., POSITION]), mask)["fde"]
    return {"filter_position_error": error.item(),
            "filter_existence_f1": existence_f1(frame_wise(exists), mask).item()}


@torch.no_grad()
def vta_filtering(model, frames: TensorDict) -> dict:
    """:func:`_filtering` of the posterior's reconstruction of ``frames`` ``[B, T]``."""
    model.eval()
    embed = model.encoder(frames["vehicles"], frames["vehicles_mask"])
    steps, _ = model.rssm.observe(embed, embed.new_zeros(*embed.shape[:2], 0))
    feature = torch.cat([steps["belief"], steps["state"]], -1)
    prediction = dict(zip(model.decoder.out_keys, model.decoder(feature)))["vehicles"]
    return _filtering(*model.decoder.sets[0].decode(prediction), frames)


@torch.no_grad()
def baseline_filtering(model, frames: TensorDict) -> dict:
    """:func:`_filtering` of the baseline's (teacher-forced) reconstruction of ``frames``."""
    model.eval()
    reconstruction, _, _ = model(frames["vehicles"], frames["vehicles_mask"])
    return _filtering(*model.reconstruct.decode(reconstruction), frames)


@torch.no_grad()
def vta_boundaries(model, test: TensorDict) -> dict:
    """Boundary F1 (τ = 0/1/2) of the posterior READs, forcing off, against the events."""
    model.eval()
    policy = model.rssm.segment_policy
    with policy.limits("off"):
        td = model(_loss_input(test))
    read = td["next", "boundary"][..., 0].bool()
    events = test["event"][..., 0].bool()
    # Frame 0 is a structural READ (the sequence start), never an event.
    read[:, 0] = False
    scores = {f"f1_tau{tau}": boundary_scores(read, events, tolerance=tau)["f1"] for tau in (0, 1, 2)}
    scores.update(read_rate=read.float().mean().item(), event_rate=events.float().mean().item())
    return scores


def _summary(errors: dict, f1: torch.Tensor, horizons) -> dict:
    return {"ade": {h: errors["ade"][h - 1].item() for h in horizons},
            "fde": {h: errors["fde"][h - 1].item() for h in horizons},
            "existence_f1": {h: f1[h - 1].item() for h in horizons}}


def score_vta(vta, context: TensorDict, future: TensorDict, args, horizons) -> tuple[dict, dict]:
    """``(mean of the samples, best of the samples)`` scores of the open-loop prediction."""
    truth, mask = future["vehicles"][..., POSITION], future["vehicles_mask"]
    positions, exists = predict_vta(vta, context, args.horizon, args.samples)
    mean = _summary(displacement_errors(positions.mean(0), truth, mask),
                    existence_f1(exists.mean(0), mask), horizons)
    best = best_of_n(positions, truth, mask)
    return mean, {"ade": {h: best["ade"][h - 1].item() for h in horizons},
                  "fde": {h: best["fde"][h - 1].item() for h in horizons}}


@torch.no_grad()
def score_baseline(baseline, context: TensorDict, future: TensorDict, args, horizons) -> dict:
    """Scores of the baseline's open-loop prediction (its predictions fed back)."""
    baseline.eval()
    values, exists = baseline.rollout(context["vehicles"], context["vehicles_mask"], args.horizon)
    mask = future["vehicles_mask"]
    return _summary(displacement_errors(values[..., POSITION], future["vehicles"][..., POSITION],
                                        mask), existence_f1(exists, mask), horizons)


def _curve_point(scores: dict, filtering: dict) -> dict:
    first, last = min(scores["fde"]), max(scores["fde"])
    return {f"fde_h{first}": scores["fde"][first], f"fde_h{last}": scores["fde"][last],
            f"existence_f1_h{first}": scores["existence_f1"][first], **filtering}


def reference_scores(context: TensorDict, future: TensorDict, horizons) -> dict:
    """For scale: constant velocity from the last context frame (ADE/FDE) and its set of
    vehicles kept unchanged (existence F1)."""
    last = context["vehicles"][:, -1]
    horizon = future.shape[1]
    steps = torch.arange(1, horizon + 1, dtype=last.dtype).view(1, -1, 1, 1)
    velocity = last[..., None, :, 2:4].expand(-1, horizon, -1, -1)
    constant = last[..., None, :, POSITION] + steps * velocity
    mask = future["vehicles_mask"]
    errors = displacement_errors(constant, future["vehicles"][..., POSITION], mask)
    kept = existence_f1(context["vehicles_mask"][:, -1:].float().expand_as(mask), mask)
    scores = _summary(errors, kept, horizons)
    return {"constant_velocity": {key: scores[key] for key in ("ade", "fde")},
            "last_set_kept": {"existence_f1": scores["existence_f1"]}}


def run_seed(seed: int, args) -> dict:
    torch.manual_seed(seed)
    length = args.context + args.horizon
    data = traffic_sequences(args.train_sequences, args.train_length, seed=100 + seed)
    test = traffic_sequences(args.test_sequences, length, seed=10_000 + seed)
    context, future = test[:, : args.context], test[:, args.context:]
    horizons = [h for h in (1, 5, 10, 20, 30) if h <= args.horizon]
    slots, features = data["vehicles"].shape[-2:]
    spec = Composite(vehicles=Unbounded((slots, features)),
                     vehicles_mask=Categorical(2, (slots,), dtype=torch.bool))
    vta = make_world_model(spec, Unbounded((0,)), preset=args.preset, levels=2,
                           encoder=dict(set_discrete=VEHICLE_DISCRETE_COLUMNS,
                                        set_slot_ids=args.slot_ids),
                           rssm=dict(boundary_kind=args.boundary_kind),
                           decoder=dict(set_existence_scale=args.existence_scale))
    vta_loss = WorldModelLoss(vta, reward_scale=0.0)

    def vta_step(window):
        losses = vta_loss(_loss_input(window))
        return sum(v for k, v in losses.items() if k.startswith("loss_"))

    baseline = DeterministicSetModel(slots, features, discrete=VEHICLE_DISCRETE_COLUMNS,
                                     units=vta.encoder.set_units, hidden=vta.rssm.obs_feature_dim,
                                     layers=vta.encoder.set_layers, heads=vta.encoder.set_heads,
                                     slot_ids=args.slot_ids)
    # Both models are built whatever --models says, so that each starts from the same
    # initial weights (the global seed's draws) as in a run of both.
    report = {"seed": seed, "train_seconds": {}, **reference_scores(context, future, horizons)}
    curves = {}
    if "vta" in args.models:
        report["train_seconds"]["vta"], curves["vta"] = train(
            vta, vta_step, data, args, torch.Generator().manual_seed(seed),
            lambda: _curve_point(score_vta(vta, context, future, args, horizons)[0],
                                 vta_filtering(vta, context)))
        vta_mean, report["vta_best_of_n"] = score_vta(vta, context, future, args, horizons)
        report["vta_mean"] = {**vta_mean, **vta_filtering(vta, context)}
        report["boundaries"] = vta_boundaries(vta, test)
    if "baseline" in args.models:
        report["train_seconds"]["baseline"], curves["baseline"] = train(
            baseline, lambda w: baseline.loss(w["vehicles"], w["vehicles_mask"])["loss"], data,
            args, torch.Generator().manual_seed(seed),  # its own windows: the same without the VTA
            lambda: _curve_point(score_baseline(baseline, context, future, args, horizons),
                                 baseline_filtering(baseline, context)))
        report["baseline"] = {**score_baseline(baseline, context, future, args, horizons),
                              **baseline_filtering(baseline, context)}
    if args.eval_every:
        report["curves"] = curves
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--context", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--train-sequences", type=int, default=64)
    parser.add_argument("--train-length", type=int, default=200)
    parser.add_argument("--test-sequences", type=int, default=64)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--boundary-kind", default="surprise")
    parser.add_argument("--existence-scale", type=float, default=1.0,
                        help="the world model's weight of the existence BCE "
                             "(model.decoder.set_existence_scale)")
    parser.add_argument("--models", nargs="+", choices=("vta", "baseline"),
                        default=["vta", "baseline"],
                        help="which models to train (each draws its windows from its own "
                             "generator, so a model's result does not depend on this choice)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=0,
                        help="also score both models on the held-out sequences every this many "
                             "updates (learning curves under 'curves'; 0: only at the end)")
    parser.add_argument("--no-slot-ids", dest="slot_ids", action="store_false",
                        help="a slot-order-invariant set embedding (the decoder then cannot "
                             "tell which vehicle is in which slot)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": args.threads, "date": datetime.date.today().isoformat()},
              "args": vars(args) | {"out": str(args.out)},
              "seeds": []}
    for seed in args.seeds:
        report["seeds"].append(run_seed(seed, args))
        if args.out:  # after every seed: a long run keeps what it measured
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.out:
        print(json.dumps(report, indent=1))  # noqa: T201 (a script's output)


if __name__ == "__main__":
    main()
