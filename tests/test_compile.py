"""The compiled learner path gives the eager losses (CPU, tiny sizes)."""

import torch
from torch._inductor import config as inductor_config

from torchrl_vta import Agent, Learner
from torchrl_vta.envs import make_env


def test_compiled_and_eager_learner_steps_give_the_same_losses(monkeypatch):
    # Inductor's own RNG differs from eager's; fall back to eager random ops so
    # both paths draw the same Gumbel and latent noise.
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    env = make_env("maze", image_size=16, max_steps=40, seed=0)
    batch = torch.stack([env.rollout(6, break_when_any_done=False) for _ in range(2)])

    def learner(compile):
        torch.manual_seed(0)
        agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        return Learner(agent, horizon=2, compile=compile)

    eager, compiled = learner(False), learner(True)
    for _ in range(2):
        torch.manual_seed(1)
        expected = eager.update(batch.clone())
        torch.manual_seed(1)
        got = compiled.update(batch.clone())
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-4, msg=key)


def test_bf16_autocast_runs_and_stays_finite():
    env = make_env("maze", image_size=16, max_steps=40, seed=0)
    batch = torch.stack([env.rollout(6, break_when_any_done=False) for _ in range(2)])
    agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
    metrics = Learner(agent, horizon=2, autocast="bf16").update(batch)
    assert all(torch.isfinite(v).all() for v in metrics.values())
