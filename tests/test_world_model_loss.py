"""World-model loss: it learns, every term is finite, masks and densities are exact."""

import pytest
import torch
from tensordict import TensorDict
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical
from torchrl.data import Bounded, Composite, Unbounded

from torchrl_vta.modules.boundary_ops import READ
from torchrl_vta.modules.world_model import make_world_model
from torchrl_vta.objectives import WorldModelLoss

B, T = 2, 8


def obs_spec():
    return Composite(
        pixels=Bounded(0, 255, (3, 16, 16), dtype=torch.uint8),
        position=Unbounded((5,)),
        audio=Unbounded((8,)),
    )


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 4] = True
    return TensorDict(
        {
            "action": torch.rand(B, T, 2, generator=gen) * 2 - 1,
            "is_init": is_init,
            "next": {
                # Flat random colours: structured like real frames, unlike pixel noise.
                "pixels": (torch.rand(B, T, 3, 1, 1, generator=gen) * 255)
                .expand(B, T, 3, 16, 16)
                .to(torch.uint8),
                "position": torch.randn(B, T, 5, generator=gen) * 3,
                "audio": torch.randn(B, T, 8, generator=gen) * 0.3,
                "reward": torch.randn(B, T, 1, generator=gen),
                "terminated": torch.rand(B, T, 1, generator=gen) < 0.2,
            },
        },
        [B, T],
    )


def model(levels=2, **rssm):
    return make_world_model(obs_spec(), Bounded(-1, 1, (2,)), preset="test", levels=levels, rssm=rssm)


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("boundary_kl", ["categorical", "concrete"])
def test_loss_halves_when_overfitting_a_fixed_batch(levels, boundary_kl):
    torch.manual_seed(0)
    world_model = model(levels)
    loss = WorldModelLoss(world_model, boundary_kl=boundary_kl)
    optim = torch.optim.Adam(world_model.parameters(), lr=3e-3)
    data = batch()
    history = []
    for _ in range(200):
        losses = loss(data.clone())
        total = WorldModelLoss.total(losses)
        assert all(torch.isfinite(v).all() for v in losses.values())
        optim.zero_grad()
        total.backward()
        optim.step()
        history.append(total.item())
    start, end = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert end < 0.5 * start, (start, end)


def test_every_parameter_gets_a_gradient_and_terms_are_finite():
    world_model = model(latent="categorical")
    # free_bits=0: at initialisation every KL is under the 1-nat floor, which stops its gradient.
    loss = WorldModelLoss(
        world_model, free_bits=0.0, boundary_rate_target=0.2, boundary_rate_scale=1.0
    )
    losses = loss(batch())
    expected = {
        "loss_reco", "loss_reward", "loss_continue", "loss_kl", "loss_kl_abs",
        "loss_boundary", "loss_boundary_rate", "kl_obs", "kl_abs", "kl_boundary",
        "boundary_rate", "mean_segment_length", "reco_pixels", "reco_position", "reco_audio",
    }
    assert set(losses.keys()) == expected
    for key, value in losses.items():
        assert torch.isfinite(value), key
        assert value.requires_grad == key.startswith("loss_"), key
    # A 50/50 boundary posterior gives both READ and COPY steps, so both
    # observation-belief paths (restart and GRU) are used.
    with torch.no_grad():
        world_model.rssm.boundary_posterior.net[-1].weight.zero_()
        world_model.rssm.boundary_posterior.net[-1].bias.zero_()
    optim = torch.optim.SGD(world_model.parameters(), lr=1e-3)
    # Two passes: the zero-initialised reward output layer blocks the gradient
    # to the reward head's hidden layers until it has taken one step.
    for _ in range(2):
        optim.zero_grad()
        data = batch()
        data["is_init"].zero_()
        WorldModelLoss.total(loss(data)).backward()
        optim.step()
    read = data["next", "boundary"]
    # A sampled (unforced) READ updates the abstract GRU from a nonzero belief.
    assert (read == 0).any() and (read[:, 1:] == 1).any()
    missing = [n for n, p in world_model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing


def test_abstract_kl_on_copy_steps_contributes_exactly_zero():
    world_model = model()
    loss = WorldModelLoss(world_model)
    data = batch()
    world_model(data)
    read = data["next", "boundary"].squeeze(-1)
    copy = read == 0
    assert copy.any() and (~copy).any()
    reference = loss.loss_from_rollout(data)
    perturbed = data.clone()
    for key in ("abs_prior_stats", "abs_posterior_stats"):
        value = perturbed["next", key].clone()
        value[copy] = value[copy] + 5.0
        perturbed["next", key] = value
    again = loss.loss_from_rollout(perturbed)
    assert torch.equal(reference["loss_kl_abs"], again["loss_kl_abs"])
    # ...while changing a READ step changes it.
    value = perturbed["next", "abs_prior_stats"].clone()
    value[~copy] = value[~copy] + 5.0
    perturbed["next", "abs_prior_stats"] = value
    assert not torch.equal(reference["loss_kl_abs"], loss.loss_from_rollout(perturbed)["loss_kl_abs"])


def test_concrete_boundary_kl_matches_reference_density():
    world_model = model()
    loss = WorldModelLoss(world_model, boundary_kl="concrete")
    world_model.rssm.temperature = 0.7
    data = batch()
    losses = loss(data)
    y = data["next", "boundary_log_sample"]
    q = data["next", "boundary_logits"]
    p = data["next", "boundary_prior_logits"]
    free = ~data["next", "boundary_forced"].squeeze(-1)
    tau = torch.tensor(0.7)
    density = ExpRelaxedCategorical(tau, logits=q).log_prob(y) - ExpRelaxedCategorical(
        tau, logits=p
    ).log_prob(y)
    expected = density[free].mean()
    torch.testing.assert_close(losses["loss_boundary"], expected, rtol=1e-5, atol=1e-5)


def test_boundary_kl_skips_forced_steps():
    world_model = model()
    loss = WorldModelLoss(world_model)
    data = batch()
    world_model(data)
    reference = loss.loss_from_rollout(data)["loss_boundary"]
    forced = data["next", "boundary_forced"].squeeze(-1)
    assert forced[:, 0].all() and forced[:, 4].all()
    data["next", "boundary_prior_logits"][forced] = torch.tensor([-9.0, 9.0])
    assert torch.equal(reference, loss.loss_from_rollout(data)["loss_boundary"])


@pytest.mark.parametrize("boundary_kl_rep, budget_holds", [(None, True), (0.1, False)])
def test_segment_budget_outweighs_a_reconstruction_gain(boundary_kl_rep, budget_holds):
    """Past ``max_seg_num`` the prior is forced to COPY. If an extra READ buys 2 nats of
    reconstruction, the posterior must still learn COPY there with the default weights;
    with DreamerV3's rep weight 0.1 it learns READ (the all-READ drift)."""
    world_model = model()
    kwargs = {} if boundary_kl_rep is None else {"boundary_kl_rep": boundary_kl_rep}
    loss = WorldModelLoss(world_model, **kwargs)
    data = batch()
    world_model(data)
    free = ~data["next", "boundary_forced"]
    data["next", "boundary_prior_logits"] = torch.where(
        free, torch.tensor([-6.9, 6.9]), data["next", "boundary_prior_logits"]
    ).detach()
    read_logit = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.Adam([read_logit], lr=0.1)
    for _ in range(300):
        data["next", "boundary_logits"] = read_logit.expand(B, T, 2)
        read_prob = read_logit.softmax(-1)[READ]
        objective = loss.loss_from_rollout(data)["loss_boundary"] - 2.0 * read_prob
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    assert (read_logit.softmax(-1)[READ] < 0.5).item() == budget_holds


def test_diagnostics_describe_the_boundaries():
    world_model = model()
    data = batch()
    losses = WorldModelLoss(world_model)(data)
    read = data["next", "boundary"].squeeze(-1)
    assert losses["mean_segment_length"] == read.numel() / read.sum()
    free = ~data["next", "boundary_forced"].squeeze(-1)
    assert torch.isclose(losses["boundary_rate"], read[free].mean())
    assert 0 <= data["next", "boundary_logits"].softmax(-1)[..., READ].min()


def test_renamed_keys():
    world_model = model()
    loss = WorldModelLoss(world_model)
    loss.set_keys(reward=("next", "r"), terminated=("next", "term"))
    data = batch()
    data["next", "r"] = data["next"].pop("reward")
    data["next", "term"] = data["next"].pop("terminated")
    losses = loss(data)
    assert torch.isfinite(losses["loss_reward"]) and torch.isfinite(losses["loss_continue"])
    with pytest.raises(KeyError, match=r"set_keys\(reward="):
        WorldModelLoss(world_model)(data)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kl_dyn=-1.0), "kl_dyn"),
        (dict(boundary_kl="gumbel"), "boundary_kl"),
        (dict(boundary_rate_scale=1.0), "boundary_rate_target"),
        (dict(boundary_rate_target=1.5), "boundary_rate_target"),
        (dict(free_bits=-0.1), "free_bits"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WorldModelLoss(model(), **kwargs)


def test_world_model_loss_reaches_no_actor_or_critic_parameter():
    from torchrl_vta import Agent

    class Specs:
        observation_spec = obs_spec()
        action_spec = Bounded(-1, 1, (2,))

    agent = Agent.from_env(Specs, preset="test", encoder=dict(cnn_mults=(1, 2)))
    WorldModelLoss.total(WorldModelLoss(agent.world_model)(batch())).backward()
    for name, parameter in [*agent.actor.named_parameters(), *agent.value_model.named_parameters()]:
        assert parameter.grad is None, name
    assert all(p.grad is not None for p in agent.world_model.rssm.obs_posterior.parameters())


def test_surprise_guard_stops_missed_events_from_training_the_prior():
    """With the guard, a COPY step above the event split gives the prior no gradient
    (the criterion missed an event there); READ steps and the unguarded loss still do."""
    torch.manual_seed(0)
    world_model = model(boundary_kind="surprise", surprise_reference="max")
    policy = world_model.rssm.segment_policy
    data = batch()
    world_model.eval()
    with torch.no_grad():
        world_model(data)
    world_model.train()
    surprise = data["next", "obs_surprise"].squeeze(-1)
    read = data["next", "boundary"].squeeze(-1).bool()
    # Statistics that put the event split inside this batch's surprise range.
    policy.surprise_momentum = 0.0
    policy.update_statistics(surprise[:, 1:])
    missed = ~read & (surprise >= policy.event_split())
    assert missed.any() and (~missed & ~read).any() and read.any()

    def prior_grad(guard: bool) -> torch.Tensor:
        stats = data["next", "prior_stats"].detach().clone().requires_grad_(True)
        rollout = data.clone()
        rollout["next", "prior_stats"] = stats
        WorldModelLoss(world_model, kl_rep=0.0, surprise_guard=guard).loss_from_rollout(
            rollout)["loss_kl"].backward()
        return stats.grad.abs().flatten(2).sum(-1)

    guarded, plain = prior_grad(True), prior_grad(False)
    assert (guarded[missed] == 0).all() and (plain[missed] > 0).any()
    torch.testing.assert_close(guarded[~missed], plain[~missed])
    # The default (None) guards with a surprise kind.
    torch.testing.assert_close(prior_grad(None), guarded)


def test_surprise_guard_needs_a_surprise_kind():
    with pytest.raises(ValueError, match="surprise_guard"):
        WorldModelLoss(model(), surprise_guard=True)
    assert not WorldModelLoss(model()).surprise_guard  # the default stays off for `learned`

