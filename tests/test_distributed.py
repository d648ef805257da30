"""The data-parallel learner on two gloo ranks (spawned processes, tiny models)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_vta import Agent, Checkpointer, Learner
from torchrl_vta.distributed import DataParallel, collective_statistics, gather_statistics
from torchrl_vta.envs import make_env
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.objectives import actor_loss

WORLD = 2
STEPS = 12


def _spawn(worker, directory, *args):
    mp.start_processes(worker, args=(directory, *args), nprocs=WORLD, start_method="spawn")


def _join(rank, directory, world=WORLD):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank,
                            world_size=world)
    return DataParallel(dist.group.WORLD)


def _batch(seed, rows):
    env = make_env("maze", image_size=16, max_steps=40, seed=seed)
    torch.manual_seed(seed)
    return torch.stack([env.rollout(STEPS, break_when_any_done=False) for _ in range(rows)])


def _learner(seed, parallel=None, **rssm):
    torch.manual_seed(seed)
    env = make_env("maze", image_size=16, max_steps=40)
    agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)),
                           rssm=dict(boundary_kind="surprise", **rssm))
    return Learner(agent, horizon=3, data_parallel=parallel)


def _state(learner):
    state = {f"learner.{k}": v.clone() for k, v in learner.state_dict().items()
             if isinstance(v, torch.Tensor)}
    for index, optimizer in enumerate(learner.optimizers):
        for param, values in optimizer.state_dict()["state"].items():
            for name, value in values.items():
                state[f"optimizer{index}.{param}.{name}"] = torch.as_tensor(value).clone()
    grads = {f"grad.{n}": p.grad.clone() for n, p in learner.named_parameters()
             if p.grad is not None}
    return state, grads


def _ranks_worker(rank, directory, updates):
    parallel = _join(rank, directory)
    learner = _learner(seed=100 + rank, parallel=parallel)   # broadcast makes them equal
    initial, _ = _state(learner)
    for update in range(updates):
        learner.update(_batch(seed=10 * update + rank, rows=2))
    state, _ = _state(learner)
    torch.save({"initial": initial, "state": state}, f"{directory}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ranks_stay_identical_after_updates_on_different_data():
    """Different initial seeds and different batches per rank; after three updates every
    parameter, buffer (surprise histogram and scale, return percentiles, slow critic,
    counters) and optimiser moment is bit-identical on both ranks, and training moved them."""
    with tempfile.TemporaryDirectory() as directory:
        _spawn(_ranks_worker, directory, 3)
        ranks = [torch.load(f"{directory}/rank{r}.pt") for r in range(WORLD)]
    first, second = ranks[0]["state"], ranks[1]["state"]
    assert first.keys() == second.keys() and any(k.startswith("optimizer") for k in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    moved = [k for k in first if k.startswith("learner.agent.world_model")
             and first[k].is_floating_point() and not torch.equal(first[k], ranks[0]["initial"][k])]
    assert len(moved) > 10
    assert first["learner.agent.world_model.rssm.segment_policy.surprise_histogram"].sum() > 0


def _deterministic(monkeypatch_target=None):
    # No sampling anywhere, so one process and two ranks see the same numbers: the RSSM
    # takes posterior/prior means and argmax boundaries, the actor its mode.
    HierarchicalRSSM._deterministic = lambda self: True
    original = set_exploration_type
    actor_loss.set_exploration_type = lambda _: original(ExplorationType.DETERMINISTIC)


def _equivalence_worker(rank, directory, world):
    _deterministic()
    parallel = _join(rank, directory, world) if world > 1 else None
    # Forced READs (segments of at most 2 steps) differ between the halves, so the masked
    # boundary loss has different counts on the two ranks.
    learner = _learner(seed=0, parallel=parallel, max_seg_len=2, limit_mode="both")
    full = _batch(seed=7, rows=4)
    rows = full.shape[0] // world
    learner.update(full[rank * rows:(rank + 1) * rows])
    state, grads = _state(learner)
    torch.save({"state": state, "grads": grads}, f"{directory}/world{world}_rank{rank}.pt")
    if parallel is not None:
        dist.destroy_process_group()


def test_one_ddp_update_on_two_halves_equals_one_update_on_the_whole_batch():
    with tempfile.TemporaryDirectory() as directory:
        _spawn(_equivalence_worker, directory, WORLD)
        mp.start_processes(_equivalence_worker, args=(directory, 1), nprocs=1,
                           start_method="spawn")
        parallel = torch.load(f"{directory}/world{WORLD}_rank0.pt")
        single = torch.load(f"{directory}/world1_rank0.pt")
    assert parallel["grads"].keys() == single["grads"].keys()
    assert parallel["state"].keys() == single["state"].keys()
    for part in ("grads", "state"):
        for key, value in single[part].items():
            if value.is_floating_point():
                # Float tolerance: the same sums in another order (per tensor, relative to
                # its largest entry, as small entries of a sum carry its absolute error).
                error = (parallel[part][key] - value).abs().max().item()
                assert error <= 1e-5 * value.abs().max().item() + 1e-7, (key, error)
            else:
                assert torch.equal(parallel[part][key], value), key


def _exchanges_worker(rank, directory):
    parallel = _join(rank, directory)
    layer = torch.nn.Linear(2, 1)
    torch.nn.init.constant_(layer.weight, float(rank))
    parallel.broadcast_(layer)
    assert layer.weight.eq(0).all()       # rank 0's values
    if rank == 0:                          # a gradient on one rank only: mean with zeros
        layer(torch.ones(1, 2)).sum().backward()
    parallel.average_gradients(layer.parameters())
    assert torch.equal(layer.weight.grad, torch.full((1, 2), 0.5))
    silent = torch.nn.Linear(2, 1)         # no gradient on any rank: stays None
    parallel.average_gradients(silent.parameters())
    assert silent.weight.grad is None
    parallel.check_in_step(layer)          # equal after the broadcast
    with torch.no_grad():
        layer.bias.add_(rank)              # one rank drifts: every rank raises, naming it
    with pytest.raises(RuntimeError, match=r"differ in 1 tensor\(s\), e.g. \['bias'\]"):
        parallel.check_in_step(layer)
    assert parallel.any(rank == 1) and not parallel.all(rank == 1) and parallel.all(True)
    assert parallel.mean(torch.tensor(float(rank))).item() == 0.5
    flags = torch.tensor([rank == 0, True])
    with collective_statistics(parallel):
        assert gather_statistics(flags).tolist() == [True, True, False, True]
    assert gather_statistics(flags).tolist() == flags.tolist()   # outside: local
    open(os.path.join(directory, f"ok{rank}"), "w").close()
    dist.destroy_process_group()


def test_exchanges_of_two_ranks():
    with tempfile.TemporaryDirectory() as directory:
        _spawn(_exchanges_worker, directory)
        assert all(os.path.exists(f"{directory}/ok{r}") for r in range(WORLD))


def test_from_environment_names_the_launcher_when_the_variables_are_missing(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        DataParallel.from_environment()


# ---------------------------------------------------------------- the recipe under torchrun
ROOT = Path(__file__).resolve().parents[1]
BATCH = 20  # env steps per rank per collector batch
RECIPE = [
    "env=balls", "model=tiny", "learner.ddp=true", f"collector.frames_per_batch={BATCH}",
    f"collector.init_random_frames={2 * BATCH}", "collector.train_ratio=4",
    f"checkpoint.every_frames={4 * BATCH}", "eval.every_frames=100000", "eval.video=false",
    "eval.max_steps=10", "threads=1",
]


def _torchrun(run, *overrides, pause=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("TORCHRL_VTA_CHECKPOINT_PAUSE", None)
    if pause:
        env["TORCHRL_VTA_CHECKPOINT_PAUSE"] = pause
    log = run.parent / f"torchrun_{len(list(run.parent.glob('torchrun_*')))}.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
         str(ROOT / "examples" / "vta_dreamer.py"), *RECIPE, f"output_dir={run}", *overrides],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def _wait(condition, process, log, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"torchrun exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _wait_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _frames(directory):
    return [meta["frames"] for meta in Checkpointer(directory).metas()]


def test_torchrun_two_ranks_train_and_a_run_killed_between_the_ranks_saves_resumes(tmp_path):
    """Two gloo ranks train the recipe end to end (frame counts and checkpoint intervals count
    both ranks' env steps: 2 x 20 per collector batch); killed while rank 0 has written its second
    checkpoint and rank 1 has not, the run resumes both ranks from the first, the one they
    share, and runs to its end with every rank's checkpoints at the same frame counts."""
    run = tmp_path / "run"
    main, other = run / "checkpoints", run / "checkpoints_rank1"
    process, log = _torchrun(run, "collector.total_frames=4000", pause="begin@2:1")
    _wait(lambda: (other / "PAUSED_begin").exists() and _frames(main)[:1] == [8 * BATCH],
          process, log)
    # kill -9 the launcher and both workers (torchrun starts them in sessions of their own):
    # rank 0's pid is in the run lock, rank 1's in its pause marker.
    workers = [int((run / ".lock").read_text()), int((other / "PAUSED_begin").read_text())]
    for pid in [process.pid, *workers]:
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    _wait_gone(workers)
    (other / "PAUSED_begin").unlink()
    assert _frames(main) == [8 * BATCH, 4 * BATCH] and _frames(other) == [4 * BATCH]
    # Each rank stored its own envs' steps.
    replay_main = torch.load(Checkpointer(main).generations()[1] / "replay_000.pt")["tensor"]
    replay_other = torch.load(Checkpointer(other).generations()[0] / "replay_000.pt")["tensor"]
    assert replay_main.shape == replay_other.shape and not torch.equal(replay_main, replay_other)

    total = 12 * BATCH
    process, log = _torchrun(run, "resume=true", f"collector.total_frames={total}")
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.count(f"at {4 * BATCH} frames ({2 * BATCH} in the replay)") == WORLD, text[-3000:]
    assert f"Done: {total} frames" in text
    assert _frames(main) == _frames(other) == [total, 8 * BATCH]
    # Rank 0's orphaned generation (written before the kill, past the shared one) is gone.
    assert [p.name for p in Checkpointer(main).generations()] == ["gen_000004", "gen_000003"]
    state = Checkpointer(main).load()
    assert state["counters"]["frames"] == total and "agent" in state
    assert "agent" not in Checkpointer(other).load()
    assert list((run / "logs").rglob("*.csv")) and not (run / "logs_rank1").exists()
