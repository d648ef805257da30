"""Scenes: a second, coarser level of ground-truth events for the balls world.

A scene is a dark background colour from :data:`SCENE_PALETTE`. With ``scene_every=k`` the
scene switches, in the same frame, on every ``k``-th colour-change event counted since the
last switch (with ``scene_jitter=j``: after a number of events drawn uniformly from
``[max(1, k - j), k + j]`` each time), to a colour drawn uniformly among the other scenes.
So scene events are a subset of colour-change events: a two-level hierarchy of events
whose coarse boundaries always fall on fine ones.

Example:
    >>> rng = np.random.default_rng(0)
    >>> schedule = SceneSchedule(every=2)
    >>> schedule.reset(2, rng).shape
    (2,)
    >>> event = np.array([True, False])
    >>> [schedule.step(event, rng).tolist() for _ in range(4)]
    [[False, False], [True, False], [False, False], [True, False]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCENE_PALETTE", "SceneSchedule", "check_scene_options"]

#: Scene (background) colours (RGB): dark, pairwise >= 56 apart, >= 72 from black and
#: >= 130 from every ball colour of :data:`torchrl_vta.envs.balls_world.PALETTE`, so pixel colours
#: tell background, balls and the white marker apart exactly.
SCENE_PALETTE = np.array(
    [
        (0, 0, 96),  # navy
        (0, 72, 0),  # dark green
        (88, 0, 0),  # maroon
        (48, 48, 48),  # dark grey
        (0, 64, 72),  # dark teal
        (72, 0, 72),  # dark plum
    ],
    dtype=np.uint8,
)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_scene_options(scene_every, scene_jitter) -> None:
    """Raises ``ValueError`` naming the option (and the fix) if the scene options are invalid.

    Example:
        >>> check_scene_options(None, 0)  # no scenes
        >>> check_scene_options(0, 0)
        Traceback (most recent call last):
        ...
        ValueError: scene_every must be None (no scenes) or an int >= 1 (events per scene), got 0
    """
    if scene_every is not None and (not _is_int(scene_every) or scene_every < 1):
        raise ValueError(f"scene_every must be None (no scenes) or an int >= 1 (events per scene), got {scene_every!r}")
    if not _is_int(scene_jitter) or scene_jitter < 0:
        raise ValueError(f"scene_jitter must be an int >= 0, got {scene_jitter!r}")
    if scene_every is None and scene_jitter != 0:
        raise ValueError(f"scene_jitter={scene_jitter} needs scenes: set scene_every to an int >= 1 "
                         "or leave scene_jitter at 0")


class SceneSchedule:
    """Batched scene state: the current scene of every world and the events left before it
    switches. Randomness comes from the generator passed in, so the owner's seed fixes it.

    Args:
        every: events per scene (``k``).
        jitter: the events per scene are drawn uniformly from ``[max(1, k - jitter), k + jitter]``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> schedule = SceneSchedule(every=1)
        >>> first = schedule.reset(3, rng)
        >>> switched = schedule.step(np.array([True, True, False]), rng)
        >>> switched.tolist(), (schedule.scene != first).tolist()
        ([True, True, False], [True, True, False])
        >>> schedule.colour().shape
        (3, 3)
    """

    def __init__(self, every: int, jitter: int = 0) -> None:
        if every is None:
            raise ValueError("scene_every must be an int >= 1 for a SceneSchedule, got None")
        check_scene_options(every, jitter)
        self.every = int(every)
        self.jitter = int(jitter)
        self.scene = np.zeros(0, dtype=np.int64)
        self.countdown = np.zeros(0, dtype=np.int64)

    def _gaps(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(max(1, self.every - self.jitter), self.every + self.jitter + 1, size=size)

    def reset(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Draws a scene and the events before its first switch for every world; returns the scenes."""
        self.scene = rng.integers(len(SCENE_PALETTE), size=batch_size)
        self.countdown = self._gaps(batch_size, rng)
        return self.scene

    def step(self, event: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Counts this frame's events (bool ``[B]``); returns where the scene switched (bool ``[B]``)."""
        self.countdown = self.countdown - event
        switch = event & (self.countdown <= 0)
        # Drawn only on a switch, so a scene-free stretch leaves the owner's random stream alone.
        if switch.any():
            offset = rng.integers(1, len(SCENE_PALETTE), size=len(switch))
            self.scene = np.where(switch, (self.scene + offset) % len(SCENE_PALETTE), self.scene)
            self.countdown = np.where(switch, self._gaps(len(switch), rng), self.countdown)
        return switch

    def colour(self) -> np.ndarray:
        """Background colour of every world, ``uint8 [B, 3]``."""
        return SCENE_PALETTE[self.scene]
