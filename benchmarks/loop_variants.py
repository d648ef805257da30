"""Does a change to the update's inner loops pay? A/B timings of each candidate.

Issue 7 asks for preallocated loop buffers and fused optimiser parameter groups,
measured one by one and kept only where they pay. This script times each
candidate against the library's current code on the same model and batch,
interleaving the two (A B A B ...) so that load from other processes hits both
alike, and reports the median of each and their ratio:

* ``observe``: the filtering loop of the world-model loss collects per-step
  outputs in lists and stacks them once per key (library) vs. writes each step
  into buffers preallocated as ``[*B, T, ...]`` (candidate). Timed: world-model
  loss forward + backward.
* ``imagine``: the imagination loop, same two ways (features, actions and
  segment counters). Timed: actor loss forward + backward.
* ``adam``: the three Adams with PyTorch's default multi-tensor (``foreach``)
  kernels (library) vs. ``fused=True``. Timed: the full learner update.

    python benchmarks/loop_variants.py                      # preset cpu, 8 x 32
    python benchmarks/loop_variants.py --batch 16x64 --reps 7

The candidates live here, not in the library: only what pays moves there.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date

import torch
from tensordict import TensorDict
from bench_update import _Specs, fake_batch  # same synthetic replay batch as bench_update.py
from torchrl_vta import Agent, Learner, WorldModelLoss
from torchrl_vta.modules import rssm_state as rssm_module
from torchrl_vta.objectives import actor_loss, imagination

class _Buffers:
    """Per-key ``[*B, T, ...]`` buffers, allocated at the first step and written in place."""

    def __init__(self, steps: int):
        self.steps = steps
        self.data: dict[str, torch.Tensor] = {}

    def write(self, t: int, key: str, value: torch.Tensor) -> None:
        if key not in self.data:
            batch = value.shape[: value.ndim - 1]
            self.data[key] = value.new_empty(*batch, self.steps, value.shape[-1])
        self.data[key].select(-2, t).copy_(value)

    def record(self, t: int, state, step) -> None:
        for key, value in zip(rssm_module.RSSMState._fields, state):
            if key != "boundary_context":
                self.write(t, key, value)
        for key, value in zip(rssm_module.RSSMStep._fields, step):
            if value is not None:
                self.write(t, key, value)


def observe_preallocated(self, embed, action, is_init=None, state=None):
    """``HierarchicalRSSM.observe`` with the per-step outputs written into buffers."""
    *batch, steps, _ = embed.shape
    resets = [False] * steps
    if is_init is not None:
        is_init = is_init.reshape(*batch, steps).bool()
        resets = is_init.reshape(-1, steps).any(0).tolist()
    fresh = state is None
    if fresh:
        state = self.initial_state(batch, embed.device, embed.dtype)
    sequence_logits = None
    if self.levels == 2 and (fresh or not self.boundary_posterior.causal):
        sequence_logits = self.boundary_posterior(embed, is_init)
    buffers = _Buffers(steps)
    for t in range(steps):
        state, step = self.obs_step_fn(
            state,
            action[..., t, :],
            embed[..., t, :],
            is_init[..., t] if resets[t] else None,
            boundary_logits=sequence_logits[..., t, :] if sequence_logits is not None else None,
            first=t == 0,
        )
        buffers.record(t, state, step)
    if sequence_logits is not None and self.boundary_posterior.causal:
        state = state._replace(boundary_context=self.boundary_posterior.final_context(embed, is_init))
    return buffers.data, state


def imagine_preallocated(rssm, actor, reward_head, continue_head, start, horizon, *,
                         start_continue=None, start_boundary=None, gamma=imagination.DEFAULT_GAMMA,
                         backprop=True, **_keys):
    """``imagine_trajectories`` (default keys) with features/actions/counters in buffers."""
    batch = start.belief.shape[:-1]
    state = rssm.imagination_start(rssm_module.RSSMState(*(x.detach() for x in start)))
    buffers = _Buffers(horizon + 1)
    boundaries = _Buffers(horizon + 1) if rssm.levels == 2 else None
    with imagination.frozen(rssm, reward_head, continue_head), torch.set_grad_enabled(
        torch.is_grad_enabled() and backprop
    ):
        for t in range(horizon + 1):
            feature = rssm.feature(state)
            action = actor(TensorDict({"feature": feature}, batch)).get("action")
            buffers.write(t, "feature", feature)
            buffers.write(t, "action", action)
            buffers.write(t, "seg_len", state.seg_len)
            if t == horizon:
                break
            state, step = rssm.img_step_fn(state, action.to(feature.dtype))
            if boundaries is not None:
                boundaries.write(t + 1, "boundary", step.boundary)
        feature, action = buffers.data["feature"], buffers.data["action"]
        reward = reward_head.mean(reward_head(feature))
        cont = continue_head.prob(continue_head(feature)) if continue_head is not None else torch.ones_like(reward)
    first = torch.ones_like(cont[..., 0, :]) if start_continue is None else start_continue.reshape(
        cont[..., 0, :].shape).to(cont.dtype)
    cont = torch.cat([first.unsqueeze(-2), cont[..., 1:, :]], -2)
    discount = torch.cat([cont[..., :1, :], gamma * cont[..., 1:, :]], -2).cumprod(-2).detach()
    log_prob, entropy = imagination.policy_log_prob_entropy(actor, feature, action)
    out = TensorDict(
        {"feature": feature, "action": action, "action_log_prob": log_prob, "action_entropy": entropy,
         "reward": reward, "continue": cont, "discount_weight": discount,
         "seg_len": buffers.data["seg_len"]},
        batch_size=(*batch, horizon + 1),
    )
    if boundaries is not None:
        boundary = boundaries.data["boundary"]
        boundary.select(-2, 0).copy_(
            torch.zeros_like(boundary.select(-2, 0)) if start_boundary is None
            else start_boundary.reshape(boundary.select(-2, 0).shape).to(boundary.dtype))
        out.set("boundary", boundary)
    return out


class _TensorPolicy:
    """The actor called on tensors: ``ActorNet -> distribution -> sample``, no TensorDict
    module machinery (which also computes a log-probability the loop throws away)."""

    def __init__(self, actor):
        self.actor = actor
        self.net = actor.module[0].module
        self.sampler = actor.module[-1]
        self.in_keys, self.out_keys = actor.in_keys, actor.out_keys

    def __call__(self, td: TensorDict) -> TensorDict:
        params = self.net(td.get("feature"))
        params = params if isinstance(params, tuple) else (params,)
        dist = self.sampler.distribution_class(**dict(zip(self.sampler.in_keys, params)),
                                               **self.sampler.distribution_kwargs)
        action = dist.rsample() if dist.has_rsample else dist.sample()
        return TensorDict({"action": action}, td.batch_size)

    def get_dist(self, td):
        return self.actor.get_dist(td)


def imagine_tensor_policy(rssm, actor, *args, **kwargs):
    """``imagine_trajectories`` with the actor called on tensors inside the loop."""
    return imagination.imagine_trajectories(rssm, _TensorPolicy(actor), *args, **kwargs)


def build(preset: str, levels: int):
    torch.manual_seed(0)
    agent = Agent.from_env(_Specs, preset=preset, levels=levels)
    return agent, Learner(agent)


def fused_adams(learner: Learner) -> list[torch.optim.Optimizer]:
    return [
        torch.optim.Adam(opt.param_groups[0]["params"], lr=opt.param_groups[0]["lr"],
                         eps=opt.param_groups[0]["eps"], fused=True)
        for opt in learner.optimizers
    ]


def ab_timings(run_a, run_b, *, warmup: int, reps: int) -> tuple[float, float]:
    for _ in range(warmup):
        run_a()
        run_b()
    times_a, times_b = [], []
    for _ in range(reps):
        for run, times in ((run_a, times_a), (run_b, times_b)):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--batch", default="8x32")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/loop_variants.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch_size, steps = (int(x) for x in args.batch.split("x"))
    data = fake_batch(batch_size, steps, torch.device("cpu"))
    rows = []
    for levels in args.levels:
        agent, learner = build(args.preset, levels)
        rssm = agent.world_model.rssm

        def world_model_step():
            learner.world_model_loss.zero_grad(set_to_none=True)
            WorldModelLoss.total(learner.world_model_loss(data.clone())).backward()

        posterior = data.clone()
        with torch.no_grad():  # the actor loss starts from the world model's posterior states
            learner.world_model_loss(posterior)

        def actor_step():
            learner.actor_loss.zero_grad(set_to_none=True)
            learner.actor_loss(posterior.clone())[0]["loss_actor"].backward()

        def with_observe(prealloc):
            def run():
                if prealloc:
                    rssm.observe = observe_preallocated.__get__(rssm)
                try:
                    world_model_step()
                finally:
                    rssm.__dict__.pop("observe", None)
            return run

        def with_imagine(candidate):
            def run():
                actor_loss.imagine_trajectories = candidate or imagination.imagine_trajectories
                try:
                    actor_step()
                finally:
                    actor_loss.imagine_trajectories = imagination.imagine_trajectories
            return run

        # Both sides of each A/B must do the same work: same seed, same loss.
        for name, loss_of, candidate in (
            ("observe", lambda: WorldModelLoss.total(learner.world_model_loss(data.clone())), None),
            ("imagine", lambda: learner.actor_loss(posterior.clone())[0]["loss_actor"], imagine_preallocated),
            ("imagine", lambda: learner.actor_loss(posterior.clone())[0]["loss_actor"], imagine_tensor_policy),
        ):
            results = []
            for use_candidate in (False, True):
                if use_candidate:
                    rssm.observe = observe_preallocated.__get__(rssm)
                    actor_loss.imagine_trajectories = candidate or imagination.imagine_trajectories
                torch.manual_seed(1)
                results.append(loss_of().detach())
                rssm.__dict__.pop("observe", None)
                actor_loss.imagine_trajectories = imagination.imagine_trajectories
            torch.testing.assert_close(results[0], results[1], msg=f"{name} variants differ")

        foreach_opts, fused_opts = list(learner.optimizers), fused_adams(learner)

        def with_adam(fused):
            def run():
                learner.optimizers = fused_opts if fused else foreach_opts
                learner.update(data.clone())
            return run

        for change, pair in (
            ("observe: preallocated buffers vs list + stack", (with_observe(False), with_observe(True))),
            ("imagine: preallocated buffers vs list + stack",
             (with_imagine(None), with_imagine(imagine_preallocated))),
            ("imagine: actor on tensors vs TensorDict actor",
             (with_imagine(None), with_imagine(imagine_tensor_policy))),
            ("adam: fused=True vs foreach", (with_adam(False), with_adam(True))),
        ):
            library, candidate = ab_timings(*pair, warmup=args.warmup, reps=args.reps)
            rows.append(dict(levels=levels, change=change, library_s=library, candidate_s=candidate,
                             ratio=candidate / library))
            print(f"levels={levels}  {change:48s} library {library:.3f} s  candidate {candidate:.3f} s"
                  f"  candidate/library {candidate / library:.3f}", flush=True)
    result = dict(
        date=str(date.today()), machine=platform.processor() or platform.machine(), threads=args.threads,
        torch=torch.__version__, preset=args.preset, batch=args.batch, reps=args.reps, rows=rows,
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
