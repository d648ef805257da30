"""Training of a video model: Adam (optionally AMSGrad) on random windows, the segment
policy's temperature annealed by its schedule, a step and a wall-time budget."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import torch

from torchrl_vta.modules.boundary_ops import TemperatureSchedule
from torchrl_vta.video.config import VideoConfig

__all__ = ["train_video_model"]

log = logging.getLogger(__name__)


def train_video_model(variant, pixels: torch.Tensor, config: VideoConfig, device="cpu",
                      logger=None) -> dict:
    """Adam on random windows of ``pixels`` ``[N, T, 3, H, W]`` uint8; stops after
    ``run.steps`` or ``run.time_budget_min``. Scalars go to ``logger`` (a TorchRL logger)
    every ``run.log_every`` steps. Returns the step count, timings and last losses.

    Example:
        >>> from torchrl_vta.video import make_variant, validate_config
        >>> config = validate_config({"model": {"name": "agent", "size": "tiny"}, "steps": 2,
        ...                           "batch_size": 2})
        >>> variant = make_variant(config)
        >>> pixels = torch.randint(0, 256, (4, 30, 3, 32, 32), dtype=torch.uint8)
        >>> train_video_model(variant, pixels, config)["steps_done"]
        2
    """
    run = config.run
    trained = list(variant.loss.parameters())  # the loss module holds the model
    optimizer = torch.optim.Adam(trained, lr=config.optim.lr, amsgrad=config.optim.amsgrad)
    variant.policy.schedule = TemperatureSchedule(**asdict(config.temperature))
    generator = torch.Generator().manual_seed(run.seed)
    window = config.window
    offsets = torch.arange(window)
    budget = None if run.time_budget_min is None else 60.0 * run.time_budget_min
    variant.loss.train()
    start = time.monotonic()
    last: dict = {}
    step = 0
    for step in range(run.steps):
        if budget is not None and time.monotonic() - start > budget:
            log.info("time budget of %.1f min reached after %d steps", run.time_budget_min, step)
            break
        index = torch.randint(pixels.shape[0], (run.batch_size, 1), generator=generator)
        first = torch.randint(pixels.shape[1] - window + 1, (run.batch_size, 1), generator=generator)
        batch = pixels[index, first + offsets].to(device)
        temperature = variant.policy.anneal(step)
        losses = variant.losses(batch)
        total = variant.total(losses)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, config.optim.grad_clip)
        optimizer.step()
        if step % run.log_every == 0 or step == run.steps - 1:
            last = {key: value.item() for key, value in losses.items()}
            last.update(total=total.item(), grad_norm=grad_norm.item(), temperature=temperature)
            if logger is not None:
                for key, value in last.items():
                    logger.log_scalar(key, value, step)
            log.info(
                "step %d | %.1f s | total %.1f | %s", step, time.monotonic() - start,
                last["total"], " ".join(f"{k} {v:.3g}" for k, v in sorted(last.items())
                                        if k not in ("total",)),
            )
    else:
        step = run.steps
    elapsed = time.monotonic() - start
    return {"steps_done": step, "train_time_s": elapsed,
            "seconds_per_step": elapsed / max(step, 1), "final_train_losses": last}


