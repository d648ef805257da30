"""Plan2Explore: the ensemble, its disagreement, the two critics, config and checkpoints."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Composite, OneHot, Unbounded

from torchrl_vta.agent import Agent, Learner
from torchrl_vta.checkpoint import Checkpointer
from torchrl_vta.config import RecipeConfig
from torchrl_vta.envs import make_env
from torchrl_vta.modules.actor import make_actor
from torchrl_vta.modules.ensemble import EnsembleMLP, disagreement
from torchrl_vta.modules.world_model import make_world_model
from torchrl_vta.objectives import ImaginationActorLoss, Plan2Explore, make_value_model
from torchrl_vta.pretrained import load_pretrained


def rolled_batch(wm, action_dim, batch=4, steps=10, seed=0, continuous=False):
    generator = torch.Generator().manual_seed(seed)
    if continuous:
        action = torch.rand(batch, steps, action_dim, generator=generator) * 2 - 1
    else:
        action = torch.eye(action_dim)[torch.randint(action_dim, (batch, steps), generator=generator)]
    is_init = torch.zeros(batch, steps, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[0, 5] = True  # an episode start inside a slice
    td = TensorDict({"action": action, "is_init": is_init,
                     "next": {"position": torch.randn(batch, steps, 5, generator=generator),
                              "reward": torch.randn(batch, steps, 1, generator=generator),
                              "terminated": torch.zeros(batch, steps, 1, dtype=torch.bool)}},
                    [batch, steps])
    with torch.no_grad():
        return wm(td)


def world_model(levels=2, action_spec=None):
    torch.manual_seed(0)
    return make_world_model(Composite(position=Unbounded((5,))), action_spec or OneHot(3),
                            preset="test", levels=levels)


def test_disagreement_is_zero_when_members_agree_and_grows_with_their_spread():
    ensemble = EnsembleMLP(6, 4, members=5, units=8)
    x = torch.randn(3, 6)
    with torch.no_grad():
        for params in (ensemble.weights, ensemble.biases, ensemble.norm_weights, ensemble.norm_biases):
            for p in params:
                p.copy_(p[:1].expand_as(p))
    # Zero up to the rounding of the mean over identical members.
    torch.testing.assert_close(ensemble.disagreement(x), torch.zeros(3, 1), atol=1e-12, rtol=0)
    base = torch.randn(1, 3, 4)
    spread = torch.randn(5, 3, 4)
    values = [disagreement(base + scale * spread) for scale in (0.0, 0.5, 1.0, 2.0)]
    assert torch.equal(values[0], torch.zeros(3, 1))
    for low, high in zip(values, values[1:]):
        assert (high > low).all()
    # A variance: spread x2 gives disagreement x4.
    torch.testing.assert_close(values[3], 4 * values[2])


def test_members_are_independent_networks():
    ensemble = EnsembleMLP(6, 4, members=3, units=8)
    x = torch.randn(2, 6)
    out = ensemble(x)
    for member in range(3):
        h = x
        for i, (w, b) in enumerate(zip(ensemble.weights, ensemble.biases)):
            h = h @ w[member] + b[member, 0]
            if i < len(ensemble.norm_weights):
                h = torch.nn.functional.layer_norm(h, h.shape[-1:])
                h = torch.nn.functional.silu(h * ensemble.norm_weights[i][member, 0]
                                             + ensemble.norm_biases[i][member, 0])
        torch.testing.assert_close(out[member], h)
    assert not torch.allclose(out[0], out[1]), "members start from different weights"


@pytest.mark.parametrize("target, hierarchical", [("embed", False), ("state", True)])
def test_ensemble_loss_falls_on_a_fixed_batch_and_leaves_the_world_model_alone(target, hierarchical):
    wm = world_model()
    batch = rolled_batch(wm, 3)
    batch["next", "boundary"][:, ::2] = 1.0  # READ on half the steps: the segment ensemble trains
    explore = Plan2Explore(wm, members=4, units=32, target=target, hierarchical=hierarchical)
    optimizer = torch.optim.Adam(explore.parameters(), lr=3e-3)
    names = ["loss_ensemble"] + (["loss_abs_ensemble"] if hierarchical else [])
    first = None
    for _ in range(150):
        losses = explore(batch)
        total = sum(losses[n] for n in names)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        first = first or {n: losses[n].item() for n in names}
    for name in names:
        assert losses[name].item() < 0.3 * first[name], (name, first[name], losses[name].item())
    assert all(p.grad is None for p in wm.parameters()), "the world model gets no gradient"
    assert explore.norm.weight > 0 and explore.norm.value() > 0


def test_pairs_skip_episode_starts():
    wm = world_model(levels=1)
    batch = rolled_batch(wm, 3)
    explore = Plan2Explore(wm, members=3, units=8)
    reference = explore(batch)["loss_ensemble"]
    # The target across the episode start (row 0, step 5) does not count.
    batch["next", "embed"][0, 5] += 100.0
    assert torch.equal(explore(batch)["loss_ensemble"], reference)
    batch["next", "embed"][0, 6] += 100.0
    assert explore(batch)["loss_ensemble"] > reference


def test_segment_reward_is_paid_only_where_the_transition_reads():
    wm = world_model()
    explore = Plan2Explore(wm, members=3, units=8, hierarchical=True, abs_scale=2.0)
    feature = torch.randn(2, 6, wm.rssm.feature_dim)
    action = torch.eye(3)[torch.randint(3, (2, 6))]
    copy = explore.intrinsic_reward(feature, action, torch.zeros(2, 6, 1))
    read = explore.intrinsic_reward(feature, action, torch.ones(2, 6, 1))
    flat = Plan2Explore(wm, members=3, units=8)
    flat.ensemble.load_state_dict(explore.ensemble.state_dict())
    torch.testing.assert_close(copy, flat.intrinsic_reward(feature, action))
    assert (copy[:, 0] == 0).all() and (read[:, 0] == 0).all(), "nothing leads into the start"
    assert (read[:, 1:] > copy[:, 1:]).all()
    inputs = torch.cat([feature[:, :-1], action[:, :-1]], -1)
    torch.testing.assert_close(read[:, 1:] - copy[:, 1:],
                               2.0 * explore.abs_ensemble.disagreement(inputs))


@pytest.mark.parametrize("action_spec", [OneHot(3), Bounded(-1, 1, (2,))], ids=["reinforce", "dynamics"])
def test_actor_gives_the_ensemble_no_gradient_and_the_intrinsic_reward_only_enters_its_critic(action_spec):
    wm = world_model(action_spec=action_spec)
    batch = rolled_batch(wm, action_spec.shape[-1], continuous=not isinstance(action_spec, OneHot))
    dim = wm.rssm.feature_dim
    actor = make_actor(action_spec, dim, units=16)
    explore = Plan2Explore(wm, members=3, units=8, hierarchical=True)
    loss = ImaginationActorLoss(actor, wm, value_model=make_value_model(dim, units=16), horizon=4,
                                intrinsic=explore, intrinsic_scale=0.5,
                                intrinsic_value_model=make_value_model(
                                    dim, units=16, value_key="intrinsic_state_value",
                                    logits_key="intrinsic_state_value_logits"))
    loss.eval()  # the return norms stay put between the two calls
    torch.manual_seed(1)
    losses, imagined = loss(batch)
    losses["loss_actor"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is None for p in explore.parameters()), "the actor trains no ensemble member"
    assert all(p.grad is None for p in wm.parameters())
    assert imagined["intrinsic_reward"].shape == imagined["reward"].shape
    # Another ensemble: other intrinsic rewards, the same task returns.
    with torch.no_grad():
        for p in explore.ensemble.parameters():
            p.mul_(3.0)
    torch.manual_seed(1)
    _, again = loss(batch)
    assert torch.equal(again["lambda_target"], imagined["lambda_target"])
    assert not torch.equal(again["intrinsic_lambda_target"], imagined["intrinsic_lambda_target"])


@pytest.mark.parametrize("levels", [2, 3])
def test_reward_free_learner_updates_every_part_and_resumes_bit_for_bit(tmp_path, levels):
    env = make_env("maze", image_size=16, max_steps=30, seed=0)
    batch = torch.stack([env.rollout(12, break_when_any_done=False) for _ in range(2)])

    def fresh():
        torch.manual_seed(0)
        agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)),
                               levels=levels)
        return agent, Learner(agent, horizon=3, explore_mode="reward_free",
                              explore=dict(members=3, units=16, hierarchical=True))

    agent, learner = fresh()
    # The intrinsic critic is a fresh network of the task critic's shape.
    ours = [p.shape for p in learner.intrinsic_value_model.parameters()]
    assert ours == [p.shape for p in agent.value_model.parameters()]
    before = {k: v.clone() for k, v in learner.state_dict().items() if k != "optimizers"}
    metrics = learner.update(batch.clone())
    for key in ("loss_ensemble", "loss_abs_ensemble", "loss_intrinsic_value", "intrinsic_reward_mean"):
        assert torch.isfinite(metrics[key]), key
    after = learner.state_dict()
    for part in ("explore.ensemble", "explore.abs_ensemble", "intrinsic_value_model", "agent.actor"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part)), part
    Checkpointer(tmp_path).save({"agent": agent.state_dict(), "learner": learner.state_dict()})
    torch.manual_seed(5)
    reference = learner.update(batch.clone())
    agent2, learner2 = fresh()
    state = Checkpointer(tmp_path).load()
    agent2.load_state_dict(state["agent"])
    learner2.load_state_dict(state["learner"])
    torch.manual_seed(5)
    resumed = learner2.update(batch.clone())
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key
    for (name, p1), p2 in zip(learner.named_parameters(), learner2.parameters()):
        assert torch.equal(p1, p2), name


def test_fine_tuning_starts_from_the_pretrained_weights(tmp_path):
    env = make_env("maze", image_size=16, max_steps=30, seed=0)
    batch = env.rollout(12, break_when_any_done=False).unsqueeze(0)
    agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
    source = Learner(agent, horizon=3, explore_mode="reward_free", explore=dict(members=3, units=16))
    source.update(batch)
    Checkpointer(tmp_path / "checkpoints").save({"learner": source.state_dict(),
                                                 "counters": {"frames": 12}})
    for mode in ("off", "mixed"):
        torch.manual_seed(7)
        target_agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        explore = dict(members=3, units=16) if mode != "off" else None
        target = Learner(target_agent, horizon=3, explore_mode=mode, explore=explore)
        assert load_pretrained(target, tmp_path)["frames"] == 12
        for (name, p1), p2 in zip(agent.named_parameters(), target_agent.parameters()):
            assert torch.equal(p1, p2), name
        assert int(target.updates) == 0, "a fine-tuning run counts its own updates"
        if mode == "mixed":
            assert torch.equal(target.explore.ensemble.weights[0], source.explore.ensemble.weights[0])
    other = Learner(Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2, 4))))
    with pytest.raises(ValueError, match="init_from=.*another shape"):
        load_pretrained(other, tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"explore.mode": "curious"}, "explore.mode='curious' is not one of"),
    ({"explore.mode": "mixed", "explore.members": 1}, "explore.members must be an int >= 2"),
    ({"explore.mode": "mixed", "explore.intrinsic_scale": -0.1}, "explore.intrinsic_scale must be"),
    ({"explore.mode": "mixed", "explore.extrinsic_scale": -1.0}, "explore.extrinsic_scale must be"),
    ({"explore.mode": "reward_free", "explore.intrinsic_scale": 0.0}, "explores nothing"),
    ({"explore.mode": "mixed", "explore.target": "pixels"}, "explore.target='pixels'"),
    ({"explore.mode": "mixed", "explore.hierarchical": True, "model.levels": 1}, "explore.hierarchical"),
    ({"explore.members": 4}, "explore.members is set but explore.mode=off"),
    ({"explore.mode": "mixed", "explore.lr": 0.0}, "explore.lr must be > 0"),
    ({"init_from": "/nonexistent/run"}, "init_from=/nonexistent/run"),
])
def test_config_errors_name_the_key(changes, message):
    cfg = RecipeConfig()
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, key, value)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        cfg.validate()


def test_recipe_reward_free_pretraining_then_task_fine_tuning(tmp_path):
    import importlib.util
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("vta_dreamer_p2e", root / "examples" / "vta_dreamer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def config(*overrides):
        with initialize_config_dir(str(root / "configs"), version_base=None):
            return OmegaConf.to_object(compose("vta_dreamer", overrides=list(overrides)))

    common = ["env=maze", "model=tiny", "env.options.image_size=16", "collector.total_frames=100"]
    pre = tmp_path / "pre"
    result = script.train(config(*common, f"output_dir={pre}", "explore.mode=reward_free",
                                 "explore.hierarchical=true", "explore.members=3"))
    assert result["updates"] > 0
    columns = {p.stem for p in (pre / "logs" / "vta_dreamer" / "scalars" / "train").glob("*.csv")}
    assert {"loss_ensemble", "loss_abs_ensemble", "loss_intrinsic_value", "intrinsic_reward_mean"} <= columns
    state = Checkpointer(pre / "checkpoints").load()
    assert any(k.startswith("explore.ensemble") for k in state["learner"])
    assert any(k.startswith("intrinsic_value_model") for k in state["learner"])

    fine = tmp_path / "fine"
    cfg = config(*common, f"output_dir={fine}", "collector.init_random_frames=0",
                 "collector.total_frames=20", f"init_from={pre}")
    loaded = {}
    original = script.load_pretrained

    def spy(learner, source):
        counters = original(learner, source)
        loaded.update({k: v.clone() for k, v in learner.agent.state_dict().items()})
        return counters

    script.load_pretrained = spy
    script.train(cfg)
    assert loaded, "init_from loaded the pretrained weights"
    for key, value in state["agent"].items():
        assert torch.equal(loaded[key], value), key


def test_reward_normaliser_is_one_until_it_counts_something_and_then_the_mean():
    from torchrl_vta.objectives.exploration import _RunningMean

    norm = _RunningMean(0.5)
    assert norm.value().item() == 1.0
    norm.update(torch.tensor([3.0, 5.0]), torch.zeros(2))  # nothing counted
    assert norm.value().item() == 1.0 and norm.weight.item() == 0.0
    norm.update(torch.tensor([3.0, 5.0, 100.0]), torch.tensor([1.0, 1.0, 0.0]))
    assert norm.value().item() == pytest.approx(4.0), "bias-corrected masked mean"
    norm.update(torch.tensor([8.0]), torch.ones(1))
    assert norm.value().item() == pytest.approx((0.25 * 4 + 0.5 * 8) / 0.75)
