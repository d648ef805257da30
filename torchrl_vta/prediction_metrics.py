"""Trajectory-prediction metrics of set worlds: ADE, FDE, best-of-N, existence F1.

Entities are identified by their slot (worlds such as ``traffic`` keep an entity in one
slot for its life), so a prediction of slot ``k`` is scored against the true slot ``k``
on the steps where that entity exists.
"""

from __future__ import annotations

import torch

__all__ = ["best_of_n", "displacement_errors", "existence_f1"]


def _check(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    if predicted.shape[-len(target.shape):] != target.shape or target.shape[:-1] != mask.shape:
        raise ValueError(
            f"positions must be [..., H, K, 2] with a mask [..., H, K]: got predicted "
            f"{tuple(predicted.shape)}, target {tuple(target.shape)}, mask {tuple(mask.shape)}."
        )


def displacement_errors(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                        ) -> dict[str, torch.Tensor]:
    """Per-horizon errors of positions ``[B, H, K, 2]`` against the truth where ``mask``
    ``[B, H, K]`` holds: ``displacement`` ``[H]`` (mean distance at step ``h``), ``ade``
    ``[H]`` (mean distance over steps ``1..h``) and ``fde`` (``displacement``).

    Examples:
        >>> target = torch.zeros(1, 3, 2, 2)
        >>> predicted = target.clone()
        >>> predicted[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])   # slot 0 drifts in x
        >>> mask = torch.tensor([[[True, True], [True, True], [True, False]]])
        >>> errors = displacement_errors(predicted, target, mask)
        >>> errors["displacement"].tolist(), [round(v, 4) for v in errors["ade"].tolist()]
        ([0.5, 1.0, 3.0], [0.5, 0.75, 1.2])
    """
    _check(predicted, target, mask)
    distance = (predicted - target).norm(dim=-1)
    weights = mask.to(distance.dtype)
    dims = tuple(d for d in range(distance.ndim) if d != distance.ndim - 2)
    total, count = (distance * weights).sum(dims), weights.sum(dims)
    displacement = total / count.clamp_min(1)
    ade = total.cumsum(0) / count.cumsum(0).clamp_min(1)
    return {"displacement": displacement, "ade": ade, "fde": displacement}


def best_of_n(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
              ) -> dict[str, torch.Tensor]:
    """Best-of-N errors of ``N`` sampled futures ``[N, B, H, K, 2]``: for every entity and
    horizon ``h``, the sample with the smallest error (ADE over ``1..h``, or FDE at ``h``),
    averaged over the entities present. Returns ``ade`` and ``fde`` ``[H]``.

    Examples:
        >>> target = torch.zeros(1, 2, 1, 2)
        >>> samples = torch.stack([target + 1.0, target + 0.1])          # the second is close
        >>> mask = torch.ones(1, 2, 1, dtype=torch.bool)
        >>> [round(v, 4) for v in best_of_n(samples, target, mask)["fde"].tolist()]
        [0.1414, 0.1414]
    """
    _check(samples, target, mask)
    distance = (samples - target).norm(dim=-1)                 # [N, B, H, K]
    weights = mask.to(distance.dtype)
    # Per entity and sample: ADE over the steps 1..h where the entity exists.
    seen = weights.cumsum(-2)
    ade = (distance * weights).cumsum(-2) / seen.clamp_min(1)
    best_ade, best_fde = ade.min(0).values, distance.min(0).values
    present = (seen > 0).to(distance.dtype)
    dims = (0, 2)
    return {"ade": (best_ade * present).sum(dims) / present.sum(dims).clamp_min(1),
            "fde": (best_fde * weights).sum(dims) / weights.sum(dims).clamp_min(1)}


def existence_f1(probability: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5
                 ) -> torch.Tensor:
    """F1 ``[H]`` of predicted existence (``probability > threshold``, ``[B, H, K]``) against
    the true ``mask``, per horizon step over batch and slots (1 where neither has one).

    Examples:
        >>> mask = torch.tensor([[[True, False], [True, True]]])
        >>> [round(v, 4) for v in existence_f1(torch.tensor([[[0.9, 0.2], [0.8, 0.1]]]), mask).tolist()]
        [1.0, 0.6667]
    """
    if probability.shape != mask.shape:
        raise ValueError(f"probability {tuple(probability.shape)} and mask "
                         f"{tuple(mask.shape)} must have one shape.")
    predicted, mask = probability > threshold, mask.bool()
    dims = tuple(d for d in range(mask.ndim) if d != mask.ndim - 2)
    tp = (predicted & mask).sum(dims).float()
    wrong = (predicted ^ mask).sum(dims).float()
    return torch.where(tp + wrong > 0, 2 * tp / (2 * tp + wrong).clamp_min(1), 1.0)
