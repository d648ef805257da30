"""The collector backends (``collector.backend``): one batch layout on every engine."""

import importlib.util

import pytest
import torch

from torchrl_vta import RecipeConfig, make_agent, make_collector, make_env_factory
from torchrl_vta.collectors import resolve_backend

FRAMES = 10  # per env and batch
ENVS = 2


def _collect(backend, batches=4, max_steps=7):
    cfg = RecipeConfig()
    cfg.model.preset = "test"
    cfg.env.name, cfg.env.options = "maze", {"image_size": 16, "max_steps": max_steps}
    cfg.collector.num_envs, cfg.collector.frames_per_batch = ENVS, FRAMES
    cfg.collector.backend = backend
    agent = make_agent(make_env_factory(cfg)(), cfg)
    total = batches * FRAMES * ENVS
    collector = make_collector(cfg, agent.policy, remaining_frames=total, init_random_frames=total // 2,
                               primer_factory=agent.make_primer, device=torch.device("cpu"))
    try:
        data = [batch.clone() for batch in collector]
    finally:
        collector.shutdown()
    return torch.cat(data, 1)


def _check_layout_and_trajectories(data, max_steps):
    assert data.shape == (ENVS, 4 * FRAMES)
    ids = data["collector", "traj_ids"]
    steps = data["next", "step_count"].squeeze(-1) if ("next", "step_count") in data.keys(True) \
        else None
    starts = data["is_init"].squeeze(-1)
    for env in range(ENVS):
        # A new id exactly where an episode starts, the same id across batch boundaries.
        changes = torch.cat([torch.tensor([True]), ids[env, 1:] != ids[env, :-1]])
        assert torch.equal(changes[1:], starts[env, 1:]), (env, ids[env], starts[env])
        assert int(starts[env].sum()) >= 4 * FRAMES // max_steps
    assert not set(ids[0].tolist()) & set(ids[1].tolist())
    # Each row is its own env's stream (differently seeded), not another worker's copy.
    assert not torch.equal(data["pixels"][0], data["pixels"][1])
    if steps is not None:
        assert int(steps.max()) <= max_steps


@pytest.mark.parametrize("backend", ["local", "multiprocess", "distributed"])
def test_every_backend_gives_the_same_layout_and_trajectory_ids(backend):
    _check_layout_and_trajectories(_collect(backend), max_steps=7)


NO_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                            reason="Ray is not installed (pip install 'torchrl_vta[ray]')")


@NO_RAY
def test_ray_backend_gives_the_same_layout_and_trajectory_ids():
    _check_layout_and_trajectories(_collect("ray"), max_steps=7)


def test_backend_defaults_and_config_errors_name_the_key():
    cfg = RecipeConfig()
    assert resolve_backend(cfg) == "local"
    cfg.collector.num_envs = 3
    assert resolve_backend(cfg) == "multiprocess"
    cfg.collector.backend = "mpi"
    with pytest.raises(ValueError, match="collector.backend='mpi'"):
        cfg.validate()
    cfg.collector.backend, cfg.learner.ddp = "distributed", True
    with pytest.raises(ValueError, match="learner.ddp=true"):
        cfg.validate()
    cfg.collector.backend, cfg.learner.ddp, cfg.collector.sync_every = "local", False, 0
    with pytest.raises(ValueError, match="collector.sync_every"):
        cfg.validate()


def test_recipe_trains_on_the_distributed_backend(tmp_path):
    from tests.test_recipe import config, load_script

    run = tmp_path / "run"
    overrides = ["env=balls", "model=tiny", f"output_dir={run}", "collector.backend=distributed",
                 "collector.num_envs=2", "collector.frames_per_batch=20",
                 "collector.total_frames=160", "collector.init_random_frames=40"]
    result = load_script().train(config(*overrides))
    assert result["frames"] == 160 and result["updates"] > 0


@pytest.mark.parametrize("backend,sync_every", [
    ("multiprocess", 1), ("distributed", 1), ("distributed", 2),
    pytest.param("ray", 1, marks=NO_RAY), pytest.param("ray", 2, marks=NO_RAY)])
def test_workers_act_with_the_learners_weights_after_sync(backend, sync_every):
    """Changing the learner's actor (every logit but one pushed down) reaches the workers
    within the documented delay: the next batch for a per-batch sync, at most
    ``collector.sync_every`` batches later for ray. The distributed engine's workers run
    ahead of a slow learner by an unbounded number of batches, so there the change must
    show by the last of six batches and, once shown, in every later batch (a batch that
    mixed two rollouts, the worker's buffer rewritten during its send, breaks that)."""
    cfg = RecipeConfig()
    cfg.model.preset = "test"
    cfg.env.name, cfg.env.options = "maze", {"image_size": 16, "max_steps": 50}
    cfg.collector.num_envs, cfg.collector.frames_per_batch = ENVS, FRAMES
    cfg.collector.backend, cfg.collector.sync_every = backend, sync_every
    agent = make_agent(make_env_factory(cfg)(), cfg)
    # Without DreamerV3's 1% uniform mix the changed actor takes action 0 with probability
    # 1 - 1e-43, so a batch acted with the learner's weights is all 0s and the check below
    # cannot fail by chance (with the mix, 3 stray actions of 20 did, on CI).
    probabilistic = [m for m in agent.actor.modules() if hasattr(m, "distribution_kwargs")]
    assert [m.distribution_kwargs["unimix"] for m in probabilistic] == [0.01]
    probabilistic[0].distribution_kwargs["unimix"] = 0.0
    batches = 6 if backend == "distributed" else 4
    collector = make_collector(cfg, agent.policy, remaining_frames=batches * FRAMES * ENVS,
                               init_random_frames=0, primer_factory=agent.make_primer,
                               device=torch.device("cpu"))
    last = [m for m in agent.actor.modules() if isinstance(m, torch.nn.Linear)][-1]
    chosen = []
    try:
        for index, batch in enumerate(collector):
            chosen.append(bool((batch["action"].argmax(-1) == 0).all()))
            if index == 0:
                with torch.no_grad():
                    last.weight.zero_()
                    last.bias.fill_(-50.0)
                    last.bias[0] = 50.0
                from torchrl_vta import sync_policy_weights
                sync_policy_weights(collector)
    finally:
        collector.shutdown()
    assert not chosen[0]  # an untrained actor takes every action
    if backend == "distributed":
        first = chosen.index(True) if True in chosen else batches
        assert chosen[first:] == [True] * (batches - first) and first < batches, chosen
    else:
        latest = {"multiprocess": 1, "ray": sync_every}[backend]
        assert chosen[latest:] == [True] * (batches - latest), chosen
