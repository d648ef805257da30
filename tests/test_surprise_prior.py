"""The separate surprise prior (``HierarchicalRSSM(surprise_prior="separate")``): the
observation level's surprise is measured against a prior head trained on every step, READ
or not, by ``WorldModelLoss``'s ``loss_surprise_prior``. The acting filter with it:
``tests/test_segment_policy.py``."""

import pytest
import torch

from tests.test_segment_policy import ACTION, EMBED, tiny_rssm
from tests.test_world_model_loss import batch, model
from torchrl_vta.objectives import WorldModelLoss


def test_only_the_surprise_prior_learns_from_its_loss():
    torch.manual_seed(0)
    world_model = model(boundary_kind="surprise", surprise_prior="separate")
    losses = WorldModelLoss(world_model)(batch())
    assert "loss_surprise_prior" in losses.keys()
    losses["loss_surprise_prior"].backward()
    learned = [name for name, p in world_model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0]
    assert learned and all(name.startswith("rssm.obs_surprise_prior.") for name in learned)
    # The default measures against the observation prior, with no loss and no extra head.
    default = model(boundary_kind="surprise")
    assert "loss_surprise_prior" not in WorldModelLoss(default)(batch()).keys()
    assert not any("obs_surprise_prior" in key for key in default.state_dict())


def test_surprise_is_zero_on_structural_steps_only():
    torch.manual_seed(0)
    rssm = tiny_rssm(boundary_kind="surprise", surprise_prior="separate")
    embed, action = torch.randn(2, 8, EMBED), torch.randn(2, 8, ACTION)
    is_init = torch.zeros(2, 8, dtype=torch.bool)
    is_init[1, 4] = True
    out, _ = rssm.observe(embed, action, is_init)
    surprise = out["obs_surprise"][..., 0]
    assert (surprise[:, 0] == 0).all() and surprise[1, 4] == 0
    assert (surprise[0, 1:] > 0).all()


def test_the_surprise_falls_on_read_steps_of_a_fixed_batch():
    """The point of the option: a step the criterion READs is still trained to be
    unsurprising (with the observation prior only COPY steps are)."""
    torch.manual_seed(0)
    world_model = model(boundary_kind="surprise", surprise_prior="separate",
                        surprise_init_scale=0.5)
    loss = WorldModelLoss(world_model)
    optim = torch.optim.Adam(world_model.rssm.obs_surprise_prior.parameters(), lr=1e-2)
    data = batch()
    world_model.eval()  # frozen statistics: the same decisions on every pass

    def read_surprise():
        rollout = data.clone()
        losses = loss(rollout)
        read = rollout["next", "boundary"].squeeze(-1).bool()
        read[:, 0] = False
        return losses, rollout["next", "obs_surprise"].squeeze(-1)[read].mean(), read

    _, before, read = read_surprise()
    assert read.any(), "the test needs READ steps"
    for _ in range(100):
        losses, _, _ = read_surprise()
        optim.zero_grad()
        losses["loss_surprise_prior"].backward()
        optim.step()
    _, after, _ = read_surprise()
    assert after < 0.5 * before


@pytest.mark.parametrize("options,match", [
    (dict(boundary_kind="surprise", surprise_prior="shadow"), "surprise_prior"),
    (dict(boundary_kind="learned", surprise_prior="separate"), "surprise_prior"),
    (dict(levels=1, boundary_kind="surprise", surprise_prior="separate"), "surprise_prior"),
])
def test_bad_surprise_prior_options_name_the_key(options, match):
    with pytest.raises(ValueError, match=match):
        tiny_rssm(**options)
