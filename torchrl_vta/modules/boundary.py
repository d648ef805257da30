"""The boundary networks of the hierarchical RSSM: the prior, which predicts a READ from the
observation level's feature (used when imagining), and the windowed posterior over
embeddings (causal with ``right=0``, so the acting filter can run it step by step). Their
logits feed :mod:`~torchrl_vta.modules.boundary_ops` (sampling, forcing, counters) through
the :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchrl_vta.modules.latent import _check_int, build_mlp

__all__ = ["BoundaryPosterior", "BoundaryPrior"]


def _check_is_init(is_init: torch.Tensor, embed: torch.Tensor, name: str) -> torch.Tensor:
    # TorchRL's InitTracker writes `is_init` with a trailing singleton dimension.
    if is_init.dim() == embed.dim() and is_init.shape[-1] == 1:
        is_init = is_init.squeeze(-1)
    if is_init.shape != embed.shape[:-1]:
        raise ValueError(
            f"{name} must have shape {tuple(embed.shape[:-1])} (or with a trailing 1), "
            f"got {tuple(is_init.shape)}."
        )
    return is_init.to(torch.bool)


class BoundaryPrior(nn.Module):
    """Predicts logits of the NEXT step's boundary from the observation-level feature.

    Examples:
        >>> prior = BoundaryPrior(6, hidden=8)
        >>> prior(torch.randn(3, 5, 6)).shape
        torch.Size([3, 5, 2])
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden: int = 256,
        layers: int = 1,
        norm: str = "layer",
        act: str = "silu",
    ):
        super().__init__()
        self.net = build_mlp(in_features, 2, hidden=hidden, layers=layers, norm=norm, act=act)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Return boundary logits ``[..., 2]`` (``READ``, ``COPY``).

        Examples:
            >>> BoundaryPrior(6, hidden=8, layers=0)(torch.randn(6)).shape
            torch.Size([2])
        """
        return self.net(feature)


class BoundaryPosterior(nn.Module):
    """Boundary posterior over a window of embeddings ``[t - left, ..., t + right]``.

    Every frame is projected by one Linear (``embed_dim -> proj_dim``); the projections in
    the window are concatenated oldest first (a Conv1d of kernel ``left + 1 + right``,
    written as unfold + Linear) and an MLP maps them to 2 logits. Window entries outside the
    sequence or in another episode are zeros. With ``right == 0`` (causal) the same
    computation runs step by step at acting time through :meth:`step`, carrying the last
    ``left`` projections as context.

    Examples:
        >>> posterior = BoundaryPosterior(6, left=2, proj_dim=4, hidden=8)
        >>> embed = torch.randn(3, 5, 6)
        >>> logits = posterior(embed)
        >>> logits.shape
        torch.Size([3, 5, 2])
        >>> context = posterior.initial_context([3])
        >>> steps = []
        >>> for t in range(5):
        ...     step_logits, context = posterior.step(embed[:, t], context)
        ...     steps.append(step_logits)
        >>> torch.allclose(torch.stack(steps, 1), logits, atol=1e-6)
        True
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        left: int = 3,
        right: int = 0,
        proj_dim: int = 64,
        hidden: int = 256,
        layers: int = 1,
        norm: str = "layer",
        act: str = "silu",
        surprise_features: int = 0,
    ):
        super().__init__()
        _check_int("embed_dim", embed_dim)
        _check_int("surprise_features", surprise_features, minimum=0)
        _check_int("left", left, minimum=0)
        _check_int("right", right, minimum=0)
        _check_int("proj_dim", proj_dim)
        self.left = left
        self.right = right
        self.proj_dim = proj_dim
        self.proj = nn.Linear(embed_dim, proj_dim)
        self.net = build_mlp(
            (left + 1 + right) * proj_dim, 2, hidden=hidden, layers=layers, norm=norm, act=act
        )
        # Surprise features arrive step by step (they depend on the filtered state), so
        # they add their own logits to the window's batched ones.
        self.surprise_head = (
            build_mlp(surprise_features, 2, hidden=hidden, layers=1, norm=norm, act=act)
            if surprise_features
            else None
        )

    def surprise_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., 2]`` added for the surprise features ``[..., surprise_features]``.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=1, proj_dim=4, hidden=8, surprise_features=3)
            >>> posterior.surprise_logits(torch.zeros(5, 3)).shape
            torch.Size([5, 2])
        """
        if self.surprise_head is None:
            raise ValueError("this posterior was built with surprise_features=0.")
        return self.surprise_head(features)

    @property
    def causal(self) -> bool:
        """Whether the window sees no future frames (``right == 0``).

        Examples:
            >>> BoundaryPosterior(6, left=2, right=2, proj_dim=4, hidden=8).causal
            False
        """
        return self.right == 0

    @property
    def context_len(self) -> int:
        """Number of past projected frames carried between :meth:`step` calls.

        Examples:
            >>> BoundaryPosterior(6, left=2, proj_dim=4, hidden=8).context_len
            2
        """
        return self.left

    def forward(self, embed: torch.Tensor, is_init: torch.Tensor | None = None) -> torch.Tensor:
        """Boundary logits ``[..., T, 2]`` for embeddings ``[..., T, E]``.

        ``is_init`` (``[..., T]`` or ``[..., T, 1]``, bool) marks episode starts: frame
        ``t + o`` is visible from ``t`` only if no episode starts in
        ``(min(t, t + o), max(t, t + o)]``.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=2, right=1, proj_dim=4, hidden=8)
            >>> is_init = torch.tensor([True, False, False, True])
            >>> posterior(torch.randn(4, 6), is_init).shape
            torch.Size([4, 2])
        """
        if embed.dim() < 2:
            raise ValueError(f"embed must have shape [..., T, E], got {tuple(embed.shape)}.")
        proj = self.proj(embed)
        size = self.left + 1 + self.right
        # unfold puts the window last: [..., T, P, size] -> [..., T, size, P], oldest first.
        padded = F.pad(proj, (0, 0, self.left, self.right))
        window = padded.unfold(-2, size, 1).transpose(-1, -2)
        if is_init is None:
            episode = torch.zeros(proj.shape[:-1], dtype=torch.long, device=proj.device)
        else:
            episode = _check_is_init(is_init, embed, "is_init").long().cumsum(-1)
        # Frames share an episode iff no start lies between them; padding gets id -1 so
        # frames outside the sequence are never visible.
        padded_episode = F.pad(episode, (self.left, self.right), value=-1)
        visible = padded_episode.unfold(-1, size, 1) == episode.unsqueeze(-1)
        window = torch.where(visible.unsqueeze(-1), window, 0.0)
        return self.net(window.reshape(*window.shape[:-2], size * self.proj_dim))

    def final_context(self, embed: torch.Tensor, is_init: torch.Tensor | None = None) -> torch.Tensor:
        """The context :meth:`step` holds after the last frame of ``embed [..., T, E]``.

        Lets a filter that computed a whole sequence with :meth:`forward`
        continue step by step: the last ``left`` projected frames, zero before
        the latest episode start or the sequence start.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=3, proj_dim=4, hidden=8)
            >>> embed = torch.randn(5, 6)
            >>> context = posterior.initial_context(())
            >>> for t in range(5):
            ...     _, context = posterior.step(embed[t], context)
            >>> # Equal up to float rounding (one frame at a time vs a batch of frames).
            >>> torch.allclose(context, posterior.final_context(embed), atol=1e-6)
            True
        """
        proj = self.proj(embed[..., max(embed.shape[-2] - self.left, 0) :, :])
        if is_init is not None:
            episode = _check_is_init(is_init, embed, "is_init").long().cumsum(-1)
            episode = episode[..., -proj.shape[-2] :]
            proj = proj * (episode == episode[..., -1:]).unsqueeze(-1).to(proj.dtype)
        missing = self.left - proj.shape[-2]
        return F.pad(proj, (0, 0, missing, 0)) if missing > 0 else proj

    def initial_context(self, batch_shape, device=None, dtype=None) -> torch.Tensor:
        """Empty context ``[*batch_shape, left, proj_dim]`` (zeros) for :meth:`step`.

        Examples:
            >>> BoundaryPosterior(6, left=2, proj_dim=4, hidden=8).initial_context([3]).shape
            torch.Size([3, 2, 4])
        """
        weight = self.proj.weight
        return torch.zeros(
            *batch_shape,
            self.left,
            self.proj_dim,
            device=weight.device if device is None else device,
            dtype=weight.dtype if dtype is None else dtype,
        )

    def step(
        self,
        embed_t: torch.Tensor,
        context: torch.Tensor,
        is_init_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One causal step: ``(logits [..., 2], new_context)`` from ``embed_t [..., E]``.

        ``is_init_t`` (``[...]`` or ``[..., 1]``, bool) zeroes the context before use, as a
        new episode starts. Calling this along a sequence reproduces :meth:`forward`.

        Examples:
            >>> posterior = BoundaryPosterior(6, left=2, proj_dim=4, hidden=8)
            >>> logits, context = posterior.step(torch.randn(3, 6), posterior.initial_context([3]))
            >>> logits.shape, context.shape
            (torch.Size([3, 2]), torch.Size([3, 2, 4]))
        """
        if not self.causal:
            raise ValueError(
                f"step needs a causal posterior (right == 0), got right={self.right}."
            )
        expected = (*embed_t.shape[:-1], self.left, self.proj_dim)
        if context.shape != expected:
            raise ValueError(
                f"context must have shape {expected}, got {tuple(context.shape)}."
            )
        if is_init_t is not None:
            is_init_t = _check_is_init(is_init_t, embed_t, "is_init_t")
            context = torch.where(is_init_t[..., None, None], 0.0, context)
        window = torch.cat([context, self.proj(embed_t).unsqueeze(-2)], dim=-2)
        logits = self.net(window.flatten(-2))
        return logits, window[..., 1:, :]
