"""Boundary quality of a video model on held-out windows: the evaluation protocol of
``benchmarks/BOUNDARY_QUALITY.md`` as library functions."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from torchrl_vta.metrics import (
    boundary_auc,
    boundary_offsets,
    boundary_rates,
    event_triggered_average,
    per_tolerance_table,
    periodic_boundaries,
)
from torchrl_vta.video.config import VideoConfig
from torchrl_vta.video.data import LEVEL_EVENT_KEYS, windows

__all__ = ["boundary_report", "evaluate_video_model"]


def boundary_report(read, prob, forced, surprise, event, tolerances=(0, 1, 2)) -> dict:
    """Every boundary-quality figure of READs ``[N, T]`` against events ``[N, T]``: F1,
    precision and recall per tolerance (forced READs excluded), the periodic baseline with
    as many boundaries, AUC of the READ score ``prob`` and of the per-step ``surprise``,
    boundary vs event rate, READ offsets and event-triggered profiles.

    Example:
        >>> event = torch.zeros(2, 12, dtype=torch.bool); event[:, 4] = True
        >>> report = boundary_report(event.clone(), event.float(), torch.zeros_like(event),
        ...                          event.float(), event)
        >>> report["f1"]["1"], report["boundary_rate"] == report["event_rate"]
        (1.0, True)
    """
    table = per_tolerance_table(read, event, tolerances, exclude=forced)
    count = (read & ~forced)[:, 1:].sum(-1)
    periodic = periodic_boundaries(read.shape, count=count)
    periodic_table = per_tolerance_table(periodic, event, tolerances)
    report = {
        "f1": {str(row["tolerance"]): row["f1"] for row in table},
        "precision": {str(row["tolerance"]): row["precision"] for row in table},
        "recall": {str(row["tolerance"]): row["recall"] for row in table},
        "auc": boundary_auc(prob, event, exclude=forced),
        # Does the model's own per-step information intake single out the events,
        # whatever the boundary detector does? (VPR reads its boundaries off this.)
        "surprise_auc": boundary_auc(surprise[:, 1:], event[:, 1:]),
        **boundary_rates(read, event, exclude=forced),
        # Where READs and scores sit relative to the labels (a constant offset costs F1 at
        # small tau but is a labelling question, not a placement failure).
        "offsets": {str(k): v for k, v in boundary_offsets(read, event, exclude=forced).items()},
        "score_profile": {str(k): v for k, v in event_triggered_average(prob, event).items()},
        "surprise_profile": {str(k): v for k, v in event_triggered_average(surprise, event).items()},
        "periodic_f1": {str(row["tolerance"]): row["f1"] for row in periodic_table},
        "table": table,
        "periodic_table": periodic_table,
    }
    return report


@torch.no_grad()
def evaluate_video_model(variant, data: TensorDict, config: VideoConfig, device="cpu") -> dict:
    """Held-out losses and boundary quality (:func:`boundary_report`) on the modelled frames
    of every non-overlapping window of ``data`` (``pixels``, ``event``), with the segment
    limits forcing the posterior (``forcing_on``) and without (``forcing_off``). A model with
    levels above level 1 is scored per level against the data's level events (``scene_event``
    for level 2) where present, under ``report[forcing]["level<j>"]``; the level's READs
    count on the steps the level below READ (masked steps are excluded as forced ones are).

    Example:
        >>> import tempfile
        >>> from torchrl_vta.video import load_data, make_variant, validate_config
        >>> config = validate_config({"model": {"name": "agent", "size": "tiny"},
        ...                           "dataset": {"num_sequences": 2, "eval_sequences": 2}})
        >>> _, held_out = load_data(config.dataset, tempfile.mkdtemp())
        >>> report = evaluate_video_model(make_variant(config), held_out, config)
        >>> report["eval_windows"], sorted(report["forcing_off"]["f1"])
        (2, ['0', '1', '2'])
    """
    window, init, seq = config.window, config.model.init_size, config.model.seq_size
    pixels = windows(data["pixels"], window)
    events = [windows(data["event"][..., 0], window)] + [
        windows(data[key][..., 0], window) for key in LEVEL_EVENT_KEYS if key in data.keys()]
    variant.loss.eval()
    totals: dict[str, float] = {}
    outputs = {True: [], False: []}
    size = config.eval.batch_size
    for begin in range(0, pixels.shape[0], size):
        batch = pixels[begin : begin + size].to(device)
        losses = variant.losses(batch)
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + value.item() * batch.shape[0]
        for forcing in outputs:
            inference = variant.boundaries(batch, forcing)
            outputs[forcing].append([_scored(level) for level in (inference, *inference.upper)])
    modelled = slice(init, init + seq)
    report = {
        "eval_windows": pixels.shape[0],
        "eval_losses": {key: value / pixels.shape[0] for key, value in totals.items()},
    }
    for forcing, name in ((True, "forcing_on"), (False, "forcing_off")):
        levels = list(zip(*outputs[forcing]))
        for number, (parts, event) in enumerate(zip(levels, events), 1):
            read, prob, forced, surprise = (torch.cat(x)[:, modelled] for x in zip(*parts))
            level = boundary_report(read, prob, forced, surprise, event[:, modelled],
                                    config.eval.tolerances)
            if number == 1:
                report[name] = level
            else:
                report[name][f"level{number}"] = level
    return report


def _scored(inference) -> list[torch.Tensor]:
    return [inference.read.cpu(), inference.prob.cpu(), inference.forced.cpu(),
            inference.surprise.cpu()]
