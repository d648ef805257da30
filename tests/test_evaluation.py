"""replay_boundary_scores: the boundary benchmark's protocol on replayed RL data."""

import pytest
import torch

from torchrl_vta.agent import Agent
from torchrl_vta.config import RecipeConfig
from torchrl_vta.envs import make_env
from torchrl_vta.evaluation import replay_boundary_scores
from torchrl_vta.recipe import TRAJ_KEY, make_replay_buffer, replay_keys


def maze_batch():
    env = make_env("maze", image_size=16, max_steps=60, seed=0)
    batch = torch.stack([env.rollout(30, break_when_any_done=False) for _ in range(3)])
    return env, batch


def agent_reading(env, read_bias: float, **rssm):
    torch.manual_seed(0)
    agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)), rssm=rssm)
    with torch.no_grad():
        agent.world_model.rssm.boundary_posterior.net[-1].bias.copy_(
            torch.tensor([read_bias, -read_bias]))
    return agent


def test_scores_follow_the_decisions_against_the_true_events():
    env, batch = maze_batch()
    events = batch["next", "event"][..., 0][:, 1:]
    free = ~batch["is_init"][..., 0][:, 1:]  # episode starts are forced READs: not scored
    assert events.any()
    always = replay_boundary_scores(agent_reading(env, 20.0), batch)
    # READ on every free step: each event is matched (recall 1), precision = events / READs.
    assert always["boundary_rate"] == pytest.approx(free.float().mean().item())
    assert always["boundary_recall"] == pytest.approx(1.0)
    assert always["boundary_precision"] == pytest.approx(events.sum().item() / free.sum().item())
    assert always["event_rate"] == pytest.approx(events.float().mean().item())
    never = replay_boundary_scores(agent_reading(env, -20.0), batch)
    assert never["boundary_rate"] == 0 and never["boundary_f1_tau1"] == 0


def test_limits_are_off_and_forced_reads_are_not_scored():
    env, batch = maze_batch()
    # Always COPY with max_seg_len=2: the limit would force every other step to READ.
    agent = agent_reading(env, -20.0, max_seg_len=2, limit_mode="both")
    assert replay_boundary_scores(agent, batch)["boundary_rate"] == 0
    forced_on = replay_boundary_scores(agent, batch, limit_mode="both")
    assert forced_on["boundary_rate"] == 0  # forced READs are excluded from the score
    assert agent.world_model.rssm.segment_policy.limit_mode == "both"  # restored


def test_flat_models_and_envs_without_events_give_none():
    env, batch = maze_batch()
    flat = Agent.from_env(env, preset="test", levels=1, encoder=dict(cnn_mults=(1, 2)))
    assert replay_boundary_scores(flat, batch) is None
    assert replay_boundary_scores(agent_reading(env, 0.0), batch.exclude(("next", "event"))) is None


def test_the_replay_keeps_the_true_events():
    cfg = RecipeConfig()
    cfg.replay.storage, cfg.replay.batch_size, cfg.replay.seq_len = "memory", 2, 4
    buffer = make_replay_buffer(cfg, None)
    data = make_env("maze", image_size=16).rollout(10, break_when_any_done=False)
    data[TRAJ_KEY] = torch.zeros(10, dtype=torch.long)
    buffer.extend(data.select(*replay_keys(["pixels"]), strict=False))
    assert ("next", "event") in buffer.sample().keys(True)
