import math

import pytest
import torch

from torchrl_vta.modules.heads import ContinueHead, RewardHead, TwoHotHead, ValueHead


def test_two_hot_round_trip():
    head = TwoHotHead(4, units=8)
    values = torch.cat([torch.linspace(-1000, 1000, 201), torch.tensor([0.0, 0.37, -2.5])])
    logits = head.two_hot.encode(values).log()
    decoded = head.mean(logits)
    assert decoded.shape == (values.numel(), 1)
    torch.testing.assert_close(decoded.squeeze(-1), values, rtol=1e-4, atol=1e-4)


def test_two_hot_loss_shapes_and_minimum():
    head = TwoHotHead(4, units=8)
    target = torch.randn(2, 3) * 50
    exact = head.two_hot.encode(target).clamp_min(1e-12).log()
    loss = head.loss(exact, target)
    assert loss.shape == (2, 3)
    torch.testing.assert_close(loss, head.loss(exact, target.unsqueeze(-1)))
    assert (loss < head.loss(torch.zeros_like(exact), target)).all()


@pytest.mark.parametrize("cls", [TwoHotHead, RewardHead, ValueHead])
def test_zero_init_predicts_zero_and_learns(cls):
    head = cls(6, layers=2, units=8)
    features = torch.randn(5, 4, 6)
    logits = head(features)
    assert logits.shape == (5, 4, 255)
    assert torch.equal(head.mean(logits), torch.zeros(5, 4, 1))
    head.loss(logits, torch.full((5, 4), 3.0)).mean().backward()
    last = head.mlp.model[-1]
    assert last.weight.grad.abs().sum() > 0 and last.bias.grad.abs().sum() > 0


def test_zero_init_off_predicts_nonzero():
    head = TwoHotHead(6, units=8, zero_init=False)
    assert head.mean(head(torch.randn(3, 6))).abs().gt(0).all()


def test_two_hot_head_fits_a_constant():
    head = TwoHotHead(3, units=16)
    optim = torch.optim.Adam(head.parameters(), lr=1e-2)
    features, target = torch.randn(32, 3), torch.full((32,), 7.0)
    for _ in range(150):
        optim.zero_grad()
        head.loss(head(features), target).mean().backward()
        optim.step()
    torch.testing.assert_close(
        head.mean(head(features)).detach(), torch.full((32, 1), 7.0), atol=0.5, rtol=0
    )


def test_two_hot_head_arguments():
    assert TwoHotHead(4, units=8, num_bins=41)(torch.randn(2, 4)).shape == (2, 41)
    with pytest.raises(ValueError, match="num_bins"):
        TwoHotHead(4, num_bins=1)
    with pytest.raises(ValueError, match="layers"):
        TwoHotHead(4, layers=0)
    with pytest.raises(ValueError, match="in_features"):
        ContinueHead(0)


def test_continue_head_loss():
    head = ContinueHead(6, units=8)
    logit = head(torch.randn(2, 3, 6))
    assert logit.shape == (2, 3, 1)
    torch.testing.assert_close(head.prob(logit), torch.sigmoid(logit))
    target = torch.rand(2, 3) > 0.5
    loss = head.loss(logit, target)
    assert loss.shape == (2, 3)
    torch.testing.assert_close(loss, head.loss(logit, target.float().unsqueeze(-1)))

    zero = torch.zeros(4, 1)
    torch.testing.assert_close(head.loss(zero, torch.ones(4)), torch.full((4,), math.log(2)))
    confident = torch.full((4, 1), 10.0)
    assert (head.loss(confident, torch.ones(4)) < 1e-3).all()
    assert (head.loss(confident, torch.zeros(4)) > 9).all()
    with pytest.raises(ValueError, match="target must have shape"):
        head.loss(zero, torch.ones(4, 2))
