"""Learner-update speed, side by side with TorchRL's own DreamerV3, in one process.

For each size (DreamerV3's size1m / size12m settings) and batch (16 x 64, 4 x 16;
64 x 64 images, 6-d continuous actions) it times, as the median of several runs
after warm-up:

* ``world_model``: world-model loss forward + backward + optimiser step;
* ``learner``: the full learner update (world model, imagination of 15 steps
  from every posterior state, actor, critic, optimiser steps, slow critic);

for TorchRL's DreamerV3 (``RSSMRolloutV3``, ``DreamerV3ModelLoss``,
``DreamerEnv`` + ``DreamerV3ActorLoss``, ``DreamerV3ValueLoss``) and for our
model at ``levels=1``, ``levels=2`` and ``levels=3``, with matched widths (GRU belief, hidden
width, 32-way categorical latents of the size's classes, CNN depth, head
units), and reports times, ratios and peak memory (CPU: peak RSS increase
sampled during the call; CUDA: ``max_memory_allocated``). Our ``levels>=2`` models'
abstract beliefs are ``--abstract-fraction`` of ``deter`` wide (every abstract level): 0.25 by default, as
the ``size12m``/``size25m`` presets; ``--abstract-fraction 1`` times equal widths.

    python benchmarks/bench_update.py                       # everything; 6 min on an idle 2-core CPU
    python benchmarks/bench_update.py --abstract-fraction 1 # levels=2 at equal widths
    python benchmarks/bench_update.py --sizes size1m --batches 4x16 --reps 3
    python benchmarks/bench_update.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from datetime import date

import torch
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs.model_based import DreamerEnv
from torchrl.modules import (
    DreamerV3ImageDecoder,
    DreamerV3ImageEncoder,
    DreamerV3MLP,
    NormalParamExtractor,
    RSSMPosteriorV3,
    RSSMPriorV3,
    RSSMRolloutV3,
    SymExpTwoHot,
    TanhNormal,
    WorldModelWrapper,
)
from torchrl.objectives import (
    DreamerV3ActorLoss,
    DreamerV3ModelLoss,
    DreamerV3ValueLoss,
    SoftUpdate,
)

from torchrl_vta import Agent, Learner, WorldModelLoss

SIZES = {
    # DreamerV3 (2025) size presets, REFERENCE §1: deter, hidden, classes, CNN depth, units.
    "size1m": dict(deter=512, hidden=64, classes=4, depth=4, units=64),
    "size12m": dict(deter=2048, hidden=256, classes=16, depth=16, units=256),
}
MULTS = (2, 3, 4, 4)
ACTION_DIM = 6
HORIZON = 15


def fake_batch(batch: int, steps: int, device) -> TensorDict:
    gen = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "action": torch.rand(batch, steps, ACTION_DIM, generator=gen) * 2 - 1,
            "is_init": torch.zeros(batch, steps, 1, dtype=torch.bool),
            "next": {
                "pixels": torch.randint(0, 256, (batch, steps, 3, 64, 64), generator=gen, dtype=torch.uint8),
                "reward": torch.randn(batch, steps, 1, generator=gen),
                "terminated": torch.zeros(batch, steps, 1, dtype=torch.bool),
                "done": torch.zeros(batch, steps, 1, dtype=torch.bool),
            },
        },
        [batch, steps],
    ).to(device)


# ----------------------------------------------------------------------------- ours
class _Specs:
    observation_spec = Composite(pixels=Bounded(0, 255, (3, 64, 64), dtype=torch.uint8))
    action_spec = Bounded(-1, 1, (ACTION_DIM,))


def ours(size: dict, levels: int, device, abstract_fraction: float = 1.0):
    agent = Agent.from_env(
        _Specs,
        preset="test",
        levels=levels,
        encoder=dict(cnn_depth=size["depth"], cnn_mults=MULTS, cnn_kernel=5),
        rssm=dict(
            belief_dim=size["deter"], abs_belief_dim=int(size["deter"] * abstract_fraction),
            hidden=size["hidden"], latent="categorical",
            groups=32, classes=size["classes"], boundary_hidden=size["hidden"],
            boundary_proj_dim=size["hidden"],
        ),
        decoder=dict(cnn_blocks=8),
        head=dict(layers=1, units=size["units"]),
    ).to(device)
    learner = Learner(agent, horizon=HORIZON)
    model_opt = learner.optimizers[0]

    def world_model_step(batch):
        losses = learner.world_model_loss(batch)
        model_opt.zero_grad(set_to_none=True)
        WorldModelLoss.total(losses).backward()
        model_opt.step()

    return world_model_step, learner.update, agent


# -------------------------------------------------------------------------- TorchRL
def torchrl_dreamer(size: dict, device):
    deter, hidden, classes, units = size["deter"], size["hidden"], size["classes"], size["units"]
    stoch = 32 * classes
    encoder = DreamerV3ImageEncoder(3, depth=size["depth"], mults=MULTS, kernel_size=5)
    embed = encoder.output_features((3, 64, 64))
    prior_net = RSSMPriorV3(
        action_shape=(ACTION_DIM,), action_dim=ACTION_DIM, hidden_dim=hidden,
        rnn_hidden_dim=deter, num_categoricals=32, num_classes=classes, unimix=0.01,
    )
    posterior_net = RSSMPosteriorV3(
        hidden_dim=hidden, rnn_hidden_dim=deter, obs_embed_dim=embed,
        num_categoricals=32, num_classes=classes, unimix=0.01,
    )
    decoder = DreamerV3ImageDecoder(stoch + deter, (3, 64, 64), depth=size["depth"], mults=MULTS, kernel_size=5)
    reward_net = DreamerV3MLP(stoch + deter, 255, depth=1, num_cells=units, outscale=0.0)
    continue_net = DreamerV3MLP(stoch + deter, 1, depth=1, num_cells=units)
    prior = TensorDictModule(
        prior_net, in_keys=["state", "belief", "action"],
        out_keys=[("next", "prior_logits"), ("next", "state"), ("next", "belief")],
    )
    posterior = TensorDictModule(
        posterior_net, in_keys=[("next", "belief"), ("next", "encoded_latents")],
        out_keys=[("next", "posterior_logits"), ("next", "state")],
    )
    latent = [("next", "state"), ("next", "belief")]
    world_model = TensorDictSequential(
        TensorDictModule(encoder, [("next", "pixels")], [("next", "encoded_latents")]),
        RSSMRolloutV3(prior, posterior),
        TensorDictModule(decoder, latent, [("next", "reco_pixels")]),
        TensorDictModule(reward_net, latent, [("next", "reward_logits")]),
        TensorDictModule(continue_net, latent, [("next", "continue_pred")]),
    ).to(device)
    model_loss = DreamerV3ModelLoss(
        world_model, kl_mode="separate", lambda_dynamic=0.5, lambda_representation=0.1,
        unimix=0.01, lambda_continue=1.0, reco_symlog=False,
    )
    two_hot = SymExpTwoHot()
    imagination = WorldModelWrapper(
        TensorDictModule(prior_net, ["state", "belief", "action"], ["_", "state", "belief"]),
        TensorDictSequential(
            TensorDictModule(reward_net, ["state", "belief"], ["reward_logits"]),
            TensorDictModule(two_hot, ["reward_logits"], ["reward"]),
        ),
    )
    env = DreamerEnv(imagination, prior_shape=(stoch,), belief_shape=(deter,))
    env.observation_spec = Composite(state=Unbounded(stoch), belief=Unbounded(deter))
    env.state_spec = env.observation_spec.clone()
    env.action_spec = Bounded(-1, 1, (ACTION_DIM,))
    env.reward_spec = Unbounded((1,))
    env = env.to(device)
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(DreamerV3MLP(stoch + deter, 2 * ACTION_DIM, depth=2, num_cells=units),
                         ["state", "belief"], ["params"]),
        TensorDictModule(NormalParamExtractor(), ["params"], ["loc", "scale"]),
        ProbabilisticTensorDictModule(["loc", "scale"], ["action"], distribution_class=TanhNormal,
                                      return_log_prob=True),
    ).to(device)
    value = TensorDictSequential(
        TensorDictModule(DreamerV3MLP(stoch + deter, 255, depth=2, num_cells=units, outscale=0.0),
                         ["state", "belief"], ["state_value_logits"]),
        TensorDictModule(two_hot, ["state_value_logits"], ["state_value"]),
    ).to(device)
    continuation = TensorDictModule(continue_net, ["state", "belief"], ["continuation_logits"])
    actor_loss = DreamerV3ActorLoss(actor, value, env, imagination_horizon=HORIZON)
    value_loss = DreamerV3ValueLoss(value, value_loss="two_hot", slow_critic_regularization=1.0,
                                    actor_loss=actor_loss)
    updater = SoftUpdate(value_loss, tau=0.02)
    model_opt = torch.optim.Adam(world_model.parameters(), lr=1e-4, eps=1e-8)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-5, eps=1e-5)
    value_opt = torch.optim.Adam(value.parameters(), lr=3e-5, eps=1e-5)
    del continuation  # TorchRL's actor loss weights imagined steps by its own discount.

    def world_model_step(batch):
        # TorchRL's rollout starts from stored state/belief entries (zeros here).
        batch.set("state", torch.zeros(*batch.shape, stoch, device=device))
        batch.set("belief", torch.zeros(*batch.shape, deter, device=device))
        losses, sampled = model_loss(batch)
        model_opt.zero_grad(set_to_none=True)
        sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
        nn.utils.clip_grad_norm_(world_model.parameters(), 1000.0)
        model_opt.step()
        return sampled

    def learner_step(batch):
        sampled = world_model_step(batch)
        start = sampled.select(("next", "state"), ("next", "belief")).get("next").reshape(-1).detach()
        actor_losses, imagined = actor_loss(start)
        actor_opt.zero_grad(set_to_none=True)
        actor_losses["loss_actor"].backward()
        nn.utils.clip_grad_norm_(actor.parameters(), 100.0)
        actor_opt.step()
        value_losses, _ = value_loss(imagined.detach())
        value_opt.zero_grad(set_to_none=True)
        value_losses["loss_value"].backward()
        nn.utils.clip_grad_norm_(value.parameters(), 100.0)
        value_opt.step()
        updater.step()

    return world_model_step, learner_step, world_model


# ------------------------------------------------------------------------- timing
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(step, batch, *, warmup: int, reps: int, device) -> tuple[float, float]:
    """Median seconds per call and peak memory increase (MiB) over the timed calls."""
    for _ in range(warmup):
        step(batch.clone())
    times = []
    peak = 0.0
    for _ in range(reps):
        data = batch.clone()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss()
            highest = [base]
            running = [True]

            def sample():
                while running[0]:
                    highest[0] = max(highest[0], _rss())
                    time.sleep(0.002)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        start = time.perf_counter()
        step(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = max(peak, (torch.cuda.max_memory_allocated() - base) / 2**20)
        times.append(time.perf_counter() - start)
        if device.type != "cuda":
            running[0] = False
            sampler.join()
            peak = max(peak, (highest[0] - base) / 2**20)
    return statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batches", nargs="+", default=["16x64", "4x16"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--abstract-fraction", type=float, default=0.25,
        help="levels=2 abstract belief width as a fraction of deter (0.25: the size12m/size25m "
             "presets; 1: equal widths, the library default)",
    )
    parser.add_argument("--out", default="benchmarks/results/bench_update.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    for size_name in args.sizes:
        size = SIZES[size_name]
        builders = {
            "torchrl": lambda: torchrl_dreamer(size, device)[:2],
            "ours_l1": lambda: ours(size, 1, device)[:2],
            "ours_l2": lambda: ours(size, 2, device, args.abstract_fraction)[:2],
            "ours_l3": lambda: ours(size, 3, device, args.abstract_fraction)[:2],
        }
        steps = {name: build() for name, build in builders.items()}
        for batch_name in args.batches:
            b, t = map(int, batch_name.split("x"))
            batch = fake_batch(b, t, device)
            for part, index in (("world_model", 0), ("learner", 1)):
                result = {"size": size_name, "batch": batch_name, "part": part}
                for name, pair in steps.items():
                    seconds, memory = measure(pair[index], batch, warmup=args.warmup, reps=args.reps, device=device)
                    result[f"{name}_s"] = seconds
                    result[f"{name}_mib"] = memory
                result["l1_vs_torchrl"] = result["ours_l1_s"] / result["torchrl_s"]
                result["l2_vs_l1"] = result["ours_l2_s"] / result["ours_l1_s"]
                result["l3_vs_l1"] = result["ours_l3_s"] / result["ours_l1_s"]
                rows.append(result)
                print(
                    f"{size_name:8s} {batch_name:6s} {part:12s} torchrl {result['torchrl_s']:7.3f}s "
                    f"ours L1 {result['ours_l1_s']:7.3f}s L2 {result['ours_l2_s']:7.3f}s "
                    f"L3 {result['ours_l3_s']:7.3f}s | L1/torchrl {result['l1_vs_torchrl']:.2f}  "
                    f"L2/L1 {result['l2_vs_l1']:.2f}  L3/L1 {result['l3_vs_l1']:.2f} | peak MiB "
                    f"{result['torchrl_mib']:.0f}/{result['ours_l1_mib']:.0f}/"
                    f"{result['ours_l2_mib']:.0f}/{result['ours_l3_mib']:.0f}",
                    flush=True,
                )
    meta = {
        "date": str(date.today()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "command": "python benchmarks/bench_update.py " + " ".join(
            f"--{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
            if v is not None
        ),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
