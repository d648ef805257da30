"""Control on ``env=highway``: trained agents against a random and an idle policy.

Every policy drives the same held-out episodes (env seeds ``--seed-offset + i``, never used
for training or the recipe's evaluation) and is scored on the episode return, the
collision rate (episodes that end with ``crashed``) and the episode length:

* ``random``: uniform meta-actions (one-hot), seeded;
* ``idle``: always highway-env's ``IDLE`` meta-action (keep lane and speed);
* ``lane_left``, ``lane_right``, ``faster``, ``slower``: the other constant meta-actions
  (``--no-constants`` leaves them out), the references a learned policy should also clear:
  a constant ``lane_left`` or ``slower`` avoids most collisions on ``highway-fast-v0``;
* ``NAME=RUN_DIR``: the agent of a ``vta_dreamer.py`` run, rebuilt from the run's saved
  config and its newest checkpoint, acting deterministically (actor mode, RSSM modes) like
  the recipe's evaluation.

Example (the runs of benchmarks/README.md, "Highway control")::

    python examples/vta_dreamer.py env=highway threads=1 collector.total_frames=20000 \\
        output_dir=runs/highway_l2_s0
    python benchmarks/highway_control.py --episodes 50 VTA=runs/highway_l2_s0 \\
        --out benchmarks/results/highway_control.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_vta.checkpoint import Checkpointer
from torchrl_vta.config import RecipeConfig
from torchrl_vta.envs import make_env
from torchrl_vta.recipe import make_agent

RECIPE_ENV = Path(__file__).resolve().parents[1] / "configs" / "env" / "highway.yaml"
#: highway-env's DiscreteMetaAction indices.
META_ACTIONS = {"lane_left": 0, "idle": 1, "lane_right": 2, "faster": 3, "slower": 4}


def load_agent(run: Path):
    """The newest checkpoint's agent of a ``vta_dreamer.py`` run, with the run's config."""
    state = Checkpointer(run / "checkpoints").load()
    if state is None:
        raise FileNotFoundError(f"{run}/checkpoints holds no checkpoint: pass a vta_dreamer.py "
                                "output_dir that has checkpointed at least once.")
    cfg = RecipeConfig.from_dict(state["config"])
    if cfg.env.name != "highway":
        raise ValueError(f"{run} trained on env={cfg.env.name}; this benchmark scores env=highway runs.")
    probe = make_env("highway", **cfg.env.options)
    agent = make_agent(probe, cfg)
    probe.close()
    agent.load_state_dict(state["agent"])
    agent.eval()
    return agent, cfg, state["counters"]["frames"]


class _Constant:
    """A policy writing one fixed (or uniformly random) one-hot action."""

    def __init__(self, spec, index: int | None, seed: int):
        self.spec, self.index = spec, index
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, td):
        n = self.spec.shape[-1]
        index = self.index if self.index is not None else int(
            torch.randint(n, (), generator=self.generator))
        td["action"] = torch.nn.functional.one_hot(torch.tensor(index), n).to(self.spec.dtype)
        return td


@torch.no_grad()
def score(policy_name: str, make_policy, options: dict, episodes: int, seed_offset: int,
          max_steps: int) -> dict:
    """Return, collision and length of ``episodes`` held-out episodes (one env seed each)."""
    returns, crashed, lengths = [], [], []
    for i in range(episodes):
        env = make_env("highway", **{**options, "seed": seed_offset + i})
        policy = make_policy(env, i)
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            rollout = env.rollout(max_steps, policy, break_when_any_done=True)
        env.close()
        returns.append(rollout["next", "reward"].sum().item())
        crashed.append(bool(rollout["next", "crashed"][-1].item()))
        lengths.append(rollout.shape[0])
    return {"policy": policy_name, "episodes": episodes,
            "return_mean": statistics.fmean(returns), "return_std": statistics.pstdev(returns),
            "collision_rate": sum(crashed) / episodes, "length_mean": statistics.fmean(lengths),
            "returns": returns}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="NAME=RUN_DIR",
                        help="trained vta_dreamer.py runs on env=highway to score")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed-offset", type=int, default=50_000)
    parser.add_argument("--no-constants", dest="constants", action="store_false",
                        help="score only the random and idle baselines")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = []
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"run {item!r}: write NAME=RUN_DIR, e.g. VTA=outputs/vta_dreamer/<run>")
        runs.append((name, Path(path)))
    loaded = [(name, path, *load_agent(path)) for name, path in runs]
    # Every policy drives the env options of the first run (or the recipe's env=highway).
    options = dict(loaded[0][3].env.options) if loaded else dict(
        OmegaConf.load(RECIPE_ENV)["env"]["options"])
    if options.get("action", "discrete") != "discrete":
        parser.error(f"env.options.action={options['action']!r}: the baselines are meta-actions; "
                     "score runs with env.options.action=discrete.")
    max_steps = int(options.get("max_steps") or 1000)
    rows = [
        score("random", lambda env, i: _Constant(env.action_spec, None, seed=i),
              options, args.episodes, args.seed_offset, max_steps),
    ]
    for name, index in META_ACTIONS.items():
        if name == "idle" or args.constants:
            rows.append(score(name, lambda env, i, index=index: _Constant(env.action_spec, index, seed=i),
                              options, args.episodes, args.seed_offset, max_steps))
    for name, path, agent, cfg, frames in loaded:
        if dict(cfg.env.options) != options:
            raise ValueError(f"run {name} ({path}) used env.options {dict(cfg.env.options)}, the "
                             f"others {options}: score runs of one scenario together.")

        def make_policy(env, i, agent=agent):
            env.append_transform(agent.make_primer())
            return agent.policy

        row = score(name, make_policy, options, args.episodes, args.seed_offset, max_steps)
        row.update(run=str(path), frames=frames, levels=cfg.model.levels)
        rows.append(row)
    report = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": args.threads, "date": datetime.date.today().isoformat()},
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "env_options": options, "rows": rows}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    for row in rows:
        print(f"{row['policy']:>10}: return {row['return_mean']:6.2f} ± {row['return_std']:5.2f}  "  # noqa: T201
              f"collisions {row['collision_rate']:.2f}  length {row['length_mean']:5.1f}")


if __name__ == "__main__":
    main()
