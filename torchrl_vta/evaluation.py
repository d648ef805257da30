"""Evaluation of a training agent: deterministic episodes, open-loop boundary pictures, and
boundary quality on replayed data with true events.

:func:`evaluate` runs deterministic episodes (actor mode, RSSM modes);
:func:`openloop_strip` draws truth, reconstruction and open-loop prediction with the
boundaries (:func:`save_strip`, :func:`save_episode_video` write them). The boundary benchmark (``benchmarks/boundary_quality.py``) scores video models on held-out
datasets; :func:`replay_boundary_scores` applies the same protocol inside the RL recipe, to
replayed slices of an env that reports ground-truth events (``balls``, ``maze``): filter
with the posterior in eval mode (noise-free decisions), segment limits off, forced READs
excluded, one-to-one matching within ``±tolerance`` steps (:mod:`torchrl_vta.metrics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_vta.agent import Agent
from torchrl_vta.metrics import boundary_rates, per_tolerance_table
from torchrl_vta.viz import boundary_strip
from torchrl_vta.viz_files import save_gif, save_png

__all__ = ["evaluate", "openloop_strip", "replay_boundary_scores", "save_episode_video", "save_strip"]


def replay_boundary_scores(
    agent: Agent,
    batch: TensorDictBase,
    *,
    tolerances: Sequence[int] = (0, 1, 2),
    event_key=("next", "event"),
    level_event_keys: Sequence = (("next", "scene_event"),),
    limit_mode: str = "off",
) -> dict[str, float] | None:
    """Precision, recall, F1 and rates of the world model's READs against true events.

    ``batch`` is replay data ``[B, T]`` (slices may cross episode starts: ``is_init``
    restarts the filter there). The model observes the embedding of ``("next", obs)`` at
    step ``t``, so its READ at ``t`` is scored against ``event_key`` at ``t``. Returns
    ``None`` for a flat world model or a batch without events. Keys: ``boundary_f1_tau<k>``
    per tolerance, ``boundary_precision`` / ``boundary_recall`` at the second tolerance
    (τ = 1 by default), ``boundary_rate``, ``event_rate``. With ``levels >= 3``, level
    ``j >= 2``'s READs are scored the same way against ``level_event_keys[j - 2]`` where the
    batch has it, under the same names with the suffix ``_level<j>``.

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
    scores = _scores(read, batch.get(event_key), forced, tolerances, "")
    for index, key in enumerate(level_event_keys[: rssm.levels - 2]):
        if key in batch.keys(True):
            scores.update(_scores(out["upper_boundary"][..., index].cpu() > 0.5, batch.get(key),
                                  out["upper_boundary_forced"][..., index].cpu().bool(),
                                  tolerances, f"_level{index + 2}"))
    return scores


def _scores(read, events, forced, tolerances, suffix: str) -> dict[str, float]:
    events = events.reshape(read.shape).cpu().bool()
    table = per_tolerance_table(read, events, tolerances, exclude=forced)
    scores = {f"boundary_f1_tau{row['tolerance']}": row["f1"] for row in table}
    middle = table[min(1, len(table) - 1)]
    scores["boundary_precision"] = middle["precision"]
    scores["boundary_recall"] = middle["recall"]
    rates = boundary_rates(read, events, exclude=forced)
    scores["boundary_rate"] = rates["boundary_rate"]
    scores["event_rate"] = rates["event_rate"]
    return {f"{name}{suffix}": value for name, value in scores.items()}


@torch.no_grad()
def evaluate(env: EnvBase, agent: Agent, *, episodes: int, max_steps: int):
    """Deterministic episodes (actor mode, RSSM modes); returns mean return and the first episode.

    Examples:
        >>> from torchrl_vta.envs import make_env
        >>> env = make_env("maze", image_size=16, max_steps=10)
        >>> agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        >>> env.append_transform(agent.make_primer())
        TransformedEnv(...)
        >>> mean_return, episode = evaluate(env, agent, episodes=1, max_steps=5)
        >>> 1 <= episode.shape[0] <= 5  # an episode can end early (the goal, in some mazes)
        True
    """
    was_training = agent.training
    agent.eval()
    returns, first = [], None
    try:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            for _ in range(episodes):
                rollout = env.rollout(max_steps, agent.policy, break_when_any_done=True)
                returns.append(rollout["next", "reward"].sum().item())
                first = rollout if first is None else first
    finally:
        agent.train(was_training)
    return sum(returns) / len(returns), first


@torch.no_grad()
def openloop_strip(agent: Agent, batch: TensorDictBase, *, context: int, image_key="pixels",
                   event_keys: Sequence[str] = ("event", "scene_event")):
    """Truth vs. reconstruction (``context`` steps) then open-loop prediction (``full``).

    ``batch`` is one replay slice ``[T]`` (or ``[1, T]``). Returns the strip
    image (see :func:`torchrl_vta.viz.boundary_strip`) with the posterior
    boundaries over the context and the prior boundaries over the prediction
    (one bar per level), the ground-truth events of each ``("next", key)`` of
    ``event_keys`` present (one bar each, lowest level first), or ``None`` if
    the env has no image.

    Examples:
        >>> from torchrl_vta.envs import make_env
        >>> env = make_env("maze", image_size=16)
        >>> agent = Agent.from_env(env, preset="test")
        >>> data = env.rollout(8, break_when_any_done=False)
        >>> openloop_strip(agent, data, context=4).shape  # 2 rows of 16 px + 2 bars of 4 px
        (40, 128, 3)
    """
    model = agent.world_model
    rssm = model.rssm
    if image_key not in model.decoder.out_keys:
        return None
    batch = batch.reshape(1, -1) if batch.ndim == 1 else batch[:1]
    was_training = agent.training
    agent.eval()
    try:
        data = batch.clone()
        model.encoder_module(data)
        embed = data.get(model.rollout.embed_key)
        action = data.get(model.rollout.action_key).to(embed.dtype)
        is_init = data.get("is_init", None)
        observed, state = rssm.observe(
            embed[:, :context], action[:, :context],
            None if is_init is None else is_init[:, :context],
        )
        future, _ = rssm.imagine(state, action[:, context:])
        features = torch.cat(
            [
                torch.cat([observed["belief"], observed["state"]], -1),
                torch.cat([future["belief"], future["state"]], -1),
            ],
            1,
        )
        prediction = dict(zip(model.decoder.out_keys, model.decoder(features)))[image_key]
        truth = data.get(("next", image_key))
    finally:
        agent.train(was_training)
    read = forced = None
    if rssm.levels >= 2:
        # One bar per level: level 1 first, then the levels above it.
        names = [("boundary", "boundary_forced")]
        if rssm.levels >= 3:
            names.append(("upper_boundary", "upper_boundary_forced"))
        read = torch.cat([torch.cat([observed[r], future[r]], 1)[0] for r, _ in names], -1)
        forced = torch.cat([torch.cat([observed[f], future[f]], 1)[0].reshape(read.shape[0], -1)
                            for _, f in names], -1).bool()
    events = [data.get(("next", key), None) for key in event_keys]
    events = [e[0].reshape(e.shape[1], -1) for e in events if e is not None]
    return boundary_strip(
        [truth[0], prediction[0].clamp(0, 1)],
        read=read,
        forced=forced & (read > 0) if forced is not None else None,
        events=torch.cat(events, -1) if events else None,
        context=context,
    )


def save_episode_video(path: str | Path, episode: TensorDictBase, image_key: str = "pixels"):
    """Write an evaluation episode's frames as a GIF (``None`` if the env has no image).

    Examples:
        >>> import tempfile, pathlib
        >>> from torchrl_vta.envs import make_env
        >>> episode = make_env("maze", image_size=16).rollout(3)
        >>> save_episode_video(pathlib.Path(tempfile.mkdtemp()) / "e.gif", episode).suffix
        '.gif'
    """
    frames = episode.get(("next", image_key), None)
    if frames is None:
        return None
    return save_gif(path, frames)


def save_strip(path: str | Path, image) -> Path:
    """Write a boundary strip as PNG.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> save_strip(pathlib.Path(tempfile.mkdtemp()) / "s.png", np.zeros((8, 8, 3), np.uint8)).suffix
        '.png'
    """
    return save_png(path, image)
