"""Training of a video model: Adam (optionally AMSGrad) on random windows, the segment
policy's temperature annealed by its schedule, a step and a wall-time budget, periodic
checkpoints and resuming from one (:mod:`torchrl_vta.video.resume`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import torch

from torchrl_vta.modules.boundary_ops import TemperatureSchedule
from torchrl_vta.video.config import VideoConfig
from torchrl_vta.video.resume import VideoCheckpoints

__all__ = ["train_video_model"]

log = logging.getLogger(__name__)


def _random_state(generator: torch.Generator) -> dict:
    # What a step draws from: the window sampler and torch's global generators.
    state = {"generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _restore(variant, optimizer, generator: torch.Generator, state: dict) -> None:
    variant.loss.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def train_video_model(variant, pixels: torch.Tensor, config: VideoConfig, device="cpu",
                      logger=None, *, checkpoints: VideoCheckpoints | None = None,
                      resume_from: dict | None = None) -> dict:
    """Adam on random windows of ``pixels`` ``[N, T, 3, H, W]`` uint8; stops after
    ``run.steps`` or ``run.time_budget_min`` (training time of every session). Scalars go
    to ``logger`` (a TorchRL logger) every ``run.log_every`` steps. With ``checkpoints``
    the training state is saved every ``run.checkpoint_every_min`` and at the end;
    ``resume_from`` (a state :meth:`VideoCheckpoints.start` returned) continues it bit for
    bit. Returns the step count, timings and last losses.

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
    begin, before = 0, 0.0
    if resume_from is not None:
        _restore(variant, optimizer, generator, resume_from)
        begin, before = int(resume_from["step"]), float(resume_from["train_time_s"])
    start = time.monotonic()
    saved_at = start
    every = None if run.checkpoint_every_min is None else 60.0 * run.checkpoint_every_min

    def save(next_step: int) -> None:
        nonlocal saved_at
        checkpoints.write({"model": variant.loss.state_dict(), "optimizer": optimizer.state_dict(),
                           "step": next_step, "train_time_s": before + time.monotonic() - start,
                           **_random_state(generator)}, config)
        saved_at = time.monotonic()

    last: dict = {}
    step = begin
    for step in range(begin, run.steps):
        if budget is not None and before + time.monotonic() - start > budget:
            log.info("time budget of %.1f min reached after %d steps", run.time_budget_min, step)
            break
        if checkpoints is not None and every is not None and time.monotonic() - saved_at > every:
            save(step)
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
        step = max(run.steps, begin)
    if checkpoints is not None:
        save(step)
    elapsed = before + time.monotonic() - start
    return {"steps_done": step, "train_time_s": elapsed,
            "seconds_per_step": elapsed / max(step, 1), "final_train_losses": last}


