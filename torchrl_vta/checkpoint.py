"""Crash-safe checkpoints: one generation directory per checkpoint, published atomically.

Layout of a checkpoint directory (``<output_dir>/checkpoints``)::

    LATEST              name of the published generation ("gen_000012"), replaced atomically
    gen_000011/         the previous complete generation (kept until the next one is published)
    gen_000012/
      state.pt          agent, learner (optimisers...), counters, RNG, config (tensors and plain
                        containers only: loaded with ``torch.load(weights_only=True)``)
      replay.pt         the replay's length, write cursor and keys
      replay_NNN.pt     the *filled* part of one replay key each (a copy, never the whole capacity)
      manifest.json     generation id, and the size and SHA-256 of every file (written last)
    gen_000013.partial/ a generation being written (ignored by ``load``, removed by ``save``)

``save`` writes a new generation under a ``.partial`` name (each file fsynced), renames
it, then replaces ``LATEST`` (write, fsync, ``os.replace``), and only then removes older
generations. A kill at any point leaves the previous generation intact and published.
``load`` verifies sizes, checksums and generation ids, and falls back to the next
complete generation with a logged warning; if none is usable it raises
:class:`CheckpointError` naming every file and what is wrong with it.

Testing hook: ``TORCHRL_VTA_CHECKPOINT_PAUSE=<phase>[@<n>][:<rank>]`` makes the ``n``-th
save of the process (default the first; with ``:<rank>``, only in the process whose
``RANK`` is that) write ``<directory>/PAUSED_<phase>`` and sleep at that phase, so a test
can ``kill -9`` it there. Phases, in order: :data:`PHASES`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import torch

from torchrl_vta.checkpoint_files import (
    CheckpointError,
    InsufficientDiskSpaceError,
    NonFiniteStateError,
    _check_finite,
    _fsync_dir,
    _nbytes,
    _sha256,
    _write_durably,
    check_free_space,
    load_replay_state,
    replay_state,
)

__all__ = [
    "PHASES",
    "CheckpointError",
    "Checkpointer",
    "InsufficientDiskSpaceError",
    "NonFiniteStateError",
    "check_free_space",
]

log = logging.getLogger(__name__)

FORMAT = 1
POINTER = "LATEST"
STATE_FILE, REPLAY_FILE, MANIFEST_FILE = "state.pt", "replay.pt", "manifest.json"
_GEN = re.compile(r"^gen_(\d{6,})$")
_GEN_ANY = re.compile(r"^gen_(\d{6,})(\.partial)?$")

#: Where a save can be interrupted (see the module docstring's testing hook).
PHASES = ("begin", "replay", "state", "manifest", "rename", "pointer", "prune")
_PAUSE_ENV = "TORCHRL_VTA_CHECKPOINT_PAUSE"


# ---------------------------------------------------------------- the checkpointer
class Checkpointer:
    """Crash-safe checkpoints in ``directory``: state (agent, learner, counters...) plus replay.

    ``save(state, replay)`` writes a new generation and publishes it atomically;
    ``load(replay)`` returns the newest verified state (restoring the replay into
    the given buffer) or ``None`` when there is no checkpoint yet. ``keep`` complete
    generations are kept (at least 2: the new one and the one it replaces).

    Examples:
        >>> import tempfile
        >>> ckpt = Checkpointer(tempfile.mkdtemp())
        >>> ckpt.save({"frames": 10}).name
        'gen_000001'
        >>> ckpt.save({"frames": 20}).name
        'gen_000002'
        >>> ckpt.load()["frames"]
        20
    """

    def __init__(self, directory: str | Path, *, keep: int = 2):
        if keep < 2:
            raise ValueError(f"keep must be >= 2 (the new generation and the previous), got {keep}.")
        self.directory = Path(directory)
        self.keep = keep
        self.path: Path | None = None  # the generation last loaded or saved
        self._saves = 0

    # -- layout
    @property
    def pointer(self) -> Path:
        return self.directory / POINTER

    def generations(self) -> list[Path]:
        """Complete generation directories (with a manifest), newest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _GEN.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(_GEN.match(p.name).group(1)), reverse=True)

    def published(self) -> Path | None:
        """The generation ``LATEST`` points to (``None`` if there is no readable pointer)."""
        try:
            name = self.pointer.read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return self.directory / name if _GEN.match(name) else None

    def _next_id(self) -> int:
        ids = [int(m.group(1)) for p in (self.directory.iterdir() if self.directory.is_dir() else [])
               if (m := _GEN_ANY.match(p.name))]
        return max(ids, default=0) + 1

    def _pause(self, phase: str) -> None:
        spec = os.environ.get(_PAUSE_ENV)
        if not spec:
            return
        spec_at, _, rank = spec.partition(":")
        name, _, nth = spec_at.partition("@")
        if rank and rank != os.environ.get("RANK", "0"):
            return
        if name == phase and self._saves == int(nth or 1):
            (self.directory / f"PAUSED_{phase}").write_text(str(os.getpid()))
            log.warning("%s=%s: pausing the checkpoint write at phase %r.", _PAUSE_ENV, spec, phase)
            while True:
                time.sleep(60)

    # -- save
    def save(self, state: dict, replay_buffer=None, *, meta: dict | None = None) -> Path:
        """Write ``state`` (and the filled part of ``replay_buffer``) as a new generation.

        ``meta``: small JSON values stored in the manifest (e.g. the frame count), which
        :meth:`metas` lists and :meth:`load`'s ``accept`` selects by without loading state.
        """
        _check_finite(state)
        self._saves += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("gen_*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        replay = replay_state(replay_buffer) if replay_buffer is not None else None
        check_free_space(self.directory, int(1.05 * (_nbytes(state) + _nbytes(replay))) + (1 << 20))

        generation = self._next_id()
        name = f"gen_{generation:06d}"
        staging = self.directory / f"{name}.partial"
        final = self.directory / name
        staging.mkdir()
        try:
            self._pause("begin")
            files = []
            if replay is not None:
                # One file per key, each a copy of the filled part only (saving a view
                # of the memmap would write its whole capacity).
                data = replay.pop("data") or {}
                replay["keys"] = list(data)
                for index, (key, value) in enumerate(data.items()):
                    name_i = f"replay_{index:03d}.pt"
                    part = {"key": key, "tensor": value.clone(), "generation": generation}
                    _write_durably(staging / name_i, lambda h: torch.save(part, h))
                    files.append(name_i)
                    del part
                replay["generation"] = generation
                _write_durably(staging / REPLAY_FILE, lambda h: torch.save(replay, h))
                files.append(REPLAY_FILE)
            self._pause("replay")
            _write_durably(staging / STATE_FILE,
                           lambda h: torch.save({**state, "_generation": generation}, h))
            files.append(STATE_FILE)
            self._pause("state")
            manifest = {
                "format": FORMAT,
                "generation": generation,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "meta": dict(meta or {}),
                "files": {f: {"bytes": (staging / f).stat().st_size, "sha256": _sha256(staging / f)}
                          for f in files},
            }
            text = json.dumps(manifest, indent=1).encode()
            _write_durably(staging / MANIFEST_FILE, lambda h: h.write(text))
            _fsync_dir(staging)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise InsufficientDiskSpaceError(
                    error.errno,
                    f"writing a checkpoint in {self.directory} failed: {error.strerror}. "
                    "The previous checkpoint is kept; free disk space and resume.",
                ) from error
            raise
        self._pause("manifest")
        os.rename(staging, final)
        _fsync_dir(self.directory)
        self._pause("rename")
        previous = self.path
        tmp = self.pointer.with_suffix(".tmp")
        _write_durably(tmp, lambda h: h.write(f"{name}\n".encode()))
        os.replace(tmp, self.pointer)
        _fsync_dir(self.directory)
        self.path = final
        self._pause("pointer")
        # Keep the new generation, the one this run continued from, and older complete
        # ones up to `keep`; generations newer than that base are orphans of a killed run.
        keep = [final] + ([previous] if previous is not None else [])
        base_id = int(_GEN.match(previous.name).group(1)) if previous is not None else 0
        for old in self.generations():
            if old in keep:
                continue
            if len(keep) < self.keep and int(_GEN.match(old.name).group(1)) < base_id:
                keep.append(old)
            else:
                shutil.rmtree(old, ignore_errors=True)
        self._pause("prune")
        return final

    # -- load
    def verify(self, generation: Path) -> dict:
        """The manifest of ``generation`` after checking every file; raises ``CheckpointError``."""
        manifest_path = generation / MANIFEST_FILE
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            gen_id = int(manifest["generation"])
        except FileNotFoundError:
            raise CheckpointError(f"{manifest_path} is missing (an incomplete generation).")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{manifest_path} is not a valid manifest ({error!r}).")
        if gen_id != int(_GEN.match(generation.name).group(1)):
            raise CheckpointError(f"{manifest_path} belongs to generation {gen_id}, not {generation.name}.")
        for name, expected in files.items():
            path = generation / name
            if not path.is_file():
                raise CheckpointError(f"{path} is missing.")
            size = path.stat().st_size
            if size != expected["bytes"]:
                raise CheckpointError(
                    f"{path} has {size} bytes, the manifest says {expected['bytes']} (truncated or replaced)."
                )
            if _sha256(path) != expected["sha256"]:
                raise CheckpointError(f"{path} does not match its checksum in {manifest_path} (corrupt).")
        return manifest

    def _load_file(self, path: Path, generation: int, mmap: bool = False) -> dict:
        try:
            data = torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
        except Exception as error:  # unpickling errors of every kind
            raise CheckpointError(f"{path} cannot be loaded ({type(error).__name__}: {error}).")
        stamp = data.get("_generation", data.get("generation"))
        if stamp != generation:
            raise CheckpointError(f"{path} belongs to generation {stamp}, not {generation}.")
        return data

    def load_replay(self, replay_buffer) -> None:
        """Restore the replay of the generation :meth:`load` returned into ``replay_buffer``."""
        if self.path is None:
            raise CheckpointError("load_replay: call load() first.")
        manifest = json.loads((self.path / MANIFEST_FILE).read_text())
        if REPLAY_FILE not in manifest["files"]:
            log.warning("Checkpoint %s has no replay (checkpoint.replay=false): the replay "
                        "starts empty.", self.path)
            return
        load_replay_state(replay_buffer, self._load_replay(self.path, int(manifest["generation"])))

    def _load_replay(self, generation: Path, gen_id: int) -> dict:
        replay = self._load_file(generation / REPLAY_FILE, gen_id)
        keys = replay.pop("keys", [])
        replay["data"] = {} if keys else None
        for index, key in enumerate(keys):
            part = self._load_file(generation / f"replay_{index:03d}.pt", gen_id, mmap=True)
            if part.get("key") != key:
                raise CheckpointError(f"{generation / f'replay_{index:03d}.pt'} holds {part.get('key')!r}, "
                                      f"not {key!r}.")
            replay["data"][key] = part["tensor"]
        return replay

    def metas(self) -> list[dict]:
        """The ``meta`` of every complete generation, newest first (manifests read, files
        not verified; an unreadable manifest is left out).

        Examples:
            >>> import tempfile
            >>> ckpt = Checkpointer(tempfile.mkdtemp())
            >>> _ = ckpt.save({}, meta={"frames": 10}); _ = ckpt.save({}, meta={"frames": 20})
            >>> [m["frames"] for m in ckpt.metas()], ckpt.load(accept=lambda m: m["frames"] == 10)
            ([20, 10], {})
        """
        found = []
        for generation in self.generations():
            try:
                found.append(dict(json.loads((generation / MANIFEST_FILE).read_text())["meta"]))
            except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue
        return found

    def load(self, replay_buffer=None, *, accept=None) -> dict | None:
        """The newest verified state, or ``None`` if the directory holds no checkpoint.

        ``accept(meta) -> bool`` restricts the search to the generations whose manifest
        ``meta`` it accepts (e.g. the frame count every rank of a distributed run holds).
        """
        candidates = self.generations()
        published = self.published()
        if published is not None and published in candidates:
            candidates.remove(published)
            candidates.insert(0, published)
        elif candidates:
            log.warning("%s: no valid %s pointer; trying the newest complete generation.",
                        self.directory, POINTER)
        if not candidates:
            if self.pointer.exists():
                raise CheckpointError(
                    f"{self.pointer} names {self.pointer.read_text().strip()!r} but no generation "
                    f"directory exists in {self.directory}. Start a fresh run (overwrite=true)."
                )
            return None
        problems = []
        for generation in candidates:
            try:
                manifest = self.verify(generation)
                if accept is not None and not accept(manifest.get("meta", {})):
                    continue
                gen_id = int(manifest["generation"])
                state = self._load_file(generation / STATE_FILE, gen_id)
                if replay_buffer is not None and REPLAY_FILE in manifest["files"]:
                    load_replay_state(replay_buffer, self._load_replay(generation, gen_id))
            except CheckpointError as error:
                problems.append(str(error))
                log.warning("Checkpoint %s is unusable: %s Trying an older one.", generation, error)
                continue
            state.pop("_generation", None)
            self.path = generation
            if problems:
                log.warning("Fell back to checkpoint %s.", generation)
            return state
        if accept is not None:
            problems.append("no other generation has the requested meta")
        raise CheckpointError(
            f"no usable checkpoint in {self.directory}:\n  " + "\n  ".join(problems)
            + "\nRestore the files from a backup, or start a fresh run in this directory with "
            "overwrite=true (this deletes the run's outputs)."
        )
