"""Data of a video experiment: the cached dataset split into training and held-out
sequences, and the non-overlapping windows evaluation scores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from torchrl_vta.envs.datasets import load_or_generate
from torchrl_vta.video.config import DatasetConfig

__all__ = ["load_data", "windows"]


#: Ground truth of the levels above the first, level 2 first (scored per level when present).
LEVEL_EVENT_KEYS = ("scene_event",)


def load_data(config: DatasetConfig, data_dir: str | Path):
    """``(train, eval)`` TensorDicts ``[N, T]`` (``pixels``, ``event``, and ``scene_event``
    where the world has a second level of events) cut from one dataset cached under
    ``data_dir`` (generated on first use; the held-out sequences are the last).

    Example:
        >>> import tempfile
        >>> config = DatasetConfig(num_sequences=3, eval_sequences=2, seq_len=6)
        >>> train, held_out = load_data(config, tempfile.mkdtemp())
        >>> train.batch_size, held_out.batch_size
        (torch.Size([3, 6]), torch.Size([2, 6]))
    """
    data_dir = Path(data_dir)
    total = config.num_sequences + config.eval_sequences
    options = json.dumps(config.options, sort_keys=True)
    tag = hashlib.sha1(options.encode()).hexdigest()[:8]
    path = data_dir / (
        f"{config.name}_{total}x{config.seq_len}_{config.image_size}px_seed{config.seed}_{tag}"
    )
    data = load_or_generate(
        path, config.name, total, config.seq_len, seed=config.seed,
        image_size=config.image_size, **config.options,
    )
    data = data.select("pixels", "event", *LEVEL_EVENT_KEYS, strict=False).to_tensordict()
    return data[: config.num_sequences], data[config.num_sequences :]


def windows(tensor: torch.Tensor, window: int) -> torch.Tensor:
    """Non-overlapping windows ``[N * k, window, ...]`` of sequences ``[N, T, ...]``.

    Example:
        >>> windows(torch.zeros(2, 7, 3), 3).shape
        torch.Size([4, 3, 3])
    """
    count = tensor.shape[1] // window
    return tensor[:, : count * window].reshape(-1, window, *tensor.shape[2:])


