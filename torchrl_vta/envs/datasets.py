"""Offline video datasets with ground-truth events: the ``balls`` and ``maze`` worlds, and
any world a user adds with :func:`register_dataset`. ``nested_balls`` is the balls world with
two nested levels of events by default (``scene_every=3, scene_jitter=1``: a background
scene that switches every 2 to 4 colour changes, see :mod:`torchrl_vta.envs.scenes`).

:func:`generate_dataset` returns a :class:`~tensordict.TensorDict` of batch ``[N, T]``:

=========== ===================== ========================================================
key         shape, dtype          meaning
=========== ===================== ========================================================
pixels      [N, T, 3, H, W] uint8 frames, channels first
event       [N, T, 1] bool        ground-truth event at frame t (see the world's module)
scene_event [N, T, 1] bool        balls worlds (if ``scene_every`` is set): the scene switched
                                  at frame t, a subset of ``event``
audio       [N, T, D] float32     balls only (if ``audio_dim > 0``): collision sound
action      [N, T, 3] float32     maze only: one-hot (forward, left, right) the scripted
                                  agent took *after* seeing frame t, so
                                  ``event[:, t + 1] == action[:, t] is a turn``
position    [N, T, 2] float32     maze only: camera (x, y) in blocks
heading     [N, T] int64          maze only: 0 east, 1 south, 2 west, 3 north
=========== ===================== ========================================================

A registered dataset must hold at least ``pixels`` and ``event`` as above; it is checked
(keys, shapes, dtypes) when generated, with an error naming the key. Sequences are
independent episodes starting at frame 0. Generation runs the batched world
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
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from torchrl_vta.envs.balls_world import BallsWorld
from torchrl_vta.envs.maze_layout import make_maze
from torchrl_vta.envs.maze_world import NUM_ACTIONS, MazeWorld
from torchrl_vta.envs.registry import check_registration

__all__ = ["WORLDS", "generate_dataset", "load_or_generate", "register_dataset", "registered_datasets"]

logger = logging.getLogger(__name__)

#: The built-in worlds (:func:`registered_datasets` also lists the user's).
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


# name -> (generator(num_sequences, seq_len, *, seed, image_size, **options), option defaults)
_DATASETS: dict[str, tuple[Callable[..., TensorDictBase], dict]] = {}


def register_dataset(name: str, generator: Callable[..., TensorDictBase], *,
                     overwrite: bool = False) -> None:
    """Register a world so that :func:`generate_dataset`, :func:`load_or_generate` and the
    video experiments of :mod:`torchrl_vta.video` (``dataset.name``) produce it, in the
    process that registered it.

    ``generator(num_sequences, seq_len, *, seed, image_size, **options)`` returns a
    TensorDict ``[N, T]`` with at least ``pixels`` ``[N, T, 3, H, W]`` uint8 and ``event``
    ``[N, T, 1]`` bool, a deterministic function of its arguments; its options are its
    other keyword-only arguments, with their defaults (what the cache records).

    Example:
        >>> def flashes(num_sequences, seq_len, *, seed, image_size, period: int = 4):
        ...     t = torch.arange(seq_len)
        ...     event = (t % period == 0).expand(num_sequences, seq_len)[..., None]
        ...     pixels = (event[..., None, None] * 255).to(torch.uint8).expand(
        ...         num_sequences, seq_len, 3, image_size, image_size)
        ...     return TensorDict(pixels=pixels, event=event, batch_size=[num_sequences, seq_len])
        >>> register_dataset("flashes", flashes, overwrite=True)
        >>> generate_dataset("flashes", 2, 8, seed=0, period=2)["event"][0, :4, 0].tolist()
        [True, False, True, False]
    """
    check_registration("dataset", "generator", name, generator, _DATASETS, overwrite)
    parameters = inspect.signature(generator).parameters
    missing = [arg for arg in ("seed", "image_size") if arg not in parameters]
    if missing:
        raise TypeError(f"generator for {name!r} must take keyword arguments {missing} "
                        "(signature: (num_sequences, seq_len, *, seed, image_size, **options))")
    _DATASETS[name] = (generator, _keyword_defaults(generator, {"seed", "image_size"}))


def registered_datasets() -> list[str]:
    """Sorted names :func:`generate_dataset` accepts.

    Example:
        >>> {"balls", "maze"} <= set(registered_datasets())
        True
    """
    return sorted(_DATASETS)


def _resolve(world: str, num_sequences: int, seq_len: int, seed: int, image_size: int, options: dict) -> dict:
    if world not in _DATASETS:
        raise ValueError(f"world must be one of {registered_datasets()}, got {world!r} "
                         "(register_dataset adds one)")
    for name, value, low in (("num_sequences", num_sequences, 1), ("seq_len", seq_len, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    defaults = _DATASETS[world][1]
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
        world: ``"balls"``, ``"nested_balls"``, ``"maze"`` or a name given to :func:`register_dataset`.
        num_sequences: number of sequences ``N``.
        seq_len: frames per sequence ``T``.
        seed: non-negative int; the output is a deterministic function of all arguments.
        image_size: frame side in pixels.
        **world_options: ``balls``: ``num_balls``, ``radius``, ``speed``, ``random_change_prob``,
            ``ball_collisions``, ``audio_dim``, ``scene_every``, ``scene_jitter`` (see
            :class:`~torchrl_vta.envs.balls_world.BallsWorld`; ``nested_balls`` takes the same);
            ``maze``: ``maze_size``, ``loop_prob`` (see :func:`~torchrl_vta.envs.maze_layout.make_maze`),
            ``steps_per_block``, ``fov`` (see :class:`~torchrl_vta.envs.maze_world.MazeWorld`).

    Example:
        >>> data = generate_dataset("maze", 2, 5, seed=0, maze_size=3)
        >>> data.batch_size, data["pixels"].shape
        (torch.Size([2, 5]), torch.Size([2, 5, 3, 32, 32]))
        >>> generate_dataset("balls", 2, 5, seed=0, scene_every=3)["scene_event"].shape
        torch.Size([2, 5, 1])
    """
    config = _resolve(world, num_sequences, seq_len, seed, image_size, world_options)
    generator = _DATASETS[world][0]
    data = generator(config["num_sequences"], config["seq_len"], seed=config["seed"],
                     image_size=config["image_size"], **config["options"])
    _check_generated(world, data, config)
    return data


def _check_generated(world: str, data, config: dict) -> None:
    # A user's generator is checked where its output enters the package, naming the key.
    n, t, size = config["num_sequences"], config["seq_len"], config["image_size"]
    if not isinstance(data, TensorDictBase) or tuple(data.batch_size) != (n, t):
        got = tuple(data.batch_size) if isinstance(data, TensorDictBase) else type(data).__name__
        raise ValueError(f"dataset {world!r}: the generator must return a TensorDict of batch "
                         f"[num_sequences, seq_len] = [{n}, {t}], got {got}")
    expected = {"pixels": ((n, t, 3, size, size), torch.uint8), "event": ((n, t, 1), torch.bool)}
    if "scene_event" in data.keys():
        expected["scene_event"] = ((n, t, 1), torch.bool)
    for key, (shape, dtype) in expected.items():
        value = data.get(key, None)
        if value is None or tuple(value.shape) != shape or value.dtype != dtype:
            got = None if value is None else (tuple(value.shape), value.dtype)
            raise ValueError(f"dataset {world!r}: key {key!r} must be {dtype} of shape {shape}, "
                             f"got {got}")


def _by_chunks(make_chunk, num_sequences: int, seq_len: int, *, seed: int, image_size: int,
               **options) -> TensorDict:
    # A built-in world's generator: its simulator in chunks of _CHUNK sequences.
    config = {"num_sequences": num_sequences, "seq_len": seq_len, "seed": seed,
              "image_size": image_size, "options": options}
    chunks = []
    for c, start in enumerate(range(0, num_sequences, _CHUNK)):
        rows = range(start, min(start + _CHUNK, num_sequences))
        chunks.append(make_chunk(rows, config, np.random.default_rng([seed, 0, c])))
    data = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return TensorDict({key: torch.from_numpy(value) for key, value in data.items()},
                      batch_size=[num_sequences, seq_len])


def _balls_chunk(rows: range, config: dict, rng: np.random.Generator) -> dict:
    sim = BallsWorld(len(rows), image_size=config["image_size"], seed=rng, **config["options"])
    frames = [sim.reset()]
    frames += [sim.step() for _ in range(config["seq_len"] - 1)]
    out = {
        "pixels": np.stack([f["pixels"] for f in frames], 1),
        "event": np.stack([f["event"] for f in frames], 1)[..., None],
    }
    if sim.audio_dim > 0:
        out["audio"] = np.stack([f["audio"] for f in frames], 1)
    if sim.scenes is not None:
        out["scene_event"] = np.stack([f["scene_event"] for f in frames], 1)[..., None]
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
    if isinstance(stored.get("options"), dict) and stored.get("world") in _DATASETS:
        # An option added after the data were stored reads as its default, which reproduces
        # the old data (e.g. scene_every=None), so older caches stay valid.
        stored["options"] = {**_DATASETS[stored["world"]][1], **stored["options"]}
    differ = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
    if differ:
        details = {k: (stored.get(k), config.get(k)) for k in differ}
        raise ValueError(f"dataset at {str(path)!r} was generated with other arguments (stored, requested): {details}")
    return TensorDict.load_memmap(path)


# Datasets are action-free videos, so the balls world's control options do not apply.
_DATASETS["balls"] = (partial(_by_chunks, _balls_chunk), _keyword_defaults(
    BallsWorld.__init__, {"image_size", "seed", "controlled", "push"}))
_DATASETS["nested_balls"] = (_DATASETS["balls"][0], {**_DATASETS["balls"][1], "scene_every": 3, "scene_jitter": 1})
_DATASETS["maze"] = (partial(_by_chunks, _maze_chunk), {
    "maze_size": inspect.signature(make_maze).parameters["maze_size"].default,
    **_keyword_defaults(make_maze, {"seed"}),
    **_keyword_defaults(MazeWorld.__init__, {"image_size", "seed"}),
})
