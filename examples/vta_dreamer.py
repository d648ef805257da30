"""VTA-Dreamer: a hierarchical (two-level, learned boundaries) world-model agent in TorchRL.

    python examples/vta_dreamer.py env=dmc                      # CPU default, walker_walk
    python examples/vta_dreamer.py env=dmc env.options.task=cheetah_run model.levels=1
    python examples/vta_dreamer.py env=atari model=size12m      # GPU sizes
    python examples/vta_dreamer.py resume=true output_dir=outputs/vta_dreamer/<run>
    torchrun --nproc_per_node=2 examples/vta_dreamer.py learner.ddp=true output_dir=runs/ddp

Outputs in ``output_dir``: ``logs/`` (the TorchRL logger), ``checkpoints/``
(generations of agent, learner, counters, config and replay), ``videos/eval_<frames>.gif``
and ``pictures/openloop_<frames>.png`` (truth over prediction, boundaries below).
``resume=true`` continues from the last complete checkpoint with the run's saved
config; SIGTERM / Ctrl-C checkpoint and exit 0 (a second one exits at once).

``learner.ddp=true`` (under ``torchrun``): every process is a rank with its own envs,
collector and replay shard; the learner averages gradients over the ranks; rank 0 logs,
evaluates and writes ``checkpoints/``, rank ``r`` writes its replay and counters to
``checkpoints_rank<r>/``; frame counts and intervals count every rank's frames.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path

import hydra
import torch
import tqdm
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from torchrl_vta import (
    TRAJ_KEY,
    Checkpointer,
    DataParallel,
    GracefulStop,
    RecipeConfig,
    check_free_space,
    claim_run_dir,
    configure_threads,
    evaluate,
    flatten_config,
    load_agreed_checkpoint,
    load_pretrained,
    log_image,
    log_video,
    longest_trajectory,
    make_agent,
    make_collector,
    make_env_factory,
    make_learner,
    make_logger,
    make_replay_buffer,
    openloop_strip,
    replay_boundary_scores,
    replay_keys,
    resume_config,
    save_episode_video,
    save_strip,
    select_device,
    sync_policy_weights,
)

log = logging.getLogger("vta_dreamer")
ConfigStore.instance().store(name="base_config", node=RecipeConfig)


def _default_run_dir(output_dir, resume, _started=time.strftime("%Y-%m-%d_%H-%M-%S")) -> str:
    if output_dir is not None:
        return str(output_dir)
    if resume:
        raise ValueError("resume=true needs output_dir=<the run directory to resume>.")
    return f"outputs/vta_dreamer/{_started}"


OmegaConf.register_new_resolver("vta_run_dir", _default_run_dir, replace=True)


def rank_path(path: Path, parallel: DataParallel) -> Path:
    """``path`` for rank 0, ``<path>_rank<r>`` beside it for rank ``r`` of a distributed run."""
    return path if parallel.is_main else path.with_name(f"{path.name}_rank{parallel.rank}")


def open_run(cfg: RecipeConfig, changed=None, parallel: DataParallel | None = None):
    """Claim ``output_dir``; on resume, load the last checkpoint and the run's saved config
    (every rank its own, at the frame count all ranks hold)."""
    parallel = parallel or DataParallel.single()
    if not cfg.resume:
        cfg.validate()
    out = Path(cfg.output_dir)
    lock = None
    with parallel.together():  # the other ranks wait until rank 0 holds the directory
        if parallel.is_main:
            lock = claim_run_dir(out, resume=cfg.resume, overwrite=cfg.overwrite)
    checkpointer = Checkpointer(rank_path(out / "checkpoints", parallel))
    state = None
    if cfg.resume:
        state = load_agreed_checkpoint(checkpointer, parallel)
        if state is None:
            raise FileNotFoundError(
                f"resume=true but {checkpointer.directory} holds no checkpoint: run without "
                "resume=true (and with overwrite=true if the directory holds old outputs)."
            )
        cfg = resume_config(state["config"], cfg, changed).validate()
    return cfg, lock, checkpointer, state


def train(cfg: RecipeConfig, changed=None) -> dict:
    """Run the recipe described by ``cfg``; returns the last evaluation metrics.

    ``changed``: the config keys set on the command line (a resumed run accepts only
    safe ones; ``None`` compares every key with the saved config). With
    ``learner.ddp=true`` this process joins ``torchrun``'s process group as one rank.
    """
    parallel = (DataParallel.from_environment(cfg.learner.backend) if cfg.learner.ddp
                else DataParallel.single())
    try:
        return _train(cfg, changed, parallel)
    finally:
        parallel.close()


def _train(cfg: RecipeConfig, changed, parallel: DataParallel) -> dict:
    # Rank 0's default output_dir (a timestamp) names the run for every rank.
    cfg.output_dir = parallel.broadcast_object(cfg.output_dir)
    cfg, lock, checkpointer, state = open_run(cfg, changed, parallel)
    main_rank, world = parallel.is_main, parallel.world_size
    out = Path(cfg.output_dir)
    threads = configure_threads(cfg.threads)
    torch.manual_seed(cfg.seed + parallel.rank)
    device = select_device(cfg.device)
    if device.type == "cuda" and parallel.distributed:
        device = torch.device("cuda", torch.cuda.current_device())

    # Envs and agent. The agent is sized from an env without the primer; every rank
    # starts from rank 0's parameters (the learner broadcasts them).
    probe_env = make_env_factory(cfg)()
    agent = make_agent(probe_env, cfg).to(device)
    learner = make_learner(agent, cfg, data_parallel=parallel)
    observation_keys = list(agent.world_model.encoder.in_keys)
    probe_env.close()

    # Replay (the memmap scratch is rebuilt from the checkpoint), counters. "frames"
    # counts every rank's env steps.
    scratch = rank_path(out / "replay_storage", parallel)
    shutil.rmtree(scratch, ignore_errors=True)
    replay = make_replay_buffer(cfg, scratch)
    counters = {"frames": 0, "traj_offset": 0, "pending_updates": 0.0, "traj_max": -1}
    if state is not None:
        if cfg.checkpoint.replay:
            checkpointer.load_replay(replay)
        # Rank 0's checkpoint holds the agent and the learner; the others hold their replay
        # shard, counters and random state.
        models = parallel.broadcast_object(
            {"agent": state["agent"], "learner": state["learner"]} if main_rank else None)
        agent.load_state_dict(models["agent"])
        learner.load_state_dict(models["learner"])
        counters.update(state["counters"])
        torch.set_rng_state(state["rng"])
        log.info("Resumed from %s at %d frames (%d in the replay).",
                 checkpointer.path, counters["frames"], len(replay))
    elif cfg.init_from:
        source = load_pretrained(learner, cfg.init_from)
        log.info("Starting from the weights of %s (after %s env steps there).",
                 cfg.init_from, source.get("frames", "?"))
    total = cfg.collector.total_frames
    if counters["frames"] >= total:
        log.info("The run in %s is complete (%d frames, collector.total_frames=%d): nothing to "
                 "do. Raise collector.total_frames to train longer.", out, counters["frames"], total)
        if lock is not None:
            lock.close()
        return {"frames": counters["frames"], "updates": int(learner.updates),
                "return": counters.get("eval_return", float("nan"))}

    eval_env = None
    logger = None
    if main_rank:
        eval_env = make_env_factory(cfg, seed_offset=10_000)()
        eval_env.append_transform(agent.make_primer())
        logger = make_logger(
            cfg, out / "logs", "vta_dreamer", resume_step=counters["frames"] if cfg.resume else None
        )
    collector = make_collector(
        cfg,
        agent.policy,
        remaining_frames=-(-(total - counters["frames"]) // world),
        init_random_frames=-(-max(cfg.collector.init_random_frames - counters["frames"], 0) // world),
        primer_factory=agent.make_primer,
        device=device,
        seed_offset=parallel.rank * cfg.collector.num_envs,
    )
    replayed_per_update = cfg.replay.batch_size * cfg.replay.seq_len
    next_eval = (counters["frames"] // cfg.eval.every_frames + 1) * cfg.eval.every_frames
    next_ckpt = (counters["frames"] // cfg.checkpoint.every_frames + 1) * cfg.checkpoint.every_frames
    metrics: dict = {}
    eval_metrics: dict = {}
    evaluated_at = -1
    sampleable = False
    start = time.perf_counter()
    start_frames = counters["frames"]
    log.info("Training in %s with %d torch thread(s) on %s.", out, threads, device)

    def log_scalars(values: dict, prefix: str) -> None:
        if logger is not None:
            for key, value in values.items():
                logger.log_scalar(f"{prefix}/{key}", float(value), step=counters["frames"])

    def evaluate_and_draw() -> dict:
        progress.set_description_str("evaluating")
        began = time.perf_counter()
        mean_return, episode = evaluate(
            eval_env, agent, episodes=cfg.eval.episodes, max_steps=cfg.eval.max_steps
        )
        result = {"return": mean_return}
        counters["eval_return"] = mean_return
        if cfg.eval.video:
            save_episode_video(out / "videos" / f"eval_{counters['frames']}.gif", episode)
            frames = episode.get(("next", "pixels"), None)
            if frames is not None:
                log_video(logger, "eval/episode", frames, counters["frames"])
            # Before the first update the prediction is the untrained decoder's noise.
            if sampleable and int(learner.updates) > 0:
                with warnings.catch_warnings():  # one slice, not the training batch size
                    warnings.simplefilter("ignore", UserWarning)
                    slice_ = replay.sample(batch_size=cfg.replay.seq_len).reshape(1, -1)[0].to(device)
                strip = openloop_strip(agent, slice_, context=cfg.eval.openloop_context)
                if strip is not None:
                    save_strip(out / "pictures" / f"openloop_{counters['frames']}.png", strip)
                    log_image(logger, "eval/openloop", strip, counters["frames"])
        if sampleable and int(learner.updates) > 0:
            # Envs with true events: READs vs events on a replayed batch (forcing off).
            batch = replay.sample().reshape(cfg.replay.batch_size, cfg.replay.seq_len)
            scores = replay_boundary_scores(agent, batch.to(device))
            if scores is not None:
                result.update(scores)
        log_scalars(result, "eval")
        log.info("Evaluated at %d frames in %.1f s: return %.2f.",
                 counters["frames"], time.perf_counter() - began, mean_return)
        progress.set_description_str("")
        return result

    def checkpoint() -> None:
        progress.set_description_str("checkpointing")
        began = time.perf_counter()
        # A resumed collector numbers trajectories from 0 again: it continues past these.
        saved_counters = dict(counters, traj_offset=counters["traj_max"] + 1)
        state = {
            "counters": saved_counters,
            "rng": torch.get_rng_state(),
            "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
        }
        if main_rank:
            state.update(agent=agent.state_dict(), learner=learner.state_dict())
        parallel.check_in_step(agent)  # the ranks must still be one model
        with parallel.together():
            path = checkpointer.save(
                state, replay if cfg.checkpoint.replay else None,
                meta={"frames": counters["frames"], "world_size": world},
            )
        log.info("Checkpoint %s at %d frames in %.1f s.",
                 path.name, counters["frames"], time.perf_counter() - began)
        progress.set_description_str("")

    progress = tqdm.tqdm(total=total, initial=counters["frames"], unit="frames",
                         dynamic_ncols=True, disable=not main_rank)
    stopped = False
    with GracefulStop() as stop:

        def stopping() -> bool:
            """A stop requested on any rank (a collective: every rank asks at the same points)."""
            return parallel.any(bool(stop))

        for data in collector:
            # Training episode returns: RewardSum's running sum where an episode ends, per
            # env in collection order (the replay does not keep it).
            ended = data["next", "done"].reshape(cfg.collector.num_envs, -1)
            finished = data["next", "episode_reward"].reshape(cfg.collector.num_envs, -1)[ended]
            data = data.select(*replay_keys(observation_keys), strict=False)
            data[TRAJ_KEY] = data[TRAJ_KEY] + counters["traj_offset"]
            replay.extend(data)
            if counters["frames"] == start_frames and cfg.replay.storage == "memmap":
                room = sum(v.numel() * v.element_size() for v in
                           replay._storage._storage.values(True, True))
                check_free_space(out, room, f"the replay memmap (replay.capacity={cfg.replay.capacity})")
            frames = data.numel() * world
            counters["frames"] += frames
            counters["traj_max"] = int(data[TRAJ_KEY].max())
            progress.update(frames)

            for episode_return in finished.tolist():
                log_scalars({"episode_return": episode_return}, "train")

            if counters["frames"] >= cfg.collector.init_random_frames:
                # Each rank's update replays its own batch: per rank, the frames it collected.
                counters["pending_updates"] += (frames / world) * cfg.collector.train_ratio \
                    / replayed_per_update
                if not sampleable:
                    sampleable = parallel.all(longest_trajectory(replay) >= cfg.replay.seq_len)
                    if not sampleable:
                        log.warning("No stored episode has replay.seq_len=%d steps yet: "
                                    "updates wait for one.", cfg.replay.seq_len)
                while sampleable and counters["pending_updates"] >= 1 and not stopping():
                    batch = replay.sample().reshape(cfg.replay.batch_size, cfg.replay.seq_len)
                    metrics = learner.update(batch.to(device))
                    counters["pending_updates"] -= 1
                    if int(learner.updates) % cfg.logger.log_every == 0:
                        log_scalars(metrics, "train")
                sync_policy_weights(collector)
            fps = (counters["frames"] - start_frames) / (time.perf_counter() - start)
            progress.set_postfix(
                fps=f"{fps:.1f}",
                updates=int(learner.updates),
                reco=f"{float(metrics.get('loss_reco', float('nan'))):.1f}",
                kl=f"{float(metrics.get('kl_obs', float('nan'))):.2f}",
                read=f"{float(metrics.get('boundary_rate', float('nan'))):.2f}",
                ret=f"{eval_metrics.get('return', float('nan')):.1f}",
            )
            if stopping():
                log.warning("Stopping at %d frames on request.", counters["frames"])
                stopped = True
                break
            if counters["frames"] >= next_eval:
                if main_rank:
                    eval_metrics = evaluate_and_draw()
                    evaluated_at = counters["frames"]
                next_eval += cfg.eval.every_frames
            if counters["frames"] >= total:
                break
            if counters["frames"] >= next_ckpt:
                checkpoint()
                next_ckpt += cfg.checkpoint.every_frames
        collector.shutdown()
        if main_rank and not stopped and evaluated_at != counters["frames"]:
            eval_metrics = evaluate_and_draw()
        checkpoint()
        progress.close()
    if eval_env is not None:
        eval_env.close()
    videos = out / "logs" / "vta_dreamer" / "videos"
    if videos.is_dir() and not any(videos.iterdir()):
        videos.rmdir()  # the CSV logger's, unused
    if lock is not None:
        lock.close()
    log.info("Done: %d frames, %d updates, eval return %.2f; outputs in %s",
             counters["frames"], int(learner.updates),
             eval_metrics.get("return", float("nan")), out)
    return {"frames": counters["frames"], "updates": int(learner.updates), **eval_metrics}


def changed_keys(cfg: DictConfig) -> list[str]:
    """Config keys the command line sets (the composed config vs. one without overrides)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    overrides = HydraConfig.get().overrides.task
    kept = [o for o in overrides if o.split("=")[0].lstrip("+~") in ("resume", "output_dir")]
    baseline = flatten_config(OmegaConf.to_container(compose("vta_dreamer", overrides=kept)))
    given = flatten_config(OmegaConf.to_container(cfg))
    return sorted(k for k in set(given) | set(baseline) if given.get(k) != baseline.get(k))


@hydra.main(config_path="../configs", config_name="vta_dreamer", version_base=None)
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    changed = changed_keys(cfg) if cfg.resume else None
    config = OmegaConf.to_object(cfg)
    config.output_dir = config.output_dir or HydraConfig.get().runtime.output_dir
    train(config, changed)


if __name__ == "__main__":
    main()
