"""Pictures and videos to the run's TorchRL logger, so dashboard users see them.

The recipe writes every open-loop strip (PNG) and evaluation episode (GIF) into the run
directory; these functions also send them to the ``torchrl.record`` logger:

=================  ====================================================================
TensorBoard        strips with ``SummaryWriter.add_image``; episodes as animated GIFs in
                   an image summary (the Images tab plays them)
wandb              strips as ``wandb.Image``, episodes as ``wandb.Video`` of GIF bytes,
                   through ``Logger.log_metrics``
CSV, none          nothing: the files in the run directory are the record
=================  ====================================================================

Episodes are encoded here (:func:`~torchrl_vta.viz_files.gif_bytes`, imageio), not with
``Logger.log_video``: TensorBoard's and wandb's video encoders need ``moviepy``, and
TensorBoard's needs its 1.x API (``moviepy.editor``), which current moviepy no longer has.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["log_image", "log_video"]


def _kind(logger) -> str | None:
    # TorchRL's logger classes (subclasses too); importing them loads neither backend.
    from torchrl.record.loggers.tensorboard import TensorboardLogger
    from torchrl.record.loggers.wandb import WandbLogger

    if isinstance(logger, TensorboardLogger):
        return "tensorboard"
    return "wandb" if isinstance(logger, WandbLogger) else None


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
    """Send ``frames`` ``[T, C, H, W]`` (uint8, or float in [0, 1]) to ``logger`` as an
    animated GIF at ``step``; ``False`` where the backend keeps no videos (CSV, ``None``).

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
    from torchrl_vta.viz_files import gif_bytes

    encoded = gif_bytes(frames, fps=fps, scale=1)
    if kind == "tensorboard":
        from tensorboard.compat.proto.summary_pb2 import Summary

        height, width = frames.shape[-2:]
        image = Summary.Image(height=height, width=width, colorspace=3,
                              encoded_image_string=encoded)
        summary = Summary(value=[Summary.Value(tag=name, image=image)])
        # SummaryWriter.add_video would re-encode with moviepy; its file writer takes the
        # summary as add_video itself hands it over.
        logger.experiment._get_file_writer().add_summary(summary, step)
        return True
    import io

    import wandb

    logger.log_metrics({name: wandb.Video(io.BytesIO(encoded), format="gif")}, step=step)
    return True
