"""Actor, imagination and actor-critic losses on tiny world models."""

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import Bounded, Composite, OneHot, Unbounded
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import PercentileValueNorm, SymExpTwoHot

from torchrl_vta.modules.actor import make_actor, make_feature_module
from torchrl_vta.modules.world_model import make_world_model
from torchrl_vta.objectives import (
    ImaginationActorLoss,
    lambda_returns,
    make_target_updater,
    make_value_loss,
    make_value_model,
)
from torchrl_vta.objectives.imagination import imagine_trajectories

OBS_SPEC = Composite(position=Unbounded((5,)))
SPECS = {"continuous": Bounded(-1, 1, (2,)), "discrete": OneHot(3)}
B, T, H = 2, 3, 3


def _batch(action_spec, batch=B, steps=T):
    if isinstance(action_spec, OneHot):
        classes = action_spec.shape[-1]
        action = torch.eye(classes)[torch.randint(classes, (batch, steps))]
    else:
        action = torch.rand(batch, steps, action_spec.shape[-1]) * 2 - 1
    is_init = torch.zeros(batch, steps, 1, dtype=torch.bool)
    is_init[:, 0] = True
    never = torch.zeros(batch, steps, 1, dtype=torch.bool)
    return TensorDict(
        {
            "action": action,
            "is_init": is_init,
            "next": {
                "position": torch.randn(batch, steps, 5),
                "reward": torch.randn(batch, steps, 1),
                "done": never,
                "terminated": never.clone(),
            },
        },
        [batch, steps],
    )


def _last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def _liven(layer: nn.Linear) -> None:
    # Zero-initialised heads predict exactly 0, which makes every return and
    # every gradient through them vanish. Random weights over a bias that peaks
    # at the middle (zero) bin give moderate, feature-dependent values instead
    # of the huge ones a flat random softmax over symexp bins would decode to.
    with torch.no_grad():
        nn.init.normal_(layer.weight, std=0.3)
        if layer.out_features > 1:
            bins = torch.arange(layer.out_features, dtype=torch.float32)
            layer.bias.copy_(-(bins - layer.out_features // 2).abs())


def _setup(kind="continuous", levels=2, live_heads=True, **loss_kwargs):
    """World model, actor, critic, losses and a rolled-out batch (with gradients)."""
    spec = SPECS[kind]
    wm = make_world_model(OBS_SPEC, spec, preset="test", levels=levels)
    actor = make_actor(spec, wm.rssm.feature_dim, layers=1, units=16)
    value_model = make_value_model(wm.rssm.feature_dim, layers=1, units=16)
    if live_heads:
        for module in (wm.reward_head, wm.continue_head, value_model):
            _liven(_last_linear(module))
    actor_loss = ImaginationActorLoss(
        actor, wm, value_model=value_model, **{"horizon": H, **loss_kwargs}
    )
    value_loss = make_value_loss(value_model, actor_loss=actor_loss)
    updater = make_target_updater(value_loss)
    batch = wm(_batch(spec))
    return wm, actor, value_model, actor_loss, value_loss, updater, batch


def _grads(module):
    return {name: p.grad for name, p in module.named_parameters()}


def _has_grad(grad):
    return grad is not None and bool(grad.abs().sum() > 0)


# ---------------------------------------------------------------- returns
def test_lambda_returns_hand_computed():
    # States 1..3 reached: r = (1, 2, 3), v = (0.5, 1, 2), c = (1, 0.5, 1); γ = 0.9, λ = 0.8.
    # R_3 = v_3 = 2
    # R_2 = 3 + 0.9 * 1.0 * (0.2 * 2.0 + 0.8 * 2.0)   = 4.8
    # R_1 = 2 + 0.9 * 0.5 * (0.2 * 1.0 + 0.8 * 4.8)   = 2 + 0.45 * 4.04   = 3.818
    # R_0 = 1 + 0.9 * 1.0 * (0.2 * 0.5 + 0.8 * 3.818) = 1 + 0.9 * 3.1544 = 3.83896
    reward = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    value = torch.tensor([0.5, 1.0, 2.0]).reshape(1, 3, 1)
    cont = torch.tensor([1.0, 0.5, 1.0]).reshape(1, 3, 1)
    returns = lambda_returns(reward, value, cont, 0.9, 0.8)
    torch.testing.assert_close(returns.flatten(), torch.tensor([3.83896, 3.818, 4.8]))


def test_two_hot_round_trip_of_lambda_targets():
    targets = lambda_returns(
        torch.randn(4, 5, 1) * 10, torch.randn(4, 5, 1) * 100, torch.rand(4, 5, 1), 0.99, 0.95
    )
    value_model = make_value_model(6, layers=1, units=8)
    decoder = value_model[1].module
    assert isinstance(decoder, SymExpTwoHot)
    encoded = decoder.encode(targets.squeeze(-1))
    torch.testing.assert_close(encoded.sum(-1), torch.ones(4, 5))
    decoded = decoder(encoded.clamp_min(1e-30).log())
    torch.testing.assert_close(decoded, targets, rtol=1e-4, atol=1e-4)
    # TorchRL's value loss scores the logits on the very same support.
    torch.testing.assert_close(make_value_loss(value_model).value_bins, decoder.bins)


# -------------------------------------------------------------- actors
@pytest.mark.parametrize("kind", ["continuous", "discrete", "unbounded"])
def test_actor_sampling_and_modes(kind):
    spec = {**SPECS, "unbounded": Unbounded((2,))}[kind]
    actor = make_actor(spec, 6, layers=1, units=16)
    feature = torch.randn(64, 6, requires_grad=True)
    td = actor(TensorDict({"feature": feature}, [64]))
    action = td["action"]
    assert action.shape == (64, spec.shape[-1]) and td["action_log_prob"].shape == (64,)
    assert action.requires_grad  # rsample: straight-through / reparameterised
    if kind == "continuous":
        assert bool((action.abs() <= 1).all())
    if kind == "discrete":
        assert bool((action.sum(-1) == 1).all())
        assert bool((actor.get_dist(td).probs >= 0.01 / 3).all())  # unimix
    assert actor.get_dist(td).entropy().shape == (64,)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first = actor(TensorDict({"feature": feature}, [64]))["action"]
        second = actor(TensorDict({"feature": feature}, [64]))["action"]
    torch.testing.assert_close(first, second)
    expected = actor.get_dist(td).deterministic_sample
    torch.testing.assert_close(first.to(action.dtype), expected.to(action.dtype))


def test_actor_bad_options():
    with pytest.raises(ValueError, match="unimix"):
        make_actor(OneHot(3), 6, unimix=1.0)
    with pytest.raises(ValueError, match="min_std"):
        make_actor(Bounded(-1, 1, (2,)), 6, min_std=1.0, max_std=0.5)
    with pytest.raises(ValueError, match="not supported"):
        make_actor(Composite(a=Unbounded((2,))), 6)


def test_feature_module_matches_rssm_feature():
    wm = make_world_model(OBS_SPEC, SPECS["continuous"], preset="test")
    batch = wm(_batch(SPECS["continuous"]))
    module = make_feature_module(wm.feature_keys, out_key="feature")
    torch.testing.assert_close(module(batch)["feature"], wm.feature(batch))


# ---------------------------------------------------------- imagination
@pytest.mark.parametrize("levels", [2, 1])
def test_imagination_shapes_and_segment_limit(levels):
    spec = SPECS["discrete"]
    wm = make_world_model(OBS_SPEC, spec, preset="test", levels=levels, rssm=dict(max_seg_len=3))
    if levels == 2:
        # A prior that always wants COPY: every READ must come from the limit.
        prior_out = _last_linear(wm.rssm.boundary_prior)
        with torch.no_grad():
            prior_out.weight.zero_()
            prior_out.bias.copy_(torch.tensor([-10.0, 10.0]))
    actor = make_actor(spec, wm.rssm.feature_dim, layers=1, units=16)
    loss = ImaginationActorLoss(
        actor, wm, value_model=make_value_model(wm.rssm.feature_dim, layers=1, units=8), horizon=10
    )
    with torch.no_grad():
        batch = wm(_batch(spec))
    start = loss.start_state(batch)
    traj = imagine_trajectories(
        wm.rssm, actor, wm.reward_head, wm.continue_head, start, 10, backprop=False
    )
    n = B * T
    assert traj.batch_size == (n, 11)
    for key, size in [("feature", wm.rssm.feature_dim), ("action", 3), ("reward", 1),
                      ("continue", 1), ("discount_weight", 1), ("action_log_prob", 1),
                      ("action_entropy", 1), ("seg_len", 1)]:
        assert traj[key].shape == (n, 11, size), key
    torch.testing.assert_close(traj["continue"][:, 0], torch.ones(n, 1))
    weight = traj["discount_weight"]
    assert bool((weight[:, 1:] <= weight[:, :-1]).all()) and not weight.requires_grad
    if levels == 1:
        assert "boundary" not in traj.keys()
        return
    boundary, seg_len = traj["boundary"], traj["seg_len"]
    assert set(boundary.unique().tolist()) <= {0.0, 1.0}
    assert bool((seg_len[:, 1:] <= 3).all())
    # READ exactly where the segment before reached the limit (the prior says COPY).
    torch.testing.assert_close(boundary[:, 1:], (seg_len[:, :-1] >= 3).float())
    assert bool(boundary[:, 1:].sum() > 0)


# ------------------------------------------------------------- gradients
@pytest.mark.parametrize("levels", [2, 1])
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_actor_loss_gradients_reach_the_actor_only(kind, levels):
    # No entropy bonus: the only gradient paths left are REINFORCE (discrete)
    # and the dynamics through the frozen world model (continuous).
    wm, actor, value_model, actor_loss, _, _, batch = _setup(kind, levels, entropy_coef=0.0)
    assert actor_loss.gradient == {"discrete": "reinforce", "continuous": "dynamics"}[kind]
    loss_td, imagined = actor_loss(batch)
    loss_td["loss_actor"].backward()
    actor_grads = _grads(actor)
    assert all(_has_grad(g) for g in actor_grads.values()), [
        n for n, g in actor_grads.items() if not _has_grad(g)
    ]
    leaked = [n for n, g in {**_grads(wm), **_grads(value_model)}.items() if g is not None]
    assert not leaked
    assert all(p.requires_grad for p in wm.parameters())  # flags restored
    assert imagined.batch_size == (B * T, H)
    assert not imagined["lambda_target"].requires_grad and not imagined["feature"].requires_grad
    assert ("imagined_boundary_rate" in loss_td.keys()) == (levels == 2)
    for key in ("actor_entropy", "return_mean", "return_scale", "value_mean"):
        assert not loss_td[key].requires_grad


@pytest.mark.parametrize("backprop", [True, False])
def test_imagination_keeps_the_dynamics_graph_only_when_asked(backprop):
    wm, actor, _, actor_loss, _, _, batch = _setup("continuous")
    traj = imagine_trajectories(
        wm.rssm, actor, wm.reward_head, wm.continue_head, actor_loss.start_state(batch), H,
        backprop=backprop,
    )
    assert traj["feature"][:, 1:].requires_grad == backprop
    if backprop:  # the start state is detached: nothing of it depends on the actor
        grads = torch.autograd.grad(traj["feature"][:, 0].sum(), list(actor.parameters()),
                                    retain_graph=True, allow_unused=True)
        assert all(g is None or not bool(g.abs().sum() > 0) for g in grads)
    assert traj["action_log_prob"].requires_grad and traj["action_entropy"].requires_grad
    if backprop:
        traj["reward"][:, 1:].sum().backward()
        assert any(_has_grad(g) for g in _grads(actor).values())
        assert not [n for n, g in _grads(wm).items() if g is not None]


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_value_loss_gradients_reach_the_critic_only(kind):
    wm, actor, value_model, actor_loss, value_loss, _, batch = _setup(kind)
    _, imagined = actor_loss(batch)
    value_td, _ = value_loss(imagined)
    value_td["loss_value"].backward()
    assert all(_has_grad(g) for g in _grads(value_model).values())
    assert not [n for n, g in {**_grads(wm), **_grads(actor)}.items() if g is not None]
    # The replay-value loss (optional) keeps to the critic as well.
    value_model.zero_grad()
    replay = actor_loss.replay_value_input(batch, imagined)
    value_loss.replay_value_loss(replay, horizon=333.0)["loss_replay_value"].backward()
    assert any(_has_grad(g) for g in _grads(value_model).values())
    assert not [n for n, g in {**_grads(wm), **_grads(actor)}.items() if g is not None]


def test_value_loss_reads_lambda_target_and_discount_weight():
    *_, actor_loss, value_loss, _, batch = _setup("discrete")
    _, imagined = actor_loss(batch)
    base = value_loss(imagined)[0]["loss_value"]
    shifted = imagined.clone().set("lambda_target", imagined["lambda_target"] + 5.0)
    assert not torch.isclose(value_loss(shifted)[0]["loss_value"], base)
    muted = imagined.clone().set("discount_weight", torch.zeros_like(imagined["discount_weight"]))
    assert value_loss(muted)[0]["loss_value"].item() == 0.0


def test_soft_update_moves_slow_critic_towards_online():
    *_, value_model, _, value_loss, updater, _ = _setup("discrete")
    online = value_loss.value_model_params
    target = value_loss.target_value_model_params
    before = target.clone()
    with torch.no_grad():
        for p in value_model.parameters():
            p.add_(1.0)
    updater.step()
    expected = before.apply(lambda t, o: t + 0.02 * (o - t), online.data)
    for key, value in target.items(True, True):
        torch.testing.assert_close(value.data, expected[key])


# ------------------------------------------------------------ optimising
def _mean(values):
    return sum(values) / len(values)


def test_actor_loss_decreases_on_fixed_batch():
    _, actor, _, actor_loss, _, _, batch = _setup("continuous")
    actor_loss.eval()  # a fixed return scale keeps the losses comparable
    optim = torch.optim.Adam(actor.parameters(), lr=3e-2)
    losses = []
    for _ in range(25):
        torch.manual_seed(1)  # same imagination noise each step: a clean signal
        loss = actor_loss(batch)[0]["loss_actor"]
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert _mean(losses[-5:]) < _mean(losses[:5])


def test_value_loss_decreases_on_fixed_batch():
    *_, value_model, actor_loss, value_loss, updater, batch = _setup("discrete")
    _, imagined = actor_loss(batch)
    optim = torch.optim.Adam(value_model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = value_loss(imagined)[0]["loss_value"]
        optim.zero_grad()
        loss.backward()
        optim.step()
        updater.step()
        losses.append(loss.item())
    assert _mean(losses[-5:]) < 0.8 * _mean(losses[:5])


# --------------------------------------------------------- keys / options
def test_set_keys_renames_inputs_and_outputs():
    spec = SPECS["continuous"]
    wm = make_world_model(OBS_SPEC, spec, preset="test")
    batch = wm(_batch(spec))
    batch.rename_key_(("next", "belief"), ("next", "h"))
    batch.rename_key_(("next", "terminated"), ("next", "term"))
    actor = make_actor(spec, wm.rssm.feature_dim, layers=1, units=16, feature_key="feat")
    value_model = make_value_model(wm.rssm.feature_dim, layers=1, units=8, feature_key="feat")
    loss = ImaginationActorLoss(actor, wm, value_model=value_model, horizon=H)
    with pytest.raises(ValueError, match="feat"):
        loss(batch)
    loss.set_keys(feature="feat")
    with pytest.raises(KeyError, match="belief"):
        loss(batch)
    loss.set_keys(belief=("next", "h"), terminated=("next", "term"),
                  reward="imagined_reward", discount_weight="weight")
    assert ("next", "h") in loss.in_keys
    loss_td, imagined = loss(batch)
    assert {"feat", "imagined_reward", "weight", "lambda_target"} <= set(imagined.keys())
    value_loss = make_value_loss(value_model, discount_key="weight")
    make_target_updater(value_loss)
    assert value_loss(imagined)[0]["loss_value"].isfinite()
    with pytest.raises(ValueError, match="not an accepted"):
        loss.set_keys(not_a_key="x")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(horizon=0), "horizon"),
        (dict(gamma=1.5), "gamma"),
        (dict(lmbda=-0.1), "lmbda"),
        (dict(entropy_coef=-1.0), "entropy_coef"),
        (dict(gradient="pathwise"), "gradient"),
        (dict(return_norm=object()), "return_norm"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, name):
    spec = SPECS["discrete"]
    wm = make_world_model(OBS_SPEC, spec, preset="test", levels=1)
    actor = make_actor(spec, wm.rssm.feature_dim, layers=1, units=8)
    value_model = make_value_model(wm.rssm.feature_dim, layers=1, units=8)
    with pytest.raises(ValueError, match=name):
        ImaginationActorLoss(actor, wm, value_model=value_model, **kwargs)


def test_bad_value_options_raise():
    value_model = make_value_model(6, layers=1, units=8)
    with pytest.raises(ValueError, match="slow_regularization"):
        make_value_loss(value_model, slow_regularization=-1.0)
    with pytest.raises(ValueError, match="tau"):
        make_target_updater(make_value_loss(value_model), tau=0.0)


def test_return_norm_is_torchrl_percentile_ema():
    *_, actor_loss, _, _, batch = _setup("discrete")
    norm = actor_loss.retnorm
    assert isinstance(norm, PercentileValueNorm)
    assert (norm.quantiles, norm.rate, norm.min_scale) == ((0.05, 0.95), 0.01, 1.0)
    actor_loss(batch)
    assert bool(norm.high > norm.low)  # updated in training mode
    frozen_stats = norm.high.clone()
    actor_loss.eval()
    actor_loss(batch)
    torch.testing.assert_close(norm.high, frozen_stats)


def test_single_action_spec_is_refused_with_a_clear_message():
    from torchrl.data import OneHot

    from torchrl_vta.modules.actor import make_actor

    with pytest.raises(ValueError, match="nothing to choose"):
        make_actor(OneHot(1), 8)
