"""Pictures of a video experiment, drawn on :class:`~torchrl_vta.viz.Canvas` in the
package's one colour convention (green event, red READ, orange forced READ, blue score)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from torchrl_vta.video.config import VideoConfig
from torchrl_vta.video.data import LEVEL_EVENT_KEYS
from torchrl_vta.viz import EVENT_COLOUR, FORCED_COLOUR, READ_COLOUR, SCORE_COLOUR, Canvas

__all__ = ["save_boundary_strip", "save_generation"]


def save_boundary_strip(variant, data: TensorDict, config: VideoConfig, path: str | Path,
                        device="cpu") -> Path:
    """Held-out windows: true events, frames, reconstructions, READ (forcing off), P(READ)
    (the normalised surprise for ``boundary_kind="surprise"``), in the package's colours.

    Example:
        >>> import tempfile, os
        >>> from torchrl_vta import generate_dataset
        >>> from torchrl_vta.video import make_variant, validate_config
        >>> config = validate_config({"model": {"name": "agent", "size": "tiny"},
        ...                           "eval": {"strip_sequences": 2}})
        >>> data = generate_dataset("balls", 2, 30, seed=0)
        >>> path = save_boundary_strip(make_variant(config), data, config,
        ...                            os.path.join(tempfile.mkdtemp(), "strip.png"))
        >>> path.name
        'strip.png'
    """
    count = config.eval.strip_sequences
    pixels = data["pixels"][:count, : config.window]
    events = [data[key][:count, : config.window, 0]
              for key in ("event", *LEVEL_EVENT_KEYS) if key in data.keys()]
    with torch.no_grad():
        inference = variant.boundaries(pixels.to(device), False)
    read, prob, forced, reconstruction = (x.cpu() for x in inference[:4])
    upper = [(level.read.cpu(), level.forced.cpu()) for level in inference.upper]
    init, seq = config.model.init_size, config.model.seq_size
    context = [not init <= t < init + seq for t in range(config.window)]
    windows = "training windows" if config.eval.split == "train" else "held-out windows"
    canvas = Canvas(config.window, pixels.shape[-1], (
        f"{config.dataset.name} / {config.model.name}: {windows}, forcing off "
        f"(dimmed = context frames)\ngreen: true event | red: READ | orange: forced READ | "
        f"blue: posterior P(READ)"))
    for i in range(pixels.shape[0]):
        # One bar per level: the events of level j above, its READs below the frames.
        for number, event in reversed(list(enumerate(events, 1))):
            canvas.bar("event" if number == 1 else f"event L{number}",
                       [EVENT_COLOUR if e else None for e in event[i].tolist()])
        canvas.frames(f"seq {i}", pixels[i].numpy(), dim=context)
        canvas.frames("recon", reconstruction[i].numpy())
        canvas.bar("READ", [(FORCED_COLOUR if f else READ_COLOUR) if r else None
                            for r, f in zip(read[i].tolist(), forced[i].tolist())])
        for number, (level_read, _) in enumerate(upper, 2):
            canvas.bar(f"READ L{number}", [READ_COLOUR if r else None
                                            for r in level_read[i].tolist()])
        canvas.bar("P(READ)", [SCORE_COLOUR] * config.window, heights=prob[i].tolist())
        canvas.space()
    return canvas.save(path)


def save_generation(variant, data: TensorDict, config: VideoConfig, mode: str, path: str | Path,
                    device="cpu") -> Path:
    """Context frames, then ground truth (top) and generated frames (bottom): ``mode="full"``
    steps both levels frame by frame, ``"jumpy"`` draws the first frame of each imagined
    segment against the true frames at the next events.

    Example:
        >>> import tempfile, os
        >>> from torchrl_vta import generate_dataset
        >>> from torchrl_vta.video import make_variant, validate_config
        >>> config = validate_config({"model": {"name": "original", "size": "tiny"},
        ...                           "eval": {"generate_sequences": 1}})
        >>> data = generate_dataset("balls", 1, 30, seed=0)
        >>> save_generation(make_variant(config), data, config, "jumpy",
        ...                 os.path.join(tempfile.mkdtemp(), "jumpy.png")).suffix
        '.png'
    """
    count, init = config.eval.generate_sequences, config.model.init_size
    context_len = max(init, 1)
    steps = config.model.seq_size if mode == "full" else config.eval.jumpy_steps
    pixels = data["pixels"][:count]
    # Jumpy generation steps the top level: its truth is the top level's events.
    keys = [key for key in ("event", *LEVEL_EVENT_KEYS) if key in data.keys()]
    event = data[keys[min(variant.levels - 2, len(keys) - 1)]][:count, :, 0]
    context = pixels[:, :context_len]
    with torch.no_grad():
        frames, read = (x.cpu() for x in variant.generate(context.to(device), steps, mode))
    if mode == "full":
        truth_label, what = "truth", "each frame"
    else:
        truth_label, what = "events", "first frame of each imagined segment"
    title = (f"{config.dataset.name} / {config.model.name}: {mode} generation after "
             f"{context_len} context frames (dimmed)\n"
             f"top: {'true continuation' if mode == 'full' else 'true frames at the next events'}"
             f" | bottom: generated, {what} | red: imagined READ")
    canvas = Canvas(context_len + steps, pixels.shape[-1], title)
    dim = [True] * context_len + [False] * steps
    for i in range(count):
        if mode == "full":
            truth = pixels[i, context_len : context_len + steps]
        else:
            times = torch.nonzero(event[i, context_len:])[:, 0] + context_len
            truth = pixels[i, times[:steps]]
        canvas.frames(truth_label, np.concatenate([context[i].numpy(), truth.numpy()]), dim=dim)
        canvas.frames(mode, np.concatenate([context[i].numpy(), frames[i].numpy()]), dim=dim)
        canvas.bar("READ", [None] * context_len + [READ_COLOUR if r else None for r in read[i].tolist()])
        canvas.space()
    return canvas.save(path)
