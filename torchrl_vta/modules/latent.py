"""Stochastic latents of the hierarchical RSSM: Gaussian and categorical.

A latent module maps input features to one flat statistics tensor ``stats`` and knows how
to sample from and compare such statistics. Keeping the statistics in a single tensor lets
a loss form the DreamerV3 dynamics/representation KL split by passing ``stats.detach()``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from torchrl_vta.modules._layers import _ACTS, _NORMS, dense_block

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "CategoricalLatent",
    "GaussianLatent",
    "LATENT_KINDS",
    "STD_KINDS",
    "build_mlp",
    "make_latent",
]

NORMS = _NORMS
ACTIVATIONS = _ACTS
LATENT_KINDS = ("gaussian", "categorical")
STD_KINDS = ("softplus", "sigmoid")


def _check_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return value


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def build_mlp(
    in_features: int,
    out_features: int,
    *,
    hidden: int = 256,
    layers: int = 1,
    norm: str = "layer",
    act: str = "silu",
) -> nn.Sequential:
    """Build ``layers`` x (Linear(hidden) + norm + act) followed by Linear(out_features).

    The hidden blocks are the package's shared ``dense_block`` (as in the RSSM cells).
    ``layers=0`` gives a single linear map (the original VTA heads).

    Examples:
        >>> mlp = build_mlp(5, 3, hidden=8, layers=2, norm="rms", act="elu")
        >>> mlp(torch.randn(4, 5)).shape
        torch.Size([4, 3])
        >>> len(build_mlp(5, 3, layers=0))
        1
    """
    _check_int("in_features", in_features)
    _check_int("out_features", out_features)
    _check_int("hidden", hidden)
    _check_int("layers", layers, minimum=0)
    _check_choice("norm", norm, NORMS)
    _check_choice("act", act, ACTIVATIONS)
    modules: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        modules.append(dense_block(width, hidden, norm, act))
        width = hidden
    modules.append(nn.Linear(width, out_features))
    return nn.Sequential(*modules)


class GaussianLatent(nn.Module):
    """Diagonal Gaussian latent; ``stats = cat([mean, std], -1)``.

    Args:
        in_features: size of the input feature.
        stoch_dim: size of a sample.
        hidden, layers, norm, act: the MLP (see :func:`build_mlp`).
        std_kind: ``"softplus"`` (``std = softplus(x) + min_std``, DreamerV3-style) or
            ``"sigmoid"`` (``std = sigmoid(x)``, the original VTA; ``min_std`` unused).
        min_std: lower bound added to the softplus standard deviation.

    Examples:
        >>> latent = GaussianLatent(6, stoch_dim=4, hidden=8)
        >>> stats = latent(torch.randn(3, 6))
        >>> stats.shape, latent.sample(stats).shape
        (torch.Size([3, 8]), torch.Size([3, 4]))
        >>> bool((stats[..., 4:] >= 0.1).all())
        True
        >>> latent.kl(stats, stats).abs().max().item()
        0.0
    """

    def __init__(
        self,
        in_features: int,
        stoch_dim: int = 32,
        *,
        hidden: int = 256,
        layers: int = 1,
        std_kind: str = "softplus",
        min_std: float = 0.1,
        norm: str = "layer",
        act: str = "silu",
    ):
        super().__init__()
        _check_int("stoch_dim", stoch_dim)
        _check_choice("std_kind", std_kind, STD_KINDS)
        if not (isinstance(min_std, (int, float)) and math.isfinite(min_std) and min_std >= 0):
            raise ValueError(f"min_std must be a finite number >= 0, got {min_std!r}.")
        self.stoch_dim = stoch_dim
        self.stats_dim = 2 * stoch_dim
        self.std_kind = std_kind
        self.min_std = float(min_std)
        self.net = build_mlp(
            in_features, self.stats_dim, hidden=hidden, layers=layers, norm=norm, act=act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features ``[..., in_features]`` to ``stats = [mean, std]`` of size ``stats_dim``.

        Examples:
            >>> GaussianLatent(6, stoch_dim=4, hidden=8)(torch.randn(2, 5, 6)).shape
            torch.Size([2, 5, 8])
        """
        mean, raw_std = self.net(x).chunk(2, dim=-1)
        if self.std_kind == "softplus":
            std = F.softplus(raw_std) + self.min_std
        else:
            std = torch.sigmoid(raw_std)
        return torch.cat([mean, std], dim=-1)

    def split(self, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, std)`` from ``stats``.

        Examples:
            >>> latent = GaussianLatent(6, stoch_dim=4, hidden=8)
            >>> mean, std = latent.split(torch.ones(3, 8))
            >>> mean.shape, std.shape
            (torch.Size([3, 4]), torch.Size([3, 4]))
        """
        return stats.chunk(2, dim=-1)

    def sample(self, stats: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Reparameterised sample ``mean + std * eps``; ``deterministic`` returns the mean.

        Examples:
            >>> latent = GaussianLatent(6, stoch_dim=4, hidden=8)
            >>> stats = latent(torch.randn(3, 6))
            >>> torch.equal(latent.sample(stats, deterministic=True), stats[..., :4])
            True
        """
        mean, std = self.split(stats)
        if deterministic:
            return mean
        return mean + std * torch.randn_like(std)

    def mode(self, stats: torch.Tensor) -> torch.Tensor:
        """Most likely sample: the mean.

        Examples:
            >>> GaussianLatent(6, stoch_dim=4, hidden=8).mode(torch.arange(8.0)).tolist()
            [0.0, 1.0, 2.0, 3.0]
        """
        return self.split(stats)[0]

    def kl(self, q_stats: torch.Tensor, p_stats: torch.Tensor) -> torch.Tensor:
        """Analytic ``KL(q || p)`` summed over the latent dimensions, shape ``[...]``.

        Examples:
            >>> latent = GaussianLatent(6, stoch_dim=1, hidden=8)
            >>> q = torch.tensor([0.0, 1.0])
            >>> p = torch.tensor([1.0, 1.0])
            >>> latent.kl(q, p).item()
            0.5
        """
        q_mean, q_std = self.split(q_stats)
        p_mean, p_std = self.split(p_stats)
        var_ratio = (q_std / p_std).pow(2)
        mahalanobis = ((q_mean - p_mean) / p_std).pow(2)
        return 0.5 * (var_ratio + mahalanobis - 1 - var_ratio.log()).sum(-1)

    def dist(self, stats: torch.Tensor) -> torch.distributions.Independent:
        """The distribution described by ``stats`` (for log-probs and entropies).

        Examples:
            >>> latent = GaussianLatent(6, stoch_dim=4, hidden=8)
            >>> latent.dist(latent(torch.randn(3, 6))).event_shape
            torch.Size([4])
        """
        mean, std = self.split(stats)
        return torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)


class CategoricalLatent(nn.Module):
    """``groups`` categoricals of ``classes`` each; ``stats`` are the flat logits.

    Probabilities mix in ``unimix`` of the uniform distribution (DreamerV3), so no class is
    ever impossible and the KL stays bounded. Samples are flat one-hot vectors with a
    straight-through gradient.

    Examples:
        >>> latent = CategoricalLatent(6, groups=2, classes=3, hidden=8)
        >>> stats = latent(torch.randn(5, 6))
        >>> sample = latent.sample(stats)
        >>> sample.shape
        torch.Size([5, 6])
        >>> sample.view(5, 2, 3).sum(-1).eq(1).all().item()
        True
        >>> latent.kl(stats, stats).abs().max().item() < 1e-6
        True
    """

    def __init__(
        self,
        in_features: int,
        groups: int = 32,
        classes: int = 32,
        *,
        hidden: int = 256,
        layers: int = 1,
        unimix: float = 0.01,
        norm: str = "layer",
        act: str = "silu",
    ):
        super().__init__()
        _check_int("groups", groups)
        _check_int("classes", classes)
        if not (isinstance(unimix, (int, float)) and 0 <= unimix < 1):
            raise ValueError(f"unimix must be in [0, 1), got {unimix!r}.")
        self.groups = groups
        self.classes = classes
        self.unimix = float(unimix)
        self.stoch_dim = groups * classes
        self.stats_dim = groups * classes
        self.net = build_mlp(
            in_features, self.stats_dim, hidden=hidden, layers=layers, norm=norm, act=act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features ``[..., in_features]`` to flat logits ``[..., groups * classes]``.

        Examples:
            >>> CategoricalLatent(6, groups=2, classes=3, hidden=8)(torch.randn(2, 4, 6)).shape
            torch.Size([2, 4, 6])
        """
        return self.net(x)

    def probs(self, stats: torch.Tensor) -> torch.Tensor:
        """Unimix'd probabilities ``[..., groups, classes]``.

        Examples:
            >>> latent = CategoricalLatent(6, groups=1, classes=4, hidden=8, unimix=0.2)
            >>> probs = latent.probs(torch.tensor([100.0, 0.0, 0.0, 0.0]))
            >>> probs.shape, [round(v, 3) for v in probs[0].tolist()]
            (torch.Size([1, 4]), [0.85, 0.05, 0.05, 0.05])
        """
        probs = stats.unflatten(-1, (self.groups, self.classes)).softmax(-1)
        if self.unimix:
            probs = (1 - self.unimix) * probs + self.unimix / self.classes
        return probs

    def _onehot(self, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.one_hot(index, self.classes).to(like.dtype)

    def sample(self, stats: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Flat one-hot sample with a straight-through gradient; ``deterministic`` -> argmax.

        Examples:
            >>> latent = CategoricalLatent(6, groups=2, classes=3, hidden=8)
            >>> stats = latent(torch.randn(4, 6))
            >>> torch.equal(latent.sample(stats, True), latent.sample(stats, True))
            True
        """
        probs = self.probs(stats)
        if deterministic:
            index = probs.argmax(-1)
        else:
            index = torch.multinomial(probs.detach().reshape(-1, self.classes), 1)
            index = index.view(probs.shape[:-1])
        # Parenthesised so the forward values stay exactly 0/1: (probs - probs.detach()) == 0.
        sample = self._onehot(index, probs) + (probs - probs.detach())
        return sample.flatten(-2)

    def mode(self, stats: torch.Tensor) -> torch.Tensor:
        """Flat one-hot of the most likely class of every group (no gradient).

        Examples:
            >>> latent = CategoricalLatent(6, groups=2, classes=3, hidden=8)
            >>> latent.mode(torch.tensor([0.0, 2.0, 1.0, 5.0, 0.0, 0.0])).tolist()
            [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
        """
        logits = stats.unflatten(-1, (self.groups, self.classes))
        return self._onehot(logits.argmax(-1), stats).flatten(-2)

    def kl(self, q_stats: torch.Tensor, p_stats: torch.Tensor) -> torch.Tensor:
        """``KL(q || p)`` of the unimix'd distributions, summed over groups, shape ``[...]``.

        Examples:
            >>> latent = CategoricalLatent(6, groups=2, classes=3, hidden=8)
            >>> q, p = torch.randn(4, 6), torch.randn(4, 6)
            >>> bool((latent.kl(q, p) > 0).all())
            True
        """
        q = self.probs(q_stats)
        p = self.probs(p_stats)
        # xlogy keeps q == 0 (possible when unimix == 0) from producing 0 * -inf = nan.
        return (torch.xlogy(q, q) - q * p.log()).sum((-2, -1))

    def dist(self, stats: torch.Tensor) -> torch.distributions.Independent:
        """The unimix'd distribution as ``Independent(OneHotCategorical)`` over groups.

        Examples:
            >>> latent = CategoricalLatent(6, groups=2, classes=3, hidden=8)
            >>> entropy = latent.dist(torch.zeros(6)).entropy()
            >>> abs(entropy.item() - 2 * math.log(3)) < 1e-6
            True
        """
        return torch.distributions.Independent(
            torch.distributions.OneHotCategorical(probs=self.probs(stats)), 1
        )


def make_latent(kind: str, in_features: int, **kwargs) -> GaussianLatent | CategoricalLatent:
    """Build a latent by name: ``"gaussian"`` or ``"categorical"``.

    Examples:
        >>> make_latent("categorical", 6, groups=2, classes=3, hidden=8).stats_dim
        6
        >>> make_latent("gaussian", 6, stoch_dim=4, hidden=8).stats_dim
        8
    """
    if kind == "gaussian":
        return GaussianLatent(in_features, **kwargs)
    if kind == "categorical":
        return CategoricalLatent(in_features, **kwargs)
    raise ValueError(f"kind must be one of {LATENT_KINDS}, got {kind!r}.")
