"""Boundary quality of a training agent's world model on replayed data with true events.

The boundary benchmark (``benchmarks/boundary_quality.py``) scores video models on held-out
datasets; :func:`replay_boundary_scores` applies the same protocol inside the RL recipe, to
replayed slices of an env that reports ground-truth events (``balls``, ``maze``): filter
with the posterior in eval mode (noise-free decisions), segment limits off, forced READs
excluded, one-to-one matching within ``±tolerance`` steps (:mod:`torchrl_vta.metrics`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDictBase

from torchrl_vta.agent import Agent
from torchrl_vta.metrics import boundary_rates, per_tolerance_table

__all__ = ["replay_boundary_scores"]


def replay_boundary_scores(
    agent: Agent,
    batch: TensorDictBase,
    *,
    tolerances: Sequence[int] = (0, 1, 2),
    event_key=("next", "event"),
    limit_mode: str = "off",
) -> dict[str, float] | None:
    """Precision, recall, F1 and rates of the world model's READs against true events.

    ``batch`` is replay data ``[B, T]`` (slices may cross episode starts: ``is_init``
    restarts the filter there). The model observes the embedding of ``("next", obs)`` at
    step ``t``, so its READ at ``t`` is scored against ``event_key`` at ``t``. Returns
    ``None`` for a flat world model or a batch without events. Keys: ``boundary_f1_tau<k>``
    per tolerance, ``boundary_precision`` / ``boundary_recall`` at the second tolerance
    (τ = 1 by default), ``boundary_rate``, ``event_rate``.

    Examples:
        >>> from torchrl_vta.envs import make_env
        >>> env = make_env("maze", image_size=16, max_steps=40, seed=0)
        >>> agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        >>> batch = torch.stack([env.rollout(12, break_when_any_done=False) for _ in range(2)])
        >>> scores = replay_boundary_scores(agent, batch)
        >>> sorted(scores)[:3]
        ['boundary_f1_tau0', 'boundary_f1_tau1', 'boundary_f1_tau2']
    """
    model = agent.world_model
    rssm = model.rssm
    if rssm.levels == 1 or event_key not in batch.keys(True):
        return None
    if batch.ndim != 2 or batch.shape[-1] < 2:
        raise ValueError(f"batch must be [B, T] with T >= 2, got {tuple(batch.shape)}.")
    was_training = agent.training
    agent.eval()
    try:
        with torch.no_grad(), rssm.segment_policy.limits(limit_mode):
            data = batch.clone()
            model.encoder_module(data)
            embed = data.get(model.rollout.embed_key)
            action = data.get(model.rollout.action_key).to(embed.dtype)
            out, _ = rssm.observe(embed, action, data.get("is_init", None))
    finally:
        agent.train(was_training)
    read = out["boundary"][..., 0].cpu() > 0.5
    forced = out["boundary_forced"][..., 0].cpu().bool()
    events = batch.get(event_key).reshape(read.shape).cpu().bool()
    table = per_tolerance_table(read, events, tolerances, exclude=forced)
    scores = {f"boundary_f1_tau{row['tolerance']}": row["f1"] for row in table}
    middle = table[min(1, len(table) - 1)]
    scores["boundary_precision"] = middle["precision"]
    scores["boundary_recall"] = middle["recall"]
    rates = boundary_rates(read, events, exclude=forced)
    scores["boundary_rate"] = rates["boundary_rate"]
    scores["event_rate"] = rates["event_rate"]
    return scores
