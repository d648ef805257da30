"""Resuming a run with its saved configuration: which keys may change on resume, and the
merged config of the resumed run."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from torchrl_vta.config import RecipeConfig

__all__ = ["SAFE_ON_RESUME", "flatten_config", "resume_config"]

#: Keys a resumed run may change (a trailing ``.`` means the whole section).
SAFE_ON_RESUME = ("collector.total_frames", "collector.backend", "collector.sync_every", "logger.", "eval.", "checkpoint.every_frames",
                  "device", "threads", "compile", "compile_mode", "resume", "output_dir",
                  "overwrite")


def flatten_config(cfg) -> dict[str, Any]:
    """Dotted leaf keys of a config (a dataclass or nested dicts).

    Examples:
        >>> flatten_config({"env": {"name": "dmc", "options": {"task": "x"}}, "seed": 0})
        {'env.name': 'dmc', 'env.options.task': 'x', 'seed': 0}
    """
    if dataclasses.is_dataclass(cfg):
        cfg = dataclasses.asdict(cfg)
    flat: dict[str, Any] = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(cfg, "")
    return flat


def _safe_on_resume(key: str) -> bool:
    return any(key == safe or (safe.endswith(".") and key.startswith(safe)) for safe in SAFE_ON_RESUME)


def resume_config(saved: dict[str, Any], requested: RecipeConfig,
                  changed: Iterable[str] | None = None) -> RecipeConfig:
    """The config of a resumed run: the run's ``saved`` config plus the safe changes.

    ``changed`` are the keys the user set for this launch (``None``: every key of
    ``requested`` that differs from ``saved``). A changed key outside
    :data:`SAFE_ON_RESUME` whose value differs from the saved one raises
    ``ValueError`` naming it.

    Examples:
        >>> saved = dataclasses.asdict(RecipeConfig())
        >>> requested = RecipeConfig(resume=True, output_dir="run")
        >>> requested.collector.total_frames = 5
        >>> resume_config(saved, requested).collector.total_frames
        5
        >>> requested.replay.seq_len = 7
        >>> resume_config(saved, requested)
        Traceback (most recent call last):
        ...
        ValueError: resume=true continues a run with its saved config; ...replay.seq_len (64 in the run, 7 given)...
    """
    saved_flat, wanted = flatten_config(saved), flatten_config(requested)
    keys = set(changed) if changed is not None else set(wanted)
    conflicts, applied = [], {}
    for key in sorted(keys):
        if key not in wanted:
            continue
        if key in saved_flat and wanted[key] == saved_flat[key]:
            continue
        if _safe_on_resume(key):
            applied[key] = wanted[key]
        elif key in saved_flat or wanted[key] not in (None, {}):
            conflicts.append(f"{key} ({saved_flat.get(key, '<unset>')!r} in the run, {wanted[key]!r} given)")
    if conflicts:
        raise ValueError(
            "resume=true continues a run with its saved config; these keys cannot change on "
            f"resume: {', '.join(conflicts)}. Drop them from the command line (the saved "
            "values are used), or start a new run in another output_dir. Keys that may "
            f"change: {', '.join(k + '*' if k.endswith('.') else k for k in SAFE_ON_RESUME)}."
        )
    merged = dataclasses.asdict(RecipeConfig.from_dict(saved))
    for key, value in applied.items():
        node = merged
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    for key in ("resume", "output_dir", "overwrite"):
        merged[key] = getattr(requested, key)
    return RecipeConfig.from_dict(merged)
