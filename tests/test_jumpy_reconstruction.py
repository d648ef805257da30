"""The jumpy reconstruction term: it is the jumpy-generation path, it counts only unforced
level-1 READs, it trains level 1's belief and prior (not what decodes), and it learns on a
fixed batch."""

import pytest
import torch

from torchrl_vta.modules.boundary_ops import READ
from torchrl_vta.modules.rssm_state import RSSMState
from torchrl_vta.objectives import WorldModelLoss
from torchrl_vta.objectives.jumpy_reconstruction import jumpy_reconstruction

from test_world_model_loss import batch, model


def _reading_model(levels=2):
    """A model whose level-1 posterior READs wherever it may (its detector's last layer is a
    constant READ vote), so every unforced step is a READ."""
    torch.manual_seed(0)
    world_model = model(levels)
    with torch.no_grad():
        last = world_model.rssm.boundary_posterior.net[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[READ] = 5.0
    return world_model


def test_the_term_decodes_what_jumpy_generation_decodes():
    world_model = _reading_model().eval()
    data = batch()
    data["is_init"].zero_()
    world_model(data)
    rollout = data["next"]
    free = (rollout["boundary"][..., 0] > 0.5) & ~rollout["boundary_forced"][..., 0]
    assert free[:, 1:].any() and not free[:, 0].any()
    rssm = world_model.rssm
    template = rssm.initial_state([1])
    losses = []
    for b, t in free.nonzero().tolist():
        prev = template._replace(**{name: rollout[name][b, t - 1 : t] for name in
                                    ("belief", "state", "abs_belief", "abs_state",
                                     "seg_len", "seg_num")})
        state, _ = rssm.jumpy_step(prev, data["action"][b, t : t + 1], level=1)
        predictions = dict(zip(world_model.decoder.out_keys,
                               world_model.decoder(state.belief, state.state)))
        targets = {name: data.get(key)[b, t : t + 1]
                   for name, (key, _) in world_model.reconstruction_keys.items()}
        losses.append(sum(v.sum() for v in world_model.decoder.loss(predictions, targets).values()))
    expected = torch.stack(losses).mean()
    assert torch.allclose(jumpy_reconstruction(world_model, data), expected, rtol=1e-5), (
        jumpy_reconstruction(world_model, data), expected)


def test_only_unforced_level_one_reads_count():
    world_model = _reading_model().eval()  # the mean, not a sample: repeatable
    data = batch()
    world_model(data)
    reference = jumpy_reconstruction(world_model, data)
    perturbed = data.clone()
    counted = ((perturbed["next", "boundary"][..., 0] > 0.5)
               & ~perturbed["next", "boundary_forced"][..., 0])
    assert counted.any() and (~counted).any()
    stats = perturbed["next", "abs_prior_stats"].clone()
    stats[~counted] += 5.0
    perturbed["next", "abs_prior_stats"] = stats
    assert torch.equal(jumpy_reconstruction(world_model, perturbed), reference)
    stats[counted] += 5.0
    assert not torch.equal(jumpy_reconstruction(world_model, perturbed), reference)
    # No READ to count: exactly zero, not an error.
    perturbed["next", "boundary_forced"] = torch.ones_like(perturbed["next", "boundary_forced"])
    assert jumpy_reconstruction(world_model, perturbed).item() == 0.0


@pytest.mark.parametrize("levels", [2, 3])
def test_the_term_trains_level_one_belief_and_prior(levels):
    world_model = _reading_model(levels)
    loss = WorldModelLoss(world_model, jumpy_scale=1.0)
    data = batch()
    data["is_init"].zero_()
    losses = loss(data)
    assert losses["reco_jumpy"] > 0 and not losses["reco_jumpy"].requires_grad
    losses["loss_jumpy"].backward()
    rssm = world_model.rssm
    for name, module in (("abs_prior", rssm.abs_prior), ("abs_cell", rssm.abs_cell),
                         ("abs_input", rssm.abs_input)):
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in module.parameters()), name
    # What also serves every filtered step is used, not trained.
    for name, module in (("restart", rssm.restart), ("obs_prior", rssm.obs_prior),
                         ("decoder", world_model.decoder)):
        assert all(p.grad is None for p in module.parameters()), name


def test_the_jumpy_reconstruction_falls_on_a_fixed_batch():
    world_model = _reading_model()
    loss = WorldModelLoss(world_model, jumpy_scale=1.0)
    optim = torch.optim.Adam(world_model.parameters(), lr=3e-3)
    data = batch()
    history = []
    for _ in range(150):
        losses = loss(data.clone())
        optim.zero_grad()
        WorldModelLoss.total(losses).backward()
        optim.step()
        history.append(losses["reco_jumpy"].item())
    start, end = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert end < 0.5 * start, (start, end)


def test_off_by_default_and_bad_values_name_the_key():
    assert "loss_jumpy" not in WorldModelLoss(model())(batch()).keys()
    with pytest.raises(ValueError, match="jumpy_scale"):
        WorldModelLoss(model(), jumpy_scale=-1.0)
    with pytest.raises(ValueError, match="jumpy_scale"):
        WorldModelLoss(model(levels=1), jumpy_scale=1.0)
