"""The recipe configuration's checks of ranges, choices and combinations, run by
:meth:`~torchrl_vta.config.RecipeConfig.validate` before anything is built: each names the
key and the fix."""

from __future__ import annotations

import dataclasses
import logging

from torchrl_vta.config import LOGGER_BACKENDS, STORAGES, RecipeConfig

__all__ = ["validate_recipe"]

log = logging.getLogger("torchrl_vta.config")


def validate_recipe(cfg: RecipeConfig) -> None:
    """Check ranges and choices of ``cfg``; raise ``ValueError`` naming the key and the fix.

    Examples:
        >>> cfg = RecipeConfig()
        >>> cfg.collector.train_ratio = 0
        >>> validate_recipe(cfg)
        Traceback (most recent call last):
        ...
        ValueError: collector.train_ratio=0 trains nothing: set collector.train_ratio > 0 (replayed steps per env step, e.g. 32).
    """
    from torchrl_vta.envs import registered_envs
    from torchrl_vta.modules.world_model import PRESETS
    from torchrl_vta.learner import OPTIMIZERS

    def at_least(name: str, value, minimum) -> None:
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}.")

    def one_of(name: str, value, choices) -> None:
        if value not in choices:
            raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}.")

    one_of("env.name", cfg.env.name, registered_envs())
    _check_env_options(cfg)
    one_of("model.preset", cfg.model.preset, PRESETS)
    levels = cfg.model.levels
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"model.levels={levels!r} must be an int >= 1 (1: flat RSSM, 2: VTA, "
                         "3+: more abstract levels).")
    _check_model_options(cfg)
    one_of("optim.kind", cfg.optim.kind, OPTIMIZERS)
    one_of("replay.storage", cfg.replay.storage, STORAGES)
    one_of("logger.backend", cfg.logger.backend, LOGGER_BACKENDS)
    one_of("logger.mode", cfg.logger.mode, ("offline", "online"))
    one_of("device", cfg.device.split(":")[0], ("auto", "cpu", "cuda", "mps"))
    if cfg.compile_mode is not None:
        one_of("compile_mode", cfg.compile_mode,
               ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
    if cfg.autocast is not None:
        one_of("autocast", cfg.autocast, ("bf16",))
    if cfg.learner.backend is not None:
        one_of("learner.backend", cfg.learner.backend, ("gloo", "nccl"))
    _check_collector_backend(cfg)
    _check_explore(cfg)
    if cfg.init_from is not None:
        from torchrl_vta.pretrained import pretrained_checkpoints

        pretrained_checkpoints(cfg.init_from)
    for name in ("replay.batch_size", "replay.seq_len", "collector.frames_per_batch",
                 "collector.num_envs", "loss.horizon", "eval.episodes", "eval.max_steps",
                 "eval.every_frames", "checkpoint.every_frames", "logger.log_every",
                 "collector.total_frames", "optim.max_skipped_updates"):
        section, key = name.split(".")
        at_least(name, getattr(getattr(cfg, section), key), 1)
    at_least("collector.init_random_frames", cfg.collector.init_random_frames, 0)
    at_least("threads", cfg.threads, 0)
    if not cfg.collector.train_ratio > 0:
        raise ValueError(
            f"collector.train_ratio={cfg.collector.train_ratio} trains nothing: set "
            "collector.train_ratio > 0 (replayed steps per env step, e.g. 32)."
        )
    if cfg.collector.init_random_frames >= cfg.collector.total_frames:
        raise ValueError(
            f"collector.init_random_frames ({cfg.collector.init_random_frames}) >= "
            f"collector.total_frames ({cfg.collector.total_frames}): the run would end "
            "before its first update. Lower collector.init_random_frames or raise "
            "collector.total_frames."
        )
    at_least("replay.capacity", cfg.replay.capacity, cfg.replay.seq_len)
    for name in ("model_lr", "actor_lr", "critic_lr", "model_clip", "actor_clip", "critic_clip"):
        if not getattr(cfg.optim, name) > 0:
            raise ValueError(f"optim.{name} must be > 0, got {getattr(cfg.optim, name)}"
                             + (" (a clip of 0 zeroes every gradient)." if "clip" in name else "."))
    if not 0 < cfg.loss.gamma <= 1:
        raise ValueError(f"loss.gamma must be in (0, 1], got {cfg.loss.gamma}.")
    if not 0 <= cfg.loss.lmbda <= 1:
        raise ValueError(f"loss.lmbda must be in [0, 1], got {cfg.loss.lmbda}.")
    if cfg.eval.openloop_context >= cfg.replay.seq_len:
        raise ValueError(
            f"eval.openloop_context ({cfg.eval.openloop_context}) must be smaller than "
            f"replay.seq_len ({cfg.replay.seq_len})."
        )
    episode = _episode_length(cfg)
    if episode is not None and episode < cfg.replay.seq_len:
        raise ValueError(
            f"replay.seq_len ({cfg.replay.seq_len}) is longer than every episode of env "
            f"{cfg.env.name!r} ({episode} steps): lower replay.seq_len or raise "
            "env.options.max_steps."
        )
    if cfg.replay.batch_size * cfg.replay.seq_len > cfg.replay.capacity:
        log.warning("replay.batch_size x replay.seq_len (%d) exceeds replay.capacity (%d): "
                    "each batch repeats stored steps.",
                    cfg.replay.batch_size * cfg.replay.seq_len, cfg.replay.capacity)
    if cfg.resume and not cfg.output_dir:
        raise ValueError("resume=true needs output_dir=<the run directory to resume>.")
    if cfg.resume and cfg.overwrite:
        raise ValueError("resume=true and overwrite=true exclude each other: pick one.")
    if cfg.device != "auto":
        from torchrl_vta.recipe import select_device

        select_device(cfg.device)


def _check_collector_backend(cfg: RecipeConfig) -> None:
    import importlib.util

    from torchrl_vta.collectors import BACKENDS

    backend = cfg.collector.backend
    if cfg.collector.sync_every < 1:
        raise ValueError(f"collector.sync_every must be >= 1, got {cfg.collector.sync_every}.")
    if backend is None:
        return
    if backend not in BACKENDS:
        raise ValueError(f"collector.backend={backend!r} is not one of {list(BACKENDS)} "
                         "(or null: local for one env, multiprocess for several).")
    if backend == "distributed" and cfg.learner.ddp:
        raise ValueError(
            "collector.backend=distributed and learner.ddp=true both need this process's "
            "default torch.distributed group: with learner.ddp=true use "
            "collector.backend=local|multiprocess (every rank collects its own data)."
        )
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError("collector.backend=ray needs Ray: pip install 'torchrl_vta[ray]', or "
                         "use collector.backend=multiprocess|distributed.")


def _check_explore(cfg: RecipeConfig) -> None:
    from torchrl_vta.objectives.exploration import EXPLORE_TARGETS, mode_scales

    explore = cfg.explore
    mode_scales(explore.mode, explore.extrinsic_scale, explore.intrinsic_scale)
    if explore.mode == "off":
        given = sorted(k for k, v in dataclasses.asdict(explore).items()
                       if k != "mode" and v is not None)
        if given:
            raise ValueError(f"explore.{given[0]} is set but explore.mode=off: set "
                             "explore.mode=reward_free|mixed, or drop the explore options.")
        return
    if explore.members is not None and (isinstance(explore.members, bool)
                                        or explore.members < 2):
        raise ValueError(f"explore.members must be an int >= 2 (a disagreement needs two "
                         f"members), got {explore.members!r}.")
    if explore.target is not None and explore.target not in EXPLORE_TARGETS:
        raise ValueError(f"explore.target={explore.target!r} is not one of "
                         f"{list(EXPLORE_TARGETS)}.")
    for name in ("layers", "units"):
        value = getattr(explore, name)
        if value is not None and value < (0 if name == "layers" else 1):
            raise ValueError(f"explore.{name} must be >= {0 if name == 'layers' else 1}, "
                             f"got {value}.")
    for name in ("lr", "clip"):
        value = getattr(explore, name)
        if value is not None and not value > 0:
            raise ValueError(f"explore.{name} must be > 0, got {value}.")
    if explore.abs_scale is not None and not explore.abs_scale >= 0:
        raise ValueError(f"explore.abs_scale must be >= 0, got {explore.abs_scale}.")
    if explore.hierarchical and cfg.model.levels < 2:
        raise ValueError("explore.hierarchical=true needs segments: use model.levels=2, or "
                         "explore.hierarchical=false.")


def _check_env_options(cfg: RecipeConfig) -> None:
    from torchrl_vta.envs.registry import env_options

    defaults = env_options(cfg.env.name)
    for key, value in cfg.env.options.items():
        default = defaults.get(key)
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (isinstance(default, float) or float(value).is_integer())
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ValueError(
                f"env.options.{key}={value!r} ({type(value).__name__}) should be a "
                f"{type(default).__name__} like {default!r}."
            )


def _check_model_options(cfg: RecipeConfig) -> None:
    import inspect

    from torchrl_vta.modules import ContinueHead, MultiDecoder, MultiEncoder, RewardHead
    from torchrl_vta.modules.actor import make_actor
    from torchrl_vta.modules.rssm import HierarchicalRSSM
    from torchrl_vta.objectives import WorldModelLoss, make_value_model

    def names(*fns) -> set:
        sets = []
        for fn in fns:
            params = inspect.signature(fn).parameters.values()
            if any(p.kind is p.VAR_KEYWORD for p in params):
                return set()  # takes anything
            sets.append({p.name for p in params} - {"self"})
        return set.intersection(*sets)

    checks = {
        "model.encoder": (cfg.model.encoder, names(MultiEncoder.__init__), {"obs_spec", "device"}),
        "model.rssm": (cfg.model.rssm, names(HierarchicalRSSM.__init__),
                       {"action_dim", "embed_dim", "levels"}),
        "model.decoder": (cfg.model.decoder, names(MultiDecoder.from_encoder),
                          {"encoder", "in_features", "device"}),
        "model.head": (cfg.model.head, names(RewardHead.__init__, ContinueHead.__init__),
                       {"in_features", "device"}),
        "model.actor": (cfg.model.actor, names(make_actor), {"action_spec", "feature_dim"}),
        "model.critic": (cfg.model.critic, names(make_value_model), {"feature_dim"}),
        "loss.world_model": (cfg.loss.world_model, names(WorldModelLoss.__init__),
                             {"world_model"}),
    }
    for section, (options, valid, reserved) in checks.items():
        if not valid:
            continue
        valid = valid - reserved
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                f"valid keys of {section}: {', '.join(sorted(valid))}."
            )


def _episode_length(cfg: RecipeConfig) -> int | None:
    """Env steps of the longest possible episode, where the options say it."""
    from torchrl_vta.envs.registry import env_options

    options = {**env_options(cfg.env.name), **cfg.env.options}
    if options.get("max_steps") is not None:
        return int(options["max_steps"])
    if cfg.env.name == "dmc":  # dm_control suite tasks: 1000 control steps
        return 1000 // int(options.get("action_repeat") or 1)
    return None
