"""The learner's non-finite guard: a NaN batch changes nothing, is counted, and stops the run."""

import copy

import pytest
import torch

from torchrl_vta.agent import Agent, Learner
from torchrl_vta.envs import make_env
from torchrl_vta.guard import NonFiniteUpdateError


def flat(state, prefix=""):
    out = {}
    if isinstance(state, torch.Tensor):
        out[prefix] = state
    elif isinstance(state, dict):
        for k, v in state.items():
            out.update(flat(v, f"{prefix}.{k}"))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(flat(v, f"{prefix}[{i}]"))
    return out


def test_a_nan_batch_skips_the_world_model_step_and_stops_after_n():
    env = make_env("maze", image_size=16, max_steps=30, seed=0)
    agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
    learner = Learner(agent, horizon=3, max_skipped_updates=2)
    batch = env.rollout(8, break_when_any_done=False).unsqueeze(0)
    learner.update(batch.clone())
    before = flat(copy.deepcopy(learner.state_dict()))
    bad = batch.clone()
    bad["next", "reward"][0, 3] = float("nan")
    metrics = learner.update(bad)
    after = flat(learner.state_dict())
    assert metrics["skipped_model"] == 1 and not torch.isfinite(metrics["grad_norm_model"])
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "the finite parts (actor, critic) still stepped"
    # Nothing of the world model or its optimiser changed.
    assert not [k for k in changed if "world_model" in k or k.startswith(".optimizers[0]")], changed
    assert all(torch.isfinite(p).all() for p in agent.parameters())
    learner.update(batch.clone())  # a finite update resets the consecutive count
    assert int(learner.guard.consecutive) == 0 and int(learner.guard.skipped[0]) == 1
    learner.update(bad)
    with pytest.raises(NonFiniteUpdateError, match="2 consecutive learner updates"):
        learner.update(bad)
