import math

import pytest
import torch
from torch import distributions as D

from torchrl_vta.modules.latent import CategoricalLatent, GaussianLatent, build_mlp, make_latent

IN = 6


def _gaussian(**kwargs):
    return GaussianLatent(IN, stoch_dim=4, hidden=8, **kwargs)


def _categorical(**kwargs):
    return CategoricalLatent(IN, groups=3, classes=5, hidden=8, **kwargs)


@pytest.mark.parametrize("batch", [(7,), (2, 3)])
@pytest.mark.parametrize("norm", ["layer", "rms", "none"])
def test_gaussian_shapes(batch, norm):
    latent = _gaussian(norm=norm, act="elu", layers=2)
    stats = latent(torch.randn(*batch, IN))
    assert latent.stats_dim == 8 and latent.stoch_dim == 4
    assert stats.shape == (*batch, 8)
    assert latent.sample(stats).shape == (*batch, 4)
    assert latent.mode(stats).shape == (*batch, 4)
    assert latent.kl(stats, stats.flip(0)).shape == batch


def test_gaussian_std_ranges():
    x = 30 * torch.randn(200, IN)
    std = _gaussian(min_std=0.25)(x)[..., 4:]
    assert (std >= 0.25).all()
    std = _gaussian(std_kind="sigmoid")(x)[..., 4:]
    assert ((std > 0) & (std < 1)).all()


def test_gaussian_sampling():
    latent = _gaussian()
    stats = latent(torch.randn(5, IN))
    mean, std = stats.chunk(2, -1)
    assert torch.equal(latent.sample(stats, deterministic=True), mean)
    assert torch.equal(latent.sample(stats, deterministic=True), latent.sample(stats, True))
    assert not torch.equal(latent.sample(stats), latent.sample(stats))
    # Reparameterised: gradients reach both the mean and the std.
    stats = stats.detach().requires_grad_()
    latent.sample(stats).pow(2).sum().backward()
    assert (stats.grad[:, :4] != 0).all() and (stats.grad[:, 4:] != 0).all()
    # Many samples have the predicted moments.
    draws = latent.sample(stats.detach()[:1].expand(20000, -1))
    assert torch.allclose(draws.mean(0), mean[0], atol=0.05)
    assert torch.allclose(draws.std(0), std[0], rtol=0.05)


def test_gaussian_kl_matches_torch():
    latent = _gaussian()
    q = latent(torch.randn(2, 3, IN))
    p = latent(torch.randn(2, 3, IN))
    expected = D.kl_divergence(latent.dist(q), latent.dist(p))
    manual = D.kl_divergence(
        D.Independent(D.Normal(q[..., :4], q[..., 4:]), 1),
        D.Independent(D.Normal(p[..., :4], p[..., 4:]), 1),
    )
    assert torch.allclose(expected, manual)
    assert torch.allclose(latent.kl(q, p), expected, atol=1e-5)
    assert (latent.kl(q, p) >= 0).all()
    assert latent.kl(q, q).abs().max() < 1e-6


@pytest.mark.parametrize("batch", [(7,), (2, 3)])
def test_categorical_shapes(batch):
    latent = _categorical(norm="rms")
    stats = latent(torch.randn(*batch, IN))
    assert latent.stats_dim == latent.stoch_dim == 15
    assert stats.shape == (*batch, 15)
    assert latent.sample(stats).shape == (*batch, 15)
    assert latent.mode(stats).shape == (*batch, 15)
    assert latent.kl(stats, stats.flip(0)).shape == batch


@pytest.mark.parametrize("deterministic", [False, True])
def test_categorical_sample_is_exact_onehot(deterministic):
    latent = _categorical()
    sample = latent.sample(latent(torch.randn(50, IN)), deterministic=deterministic)
    groups = sample.view(50, 3, 5)
    assert ((groups == 0) | (groups == 1)).all()
    assert (groups.sum(-1) == 1).all()


def test_categorical_deterministic_and_mode():
    latent = _categorical()
    stats = latent(torch.randn(9, IN))
    first = latent.sample(stats, deterministic=True)
    assert torch.equal(first, latent.sample(stats, deterministic=True))
    assert torch.equal(first, latent.mode(stats))
    argmax = stats.view(9, 3, 5).argmax(-1)
    assert torch.equal(first.view(9, 3, 5).argmax(-1), argmax)


def test_categorical_sample_frequencies():
    latent = _categorical(unimix=0.1)
    stats = torch.tensor([[4.0, 0, 0, 0, 0] * 3])
    probs = latent.probs(stats)[0, 0]
    draws = latent.sample(stats.expand(20000, -1)).view(20000, 3, 5)[:, 0]
    assert torch.allclose(draws.mean(0), probs, atol=0.02)


def test_unimix_floor():
    latent = _categorical(unimix=0.05)
    probs = latent.probs(torch.tensor([50.0, -50.0, 0.0, 0.0, 0.0] * 3))
    assert (probs >= 0.05 / 5 - 1e-7).all()
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    assert torch.allclose(_categorical(unimix=0.0).probs(torch.zeros(15)), torch.full((3, 5), 0.2))


@pytest.mark.parametrize("unimix", [0.0, 0.01, 0.3])
def test_categorical_kl_matches_torch(unimix):
    latent = _categorical(unimix=unimix)
    # Double precision: torch clamps probabilities at the dtype's eps before taking logs,
    # which in float32 visibly changes the KL of near-impossible classes when unimix == 0.
    q = 3 * torch.randn(4, 2, 15, dtype=torch.double)
    p = 3 * torch.randn(4, 2, 15, dtype=torch.double)
    expected = D.kl_divergence(
        D.Independent(D.OneHotCategorical(probs=latent.probs(q)), 1),
        D.Independent(D.OneHotCategorical(probs=latent.probs(p)), 1),
    )
    assert torch.allclose(latent.kl(q, p), expected, atol=1e-5)
    assert (latent.kl(q, p) >= 0).all()
    assert latent.kl(q, q).abs().max() < 1e-6


def test_categorical_kl_finite_with_underflowing_probs():
    latent = _categorical(unimix=0.0)
    q = torch.tensor([200.0, -200.0, -200.0, -200.0, -200.0] * 3)
    kl = latent.kl(q, torch.zeros(15))
    assert torch.isfinite(kl) and abs(kl.item() - 3 * math.log(5)) < 1e-5


@pytest.mark.parametrize("deterministic", [False, True])
def test_categorical_straight_through_reaches_params(deterministic):
    latent = _categorical()
    x = torch.randn(4, IN)
    sample = latent.sample(latent(x), deterministic=deterministic)
    (sample * torch.randn_like(sample)).sum().backward()
    for name, param in latent.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gaussian_gradient_reaches_params():
    latent = _gaussian(norm="rms")
    latent.sample(latent(torch.randn(4, IN))).pow(2).sum().backward()
    for name, param in latent.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_zero_hidden_layers_is_linear():
    latent = GaussianLatent(IN, stoch_dim=2, layers=0, std_kind="sigmoid")
    assert [type(m) for m in latent.net] == [torch.nn.Linear]


def test_make_latent():
    assert isinstance(make_latent("gaussian", IN, stoch_dim=2, hidden=8), GaussianLatent)
    latent = make_latent("categorical", IN, groups=2, classes=3, hidden=8)
    assert isinstance(latent, CategoricalLatent) and latent.stats_dim == 6
    with pytest.raises(ValueError, match="gaussian.*categorical"):
        make_latent("bernoulli", IN)


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (GaussianLatent, {"stoch_dim": 0}, "stoch_dim"),
        (GaussianLatent, {"hidden": -1}, "hidden"),
        (GaussianLatent, {"layers": -1}, "layers"),
        (GaussianLatent, {"min_std": -0.1}, "min_std"),
        (GaussianLatent, {"std_kind": "exp"}, "std_kind"),
        (GaussianLatent, {"norm": "batch"}, "norm"),
        (GaussianLatent, {"act": "relu"}, "act"),
        (CategoricalLatent, {"groups": 0}, "groups"),
        (CategoricalLatent, {"classes": 2.5}, "classes"),
        (CategoricalLatent, {"unimix": 1.0}, "unimix"),
        (CategoricalLatent, {"unimix": -0.01}, "unimix"),
        (CategoricalLatent, {"norm": "group"}, "norm"),
    ],
)
def test_bad_args(factory, kwargs, name):
    with pytest.raises(ValueError, match=name):
        factory(IN, **kwargs)
    with pytest.raises(ValueError, match="in_features"):
        factory(0)


def test_build_mlp_bad_args():
    with pytest.raises(ValueError, match="out_features"):
        build_mlp(3, 0)
