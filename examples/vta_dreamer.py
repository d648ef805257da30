"""VTA-Dreamer: a hierarchical (two-level, learned boundaries) world-model agent in TorchRL.

    python examples/vta_dreamer.py env=dmc                      # CPU default, walker_walk
    python examples/vta_dreamer.py env=dmc env.options.task=cheetah_run model.levels=1
    python examples/vta_dreamer.py env=atari model=size12m      # GPU sizes
    python examples/vta_dreamer.py resume=true output_dir=outputs/vta_dreamer/<run>

Outputs in ``output_dir``: ``logs/`` (the TorchRL logger), ``checkpoint/``
(agent, learner, counters, replay), ``videos/eval_<frames>.gif`` and
``pictures/openloop_<frames>.png`` (truth over prediction, boundaries below).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
import tqdm
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from torchrl_vta import (
    TRAJ_KEY,
    Checkpointer,
    RecipeConfig,
    evaluate,
    make_agent,
    make_collector,
    make_env_factory,
    make_learner,
    make_logger,
    make_replay_buffer,
    make_temperature_schedule,
    openloop_strip,
    replay_keys,
    save_episode_video,
    save_strip,
    select_device,
)

log = logging.getLogger("vta_dreamer")
ConfigStore.instance().store(name="base_config", node=RecipeConfig)


def train(cfg: RecipeConfig) -> dict:
    """Run the recipe described by ``cfg``; returns the last evaluation metrics."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    # Envs and agent. The agent is sized from an env without the primer.
    probe_env = make_env_factory(cfg)()
    agent = make_agent(probe_env, cfg).to(device)
    learner = make_learner(agent, cfg)
    temperature = make_temperature_schedule(agent, cfg)
    observation_keys = list(agent.world_model.encoder.in_keys)
    probe_env.close()
    eval_env = make_env_factory(cfg, seed_offset=10_000)()
    eval_env.append_transform(agent.make_primer())

    # Replay, checkpoint, counters (restored on resume).
    replay = make_replay_buffer(cfg, out / "replay_storage")
    checkpointer = Checkpointer(out / "checkpoint")
    counters = {"frames": 0, "traj_offset": 0, "pending_updates": 0.0}
    if cfg.resume:
        state = checkpointer.load(replay if cfg.checkpoint.replay else None)
        if state is None:
            raise FileNotFoundError(f"resume=true but no checkpoint in {checkpointer.directory}.")
        agent.load_state_dict(state["agent"])
        learner.load_state_dict(state["learner"])
        counters = state["counters"]
        torch.set_rng_state(state["rng"])
        log.info("Resumed from %s at %d frames.", checkpointer.path, counters["frames"])

    logger = make_logger(
        cfg, out / "logs", "vta_dreamer", resume_step=counters["frames"] if cfg.resume else None
    )
    total = cfg.collector.total_frames
    collector = make_collector(
        cfg,
        agent.policy,
        remaining_frames=max(total - counters["frames"], 1),
        init_random_frames=max(cfg.collector.init_random_frames - counters["frames"], 0),
        primer_factory=agent.make_primer,
        device=device,
    )
    replayed_per_update = cfg.replay.batch_size * cfg.replay.seq_len
    next_eval = (counters["frames"] // cfg.eval.every_frames + 1) * cfg.eval.every_frames
    next_ckpt = (counters["frames"] // cfg.checkpoint.every_frames + 1) * cfg.checkpoint.every_frames
    metrics: dict = {}
    eval_metrics: dict = {}
    evaluated_at = -1
    episode_return = torch.zeros(cfg.collector.num_envs)
    start = time.perf_counter()
    start_frames = counters["frames"]

    def log_scalars(values: dict, prefix: str) -> None:
        if logger is not None:
            for key, value in values.items():
                logger.log_scalar(f"{prefix}/{key}", float(value), step=counters["frames"])

    def evaluate_and_draw() -> dict:
        mean_return, episode = evaluate(
            eval_env, agent, episodes=cfg.eval.episodes, max_steps=cfg.eval.max_steps
        )
        result = {"return": mean_return}
        if cfg.eval.video:
            save_episode_video(out / "videos" / f"eval_{counters['frames']}.gif", episode)
            if len(replay) >= cfg.replay.seq_len:
                slice_ = replay.sample().reshape(cfg.replay.batch_size, -1)[0].to(device)
                strip = openloop_strip(agent, slice_, context=cfg.eval.openloop_context)
                if strip is not None:
                    save_strip(out / "pictures" / f"openloop_{counters['frames']}.png", strip)
        log_scalars(result, "eval")
        return result

    def checkpoint() -> None:
        checkpointer.save(
            {
                "agent": agent.state_dict(),
                "learner": learner.state_dict(),
                "counters": dict(counters),
                "rng": torch.get_rng_state(),
                "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
            },
            replay if cfg.checkpoint.replay else None,
        )

    progress = tqdm.tqdm(total=total, initial=counters["frames"], unit="frames", dynamic_ncols=True)
    for data in collector:
        data = data.select(*replay_keys(observation_keys), strict=False)
        data[TRAJ_KEY] = data[TRAJ_KEY] + counters["traj_offset"]
        replay.extend(data)
        frames = data.numel()
        counters["frames"] += frames
        counters["traj_max"] = int(data[TRAJ_KEY].max())
        progress.update(frames)

        # Training episode returns (per env), logged as they finish.
        rewards = data["next", "reward"].reshape(cfg.collector.num_envs, -1)
        dones = data["next", "done"].reshape(cfg.collector.num_envs, -1)
        for env_index in range(cfg.collector.num_envs):
            for reward, done in zip(rewards[env_index], dones[env_index]):
                episode_return[env_index] += reward
                if done:
                    log_scalars({"episode_return": episode_return[env_index]}, "train")
                    episode_return[env_index] = 0

        if counters["frames"] >= cfg.collector.init_random_frames:
            counters["pending_updates"] += frames * cfg.collector.train_ratio / replayed_per_update
            while counters["pending_updates"] >= 1:
                batch = replay.sample().reshape(cfg.replay.batch_size, cfg.replay.seq_len)
                metrics = learner.update(batch.to(device))
                counters["pending_updates"] -= 1
                if temperature is not None:
                    agent.world_model.rssm.temperature = temperature(int(learner.updates))
                if int(learner.updates) % cfg.logger.log_every == 0:
                    log_scalars(metrics, "train")
            collector.update_policy_weights_()
        fps = (counters["frames"] - start_frames) / (time.perf_counter() - start)
        progress.set_postfix(
            fps=f"{fps:.1f}",
            updates=int(learner.updates),
            reco=f"{float(metrics.get('loss_reco', float('nan'))):.1f}",
            kl=f"{float(metrics.get('kl_obs', float('nan'))):.2f}",
            read=f"{float(metrics.get('boundary_rate', float('nan'))):.2f}",
            ret=f"{eval_metrics.get('return', float('nan')):.1f}",
        )
        if counters["frames"] >= next_eval:
            eval_metrics = evaluate_and_draw()
            evaluated_at = counters["frames"]
            next_eval += cfg.eval.every_frames
        if counters["frames"] >= next_ckpt:
            counters["traj_offset"] = counters["traj_max"] + 1
            checkpoint()
            next_ckpt += cfg.checkpoint.every_frames
        if counters["frames"] >= total:
            break
    collector.shutdown()
    progress.close()
    if evaluated_at != counters["frames"]:
        eval_metrics = evaluate_and_draw()
    counters["traj_offset"] = counters.get("traj_max", -1) + 1
    checkpoint()
    log.info("Done: %d frames, %d updates, eval return %.2f; outputs in %s",
             counters["frames"], int(learner.updates), eval_metrics["return"], out)
    return {"frames": counters["frames"], "updates": int(learner.updates), **eval_metrics}


@hydra.main(config_path="../configs", config_name="vta_dreamer", version_base=None)
def main(cfg: DictConfig) -> None:
    train(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    main()
