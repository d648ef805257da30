"""The data-parallel learner on two gloo ranks (spawned processes, tiny models)."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_vta import Agent, Learner
from torchrl_vta.distributed import DataParallel, collective_statistics, gather_statistics
from torchrl_vta.envs import make_env
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.objectives import actor_critic

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
    actor_critic.set_exploration_type = lambda _: original(ExplorationType.DETERMINISTIC)


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
