"""Offline video datasets of the ``balls`` and ``maze`` worlds, with ground-truth events.

:func:`generate_dataset` returns a :class:`~tensordict.TensorDict` of batch ``[N, T]``:

========== ===================== ========================================================
key        shape, dtype          meaning
========== ===================== ========================================================
pixels     [N, T, 3, H, W] uint8 frames, channels first
event      [N, T, 1] bool        ground-truth event at frame t (see the world's module)
audio      [N, T, D] float32     balls only (if ``audio_dim > 0``): collision sound
action     [N, T, 3] float32     maze only: one-hot (forward, left, right) the scripted
                                 agent took *after* seeing frame t, so
                                 ``event[:, t + 1] == action[:, t] is a turn``
position   [N, T, 2] float32     maze only: camera (x, y) in blocks
heading    [N, T] int64          maze only: 0 east, 1 south, 2 west, 3 north
========== ===================== ========================================================

Sequences are independent episodes starting at frame 0. Generation runs the batched world
simulators in chunks of 256 sequences; chunk ``c`` draws from
``numpy.random.default_rng([seed, 0, c])`` and maze sequence ``i`` runs in
``make_maze(maze_size, loop_prob=loop_prob, seed=[seed, 1, i])``, so a dataset is a
deterministic function of its arguments and a longer dataset extends a shorter one with
the same arguments. Image size defaults to 32, the original VTA setting.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchrl_vta.envs.balls import BallsWorld
from torchrl_vta.envs.maze import NUM_ACTIONS, MazeWorld, make_maze

__all__ = ["WORLDS", "generate_dataset", "load_or_generate"]

logger = logging.getLogger(__name__)

WORLDS = ("balls", "maze")
_CHUNK = 256
_FORMAT_VERSION = 1
_META_FILE = "vta_dataset.json"


def _keyword_defaults(fn, skip: set[str]) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in skip
    }


def _world_defaults(world: str) -> dict:
    if world == "balls":
        # Datasets are action-free videos, so the control options do not apply.
        return _keyword_defaults(BallsWorld.__init__, {"image_size", "seed", "controlled", "push"})
    maze = {"maze_size": inspect.signature(make_maze).parameters["maze_size"].default}
    maze.update(_keyword_defaults(make_maze, {"seed"}))
    maze.update(_keyword_defaults(MazeWorld.__init__, {"image_size", "seed"}))
    return maze


def _resolve(world: str, num_sequences: int, seq_len: int, seed: int, image_size: int, options: dict) -> dict:
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    for name, value, low in (("num_sequences", num_sequences, 1), ("seq_len", seq_len, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    defaults = _world_defaults(world)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {world} option(s) {unknown}; valid: {sorted(defaults)}")
    return {
        "world": world,
        "num_sequences": int(num_sequences),
        "seq_len": int(seq_len),
        "seed": int(seed),
        "image_size": int(image_size),
        "options": {**defaults, **options},
    }


def generate_dataset(
    world: str,
    num_sequences: int,
    seq_len: int,
    *,
    seed: int,
    image_size: int = 32,
    **world_options,
) -> TensorDict:
    """Generates ``num_sequences`` videos of ``seq_len`` frames of a world (keys in the module docstring).

    Args:
        world: ``"balls"`` or ``"maze"``.
        num_sequences: number of sequences ``N``.
        seq_len: frames per sequence ``T``.
        seed: non-negative int; the output is a deterministic function of all arguments.
        image_size: frame side in pixels.
        **world_options: ``balls``: ``num_balls``, ``radius``, ``speed``, ``random_change_prob``,
            ``ball_collisions``, ``audio_dim`` (see :class:`~torchrl_vta.envs.balls.BallsWorld`);
            ``maze``: ``maze_size``, ``loop_prob`` (see :func:`~torchrl_vta.envs.maze.make_maze`),
            ``steps_per_block``, ``fov`` (see :class:`~torchrl_vta.envs.maze.MazeWorld`).

    Example:
        >>> data = generate_dataset("maze", 2, 5, seed=0, maze_size=3)
        >>> data.batch_size, data["pixels"].shape
        (torch.Size([2, 5]), torch.Size([2, 5, 3, 32, 32]))
    """
    config = _resolve(world, num_sequences, seq_len, seed, image_size, world_options)
    chunks = []
    for c, start in enumerate(range(0, config["num_sequences"], _CHUNK)):
        rows = range(start, min(start + _CHUNK, config["num_sequences"]))
        rng = np.random.default_rng([config["seed"], 0, c])
        if world == "balls":
            chunks.append(_balls_chunk(len(rows), config, rng))
        else:
            chunks.append(_maze_chunk(rows, config, rng))
    data = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return TensorDict(
        {key: torch.from_numpy(value) for key, value in data.items()},
        batch_size=[config["num_sequences"], config["seq_len"]],
    )


def _balls_chunk(batch: int, config: dict, rng: np.random.Generator) -> dict:
    sim = BallsWorld(batch, image_size=config["image_size"], seed=rng, **config["options"])
    frames = [sim.reset()]
    frames += [sim.step() for _ in range(config["seq_len"] - 1)]
    out = {
        "pixels": np.stack([f["pixels"] for f in frames], 1),
        "event": np.stack([f["event"] for f in frames], 1)[..., None],
    }
    if sim.audio_dim > 0:
        out["audio"] = np.stack([f["audio"] for f in frames], 1)
    return out


def _maze_chunk(rows: range, config: dict, rng: np.random.Generator) -> dict:
    options = dict(config["options"])
    maze_size = options.pop("maze_size")
    loop_prob = options.pop("loop_prob")
    mazes = [make_maze(maze_size, loop_prob=loop_prob, seed=[config["seed"], 1, i]) for i in rows]
    sim = MazeWorld(mazes, image_size=config["image_size"], seed=rng, **options)
    frames, actions, positions, headings = [sim.reset()], [], [], []
    for t in range(config["seq_len"]):
        positions.append(sim.position.astype(np.float32))
        headings.append(sim.heading.copy())
        actions.append(sim.scripted_action())
        if t < config["seq_len"] - 1:
            frames.append(sim.step(actions[-1]))
    return {
        "pixels": np.stack([f["pixels"] for f in frames], 1),
        "event": np.stack([f["event"] for f in frames], 1)[..., None],
        "action": np.eye(NUM_ACTIONS, dtype=np.float32)[np.stack(actions, 1)],
        "position": np.stack(positions, 1),
        "heading": np.stack(headings, 1),
    }


def load_or_generate(
    path: str | os.PathLike,
    world: str,
    num_sequences: int,
    seq_len: int,
    *,
    seed: int,
    image_size: int = 32,
    **world_options,
) -> TensorDict:
    """Loads the dataset stored at directory ``path``, generating and storing it first if absent.

    The data are stored as a memory-mapped TensorDict next to a ``vta_dataset.json`` that
    records every generation argument (defaults resolved). Loading checks them against the
    request and raises ``ValueError`` naming the arguments that differ, so a stale cache is
    never used silently. The directory appears atomically (written aside, then renamed).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> a = load_or_generate(f"{root}/balls", "balls", 2, 4, seed=0)
        >>> b = load_or_generate(f"{root}/balls", "balls", 2, 4, seed=0)  # read back
        >>> bool((a["pixels"] == b["pixels"]).all())
        True
    """
    config = _resolve(world, num_sequences, seq_len, seed, image_size, world_options)
    config["format"] = _FORMAT_VERSION
    path = Path(path)
    if path.exists():
        return _load_checked(path, config)
    logger.info("generating %s dataset (%d x %d) into %s", world, num_sequences, seq_len, path)
    data = generate_dataset(world, num_sequences, seq_len, seed=seed, image_size=image_size, **world_options)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    data.memmap(prefix=tmp)
    (tmp / _META_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))
    try:
        os.replace(tmp, path)
    except OSError:
        # Another process generating the same dataset finished first: keep its copy.
        shutil.rmtree(tmp)
        if not path.exists():
            raise
    return _load_checked(path, config)


def _load_checked(path: Path, config: dict) -> TensorDictBase:
    """Load the dataset at ``path`` after checking it was generated with ``config``."""
    meta_file = path / _META_FILE
    if not meta_file.exists():
        raise ValueError(f"path {str(path)!r} exists but holds no {_META_FILE}; choose another path")
    stored = json.loads(meta_file.read_text())
    differ = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
    if differ:
        details = {k: (stored.get(k), config.get(k)) for k in differ}
        raise ValueError(f"dataset at {str(path)!r} was generated with other arguments (stored, requested): {details}")
    return TensorDict.load_memmap(path)
