"""Pictures and videos to the run's TorchRL logger, so dashboard users see them.

The recipe writes every open-loop strip (PNG) and evaluation episode (GIF) into the run
directory; these functions also send them to the ``torchrl.record`` logger:

=================  ====================================================================
TensorBoard        strips with ``SummaryWriter.add_image``, episodes with
                   ``Logger.log_video`` (needs ``moviepy``, in the ``tensorboard`` extra)
wandb              strips as ``wandb.Image`` through ``Logger.log_metrics``, episodes with
                   ``Logger.log_video`` (needs ``moviepy``, in the ``wandb`` extra)
CSV, none          nothing: the files in the run directory are the record
=================  ====================================================================

A logger that cannot take a video (``moviepy`` missing) warns once, naming the fix, and
the run goes on.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

__all__ = ["log_image", "log_video"]

_log = logging.getLogger(__name__)
_warned: set[str] = set()


def _kind(logger) -> str | None:
    name = type(logger).__name__
    return {"TensorboardLogger": "tensorboard", "WandbLogger": "wandb"}.get(name)


def log_image(logger, name: str, image: np.ndarray, step: int) -> bool:
    """Send ``image`` ``[H, W, 3]`` uint8 to ``logger`` at ``step``; ``False`` where the
    backend keeps no images (CSV, ``None``).

    Examples:
        >>> import tempfile
        >>> from torchrl.record.loggers import TensorboardLogger
        >>> logger = TensorboardLogger("demo", log_dir=tempfile.mkdtemp())
        >>> log_image(logger, "openloop", np.zeros((8, 8, 3), np.uint8), step=10)
        True
        >>> log_image(None, "openloop", np.zeros((8, 8, 3), np.uint8), step=10)
        False
    """
    kind = _kind(logger)
    if kind == "tensorboard":
        logger.experiment.add_image(name, np.ascontiguousarray(image), global_step=step,
                                    dataformats="HWC")
        return True
    if kind == "wandb":
        import wandb

        logger.log_metrics({name: wandb.Image(np.ascontiguousarray(image))}, step=step)
        return True
    return False


def log_video(logger, name: str, frames: torch.Tensor, step: int, *, fps: int = 15) -> bool:
    """Send ``frames`` ``[T, C, H, W]`` (uint8, or float in [0, 1]) to ``logger`` as a
    video at ``step``; ``False`` where the backend keeps no videos or cannot encode them.

    Examples:
        >>> import tempfile
        >>> from torchrl.record.loggers import TensorboardLogger
        >>> logger = TensorboardLogger("demo", log_dir=tempfile.mkdtemp())
        >>> log_video(logger, "eval/episode", torch.zeros(4, 3, 8, 8, dtype=torch.uint8), step=10)
        True
    """
    kind = _kind(logger)
    if kind is None:
        return False
    try:
        import moviepy  # noqa: F401  (both backends encode videos with it)
    except ImportError:
        if kind not in _warned:
            _warned.add(kind)
            _log.warning("logger.backend=%s cannot take the evaluation videos without moviepy: "
                         'pip install "torchrl_vta[%s]" (the GIFs are still in videos/).',
                         kind, kind)
        return False
    frames = frames.detach().cpu()
    if frames.is_floating_point():
        frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    if frames.shape[-3] == 1:
        frames = frames.expand(*frames.shape[:-3], 3, *frames.shape[-2:])
    logger.log_video(name, frames.unsqueeze(0).contiguous(), step=step, fps=fps)
    return True
