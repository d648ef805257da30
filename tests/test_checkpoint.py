"""Checkpointer: generations, filled-only replay, disk-space check, verification, safe loading."""

from __future__ import annotations

import shutil

import pytest
import torch
from tensordict import TensorDict

from torchrl_vta.checkpoint import (
    CheckpointError,
    Checkpointer,
    InsufficientDiskSpaceError,
    NonFiniteStateError,
)
from torchrl_vta.config import RecipeConfig
from torchrl_vta.recipe import TRAJ_KEY, make_replay_buffer


def buffer(tmp_path, storage="memmap", capacity=1000):
    cfg = RecipeConfig()
    cfg.replay.storage, cfg.replay.capacity = storage, capacity
    return make_replay_buffer(cfg, tmp_path / "scratch" if storage == "memmap" else None)


def steps(n, start=0):
    return TensorDict({"pixels": torch.full((n, 3, 8, 8), 7, dtype=torch.uint8) + start,
                       TRAJ_KEY: torch.zeros(n, dtype=torch.long)}, [n])


def test_generations_keep_the_previous_one_and_restore_the_replay(tmp_path):
    replay = buffer(tmp_path)
    ckpt = Checkpointer(tmp_path / "ckpt")
    for i in range(3):
        replay.extend(steps(10, i))
        ckpt.save({"frames": 10 * (i + 1)}, replay)
    assert [p.name for p in ckpt.generations()] == ["gen_000003", "gen_000002"]
    assert ckpt.published().name == "gen_000003"
    restored = buffer(tmp_path / "other")
    assert Checkpointer(tmp_path / "ckpt").load(restored)["frames"] == 30
    assert len(restored) == 30 and restored._writer._cursor == 30
    assert torch.equal(restored._storage._storage[:30]["pixels"], replay._storage._storage[:30]["pixels"])


def test_the_replay_dump_holds_only_the_filled_part(tmp_path):
    replay = buffer(tmp_path, capacity=100_000)  # 19 MB of pixels if dumped whole
    replay.extend(steps(10))
    generation = Checkpointer(tmp_path / "ckpt").save({"frames": 10}, replay)
    written = sum(p.stat().st_size for p in generation.iterdir())
    assert written < 100_000, written  # 10 steps of 192 bytes + headers


def test_full_disk_fails_before_writing_with_a_clear_message(tmp_path, monkeypatch):
    replay = buffer(tmp_path)
    replay.extend(steps(10))
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save({"frames": 10}, replay)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(InsufficientDiskSpaceError, match=r"ckpt: [\d,]+ bytes needed, 1,000 free"):
        ckpt.save({"frames": 20}, replay)
    monkeypatch.undo()
    assert Checkpointer(tmp_path / "ckpt").load()["frames"] == 10
    assert not list((tmp_path / "ckpt").glob("*.partial"))


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save({"agent": {"w": torch.ones(2)}})
    with pytest.raises(NonFiniteStateError, match=r"agent\.w"):
        ckpt.save({"agent": {"w": torch.tensor([1.0, float("nan")])}})
    assert torch.equal(Checkpointer(tmp_path).load()["agent"]["w"], torch.ones(2))


def test_no_usable_checkpoint_names_every_file_and_the_fix(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save({"frames": 1})
    ckpt.save({"frames": 2})
    (tmp_path / "gen_000002" / "state.pt").write_bytes(b"garbage")
    (tmp_path / "gen_000001" / "manifest.json").write_text("{")
    with pytest.raises(CheckpointError) as error:
        Checkpointer(tmp_path).load()
    message = str(error.value)
    assert "gen_000002/state.pt has 7 bytes" in message
    assert "gen_000001/manifest.json is not a valid manifest" in message
    assert "overwrite=true" in message


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Evil.marker}",))


def test_loading_never_runs_code_from_a_checkpoint(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    generation = ckpt.save({"frames": 1})
    _Evil.marker = tmp_path / "pwned"
    # A forged generation whose manifest matches its (malicious) state file.
    torch.save({"frames": 2, "_generation": 1, "payload": _Evil()}, generation / "state.pt")
    import hashlib, json

    manifest = json.loads((generation / "manifest.json").read_text())
    data = (generation / "state.pt").read_bytes()
    manifest["files"]["state.pt"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (generation / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        Checkpointer(tmp_path / "ckpt").load()
    assert not _Evil.marker.exists()
