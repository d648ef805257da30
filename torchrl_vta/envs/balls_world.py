"""Bouncing balls that change colour on wall hits: a video world with ground-truth events.

The world lives in the unit square. ``num_balls`` discs of radius ``radius`` move at constant
speed, reflect elastically off the four walls and (by default) off each other (equal
masses: the velocity components along the line of centres are exchanged).

Colours. Every ball always has a colour of its own from :data:`PALETTE`. When a ball hits a
wall (or, with ``random_change_prob > 0``, at random times) it takes a new colour, drawn
uniformly among the palette colours that no ball wore in the previous frame and that no
ball wears now. So every colour change changes the *set* of colours visible in the frame
(the old colour disappears, a new one appears), and nothing else does: ball-ball
collisions never change colours.

Event. ``event[t]`` is True exactly when at least one ball changed colour between frame
``t - 1`` and frame ``t``; frame 0 has no event.

Sound. ``audio[t]`` holds ``audio_dim`` samples: for every collision that happened between
frame ``t - 1`` and ``t``, a decaying cosine burst whose pitch tells which wall was hit
(left 4, right 6, top 8, bottom 10 cycles per frame) or 13 cycles for a ball-ball
collision; the bursts add up and are clipped to ``[-1, 1]``. The vector is exactly zero when
nothing collided, and nonzero otherwise (every burst starts at its peak).

Visibility. With ``ball_collisions=True`` (default) balls barely overlap, so every ball is
visible in every frame. With ``ball_collisions=False`` balls pass through each other and one
can hide another, so a colour change may then be invisible in some frames.

Actions. With ``controlled=False`` the world is action-free; the env still exposes a
one-action (no-op) one-hot spec so TorchRL collectors run. With ``controlled=True``, ball 0
(drawn with a white centre dot) is pushed by the action: 0 no-op, 1 left, 2 right, 3 up,
4 down, each adding ``push`` to its velocity; speeds are capped at twice ``speed``.

Reward. +1 on every step in which ball 0 hits the right wall, else 0 (computed in both
modes; only meaningful when ``controlled=True``). Episodes never terminate; the time limit
is :class:`~torchrl.envs.StepCounter`'s ``max_steps``.

Scenes (nested events). With ``scene_every=k`` the background is a dark scene colour
(:data:`~torchrl_vta.envs.scenes.SCENE_PALETTE`, drawn at reset) that switches on every
``k``-th colour-change event since the last switch (``scene_jitter=j``: every ``k - j`` to
``k + j`` events), in that event's frame; ``scene_event[t]`` marks the switches, a subset of
``event`` (see :mod:`torchrl_vta.envs.scenes`). ``scene_every=None`` (default): black
background, no ``scene_event`` key, the same frames as a world without the option.

Defaults (3 balls, radius 0.08, speed 0.03 box widths per frame) give one colour-change
event every ~7 frames on average.
"""

from __future__ import annotations

import numpy as np

from torchrl_vta.envs.scenes import SceneSchedule, check_scene_options

__all__ = ["NUM_ACTIONS_CONTROLLED", "PALETTE", "BallsWorld"]

#: Ball colours (RGB). Pairwise distinct and far from black (background) and white (marker).
PALETTE = np.array(
    [
        (230, 25, 75),  # red
        (60, 180, 75),  # green
        (255, 225, 25),  # yellow
        (0, 130, 200),  # blue
        (245, 130, 48),  # orange
        (145, 30, 180),  # purple
        (70, 240, 240),  # cyan
        (240, 50, 230),  # magenta
        (170, 110, 40),  # brown
        (250, 190, 212),  # pink
    ],
    dtype=np.uint8,
)
_MARKER = np.array((255, 255, 255), dtype=np.uint8)
# Cycles per frame of the collision bursts: left, right, top, bottom wall, ball-ball.
_PITCHES = np.array([4.0, 6.0, 8.0, 10.0, 13.0])
_AMPLITUDE = 0.3
NUM_ACTIONS_CONTROLLED = 5


def _check_options(
    image_size: int,
    num_balls: int,
    radius: float,
    speed: float,
    random_change_prob: float,
    audio_dim: int,
    push: float,
) -> None:
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    # Two colours per ball must be free at once (old and new) for every change to be visible.
    max_balls = len(PALETTE) // 2
    if not isinstance(num_balls, (int, np.integer)) or not 1 <= num_balls <= max_balls:
        raise ValueError(f"num_balls must be an int in [1, {max_balls}], got {num_balls!r}")
    if not 0 < radius <= 0.15:
        raise ValueError(f"radius must lie in (0, 0.15], got {radius!r}")
    if radius * image_size < 1.0:
        raise ValueError(f"radius * image_size must be >= 1 pixel so balls stay visible, got {radius * image_size:.2f}")
    if num_balls * np.pi * radius**2 > 0.2:
        raise ValueError(
            f"balls too crowded: num_balls * pi * radius**2 must be <= 0.2 of the box, "
            f"got {num_balls * np.pi * radius**2:.3f} (num_balls={num_balls}, radius={radius})"
        )
    if not 0 < speed <= 0.1:
        raise ValueError(f"speed must lie in (0, 0.1], got {speed!r}")
    if not 0.0 <= random_change_prob <= 1.0:
        raise ValueError(f"random_change_prob must lie in [0, 1], got {random_change_prob!r}")
    if not isinstance(audio_dim, (int, np.integer)) or audio_dim < 0:
        raise ValueError(f"audio_dim must be a non-negative int, got {audio_dim!r}")
    if push < 0:
        raise ValueError(f"push must be >= 0, got {push!r}")


class BallsWorld:
    """Batched numpy simulator of the balls world (see the module docstring for the rules).

    Frames are returned channels-first, ``uint8 [B, 3, H, W]``.

    Args:
        batch_size: number of independent worlds simulated together.
        image_size: frame height and width in pixels.
        num_balls: balls per world (1 to 5).
        radius: ball radius as a fraction of the box side.
        speed: initial speed of every ball, box sides per frame.
        random_change_prob: per-ball, per-step probability of a spontaneous colour change.
        ball_collisions: whether balls bounce off each other (else they pass through).
        audio_dim: samples of collision sound per frame (0: no sound).
        controlled: whether actions push ball 0.
        push: velocity added by one push action.
        scene_every: colour-change events per scene (``None``: no scenes, black background).
        scene_jitter: the events per scene vary uniformly by up to this many.
        seed: anything :func:`numpy.random.default_rng` accepts, or a Generator.

    Example:
        >>> world = BallsWorld(2, image_size=32, seed=0)
        >>> obs = world.reset()
        >>> obs["pixels"].shape, obs["audio"].shape, obs["event"].tolist()
        ((2, 3, 32, 32), (2, 64), [False, False])
        >>> obs = world.step()
        >>> sorted(obs)
        ['audio', 'event', 'pixels', 'reward']
        >>> sorted(BallsWorld(1, image_size=32, scene_every=3, seed=0).reset())
        ['audio', 'event', 'pixels', 'reward', 'scene_event']
    """

    def __init__(
        self,
        batch_size: int,
        *,
        image_size: int = 64,
        num_balls: int = 3,
        radius: float = 0.08,
        speed: float = 0.03,
        random_change_prob: float = 0.0,
        ball_collisions: bool = True,
        audio_dim: int = 64,
        controlled: bool = False,
        push: float = 0.01,
        scene_every: int | None = None,
        scene_jitter: int = 0,
        seed=None,
    ) -> None:
        _check_options(image_size, num_balls, radius, speed, random_change_prob, audio_dim, push)
        check_scene_options(scene_every, scene_jitter)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.num_balls = int(num_balls)
        self.radius = float(radius)
        self.speed = float(speed)
        self.random_change_prob = float(random_change_prob)
        self.ball_collisions = bool(ball_collisions)
        self.audio_dim = int(audio_dim)
        self.controlled = bool(controlled)
        self.push = float(push)
        self.scenes = None if scene_every is None else SceneSchedule(scene_every, scene_jitter)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        centres = (np.arange(self.image_size) + 0.5) / self.image_size
        self._grid_x = centres[None, None, :]
        self._grid_y = centres[None, :, None]
        n = np.arange(self.audio_dim)
        decay = np.exp(-n / max(self.audio_dim / 4.0, 1.0))
        self._bursts = (_AMPLITUDE * decay * np.cos(2 * np.pi * _PITCHES[:, None] * n / max(self.audio_dim, 1))).astype(
            np.float32
        )
        self.position = np.zeros((self.batch_size, self.num_balls, 2))
        self.velocity = np.zeros((self.batch_size, self.num_balls, 2))
        self.colour = np.zeros((self.batch_size, self.num_balls), dtype=np.int64)

    @property
    def num_actions(self) -> int:
        """Size of the one-hot action: 5 when controlled, else 1 (a no-op)."""
        return NUM_ACTIONS_CONTROLLED if self.controlled else 1

    def reset(self) -> dict:
        """Re-initialises every world: random non-overlapping positions, random directions,
        distinct random colours; returns the observations."""
        low, high = self.radius, 1.0 - self.radius
        position = self.rng.uniform(low, high, size=(self.batch_size, self.num_balls, 2))
        # Ball by ball rejection sampling: start without overlaps so every ball is visible
        # from frame 0 (the crowding limit in the option checks keeps this quick).
        for i in range(1, self.num_balls):
            for _ in range(10_000):
                gap = np.linalg.norm(position[:, :i] - position[:, i : i + 1], axis=-1).min(1)
                bad = gap < 2.1 * self.radius
                if not bad.any():
                    break
                position[bad, i] = self.rng.uniform(low, high, size=(int(bad.sum()), 2))
            else:
                raise RuntimeError(f"could not place {self.num_balls} balls of radius {self.radius} apart")
        angle = self.rng.uniform(0.0, 2 * np.pi, size=(self.batch_size, self.num_balls))
        self.position = position
        self.velocity = self.speed * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        order = np.argsort(self.rng.random((self.batch_size, len(PALETTE))), axis=1)
        self.colour = order[:, : self.num_balls]
        if self.scenes is not None:
            self.scenes.reset(self.batch_size, self.rng)
        zeros = np.zeros(self.batch_size, dtype=bool)
        return self._observe(np.zeros((self.batch_size, 5)), zeros, np.zeros(self.batch_size, np.float32), zeros)

    def step(self, action: np.ndarray | None = None) -> dict:
        """Advances every world by one frame; ``action`` is an int array ``[B]`` (controlled only)."""
        if self.controlled and action is not None:
            action = np.asarray(action).reshape(self.batch_size)
            if ((action < 0) | (action >= NUM_ACTIONS_CONTROLLED)).any():
                raise ValueError(f"action must lie in [0, {NUM_ACTIONS_CONTROLLED}), got {action}")
            directions = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=float)
            self.velocity[:, 0] += self.push * directions[action]
            speed = np.linalg.norm(self.velocity, axis=-1, keepdims=True)
            # Pushes inject energy; the cap keeps one step shorter than the box (one reflection).
            self.velocity *= np.minimum(1.0, 2 * self.speed / np.maximum(speed, 1e-12))

        # hits[b, k]: number of collisions of kind k (left, right, top, bottom, ball-ball).
        hits = np.zeros((self.batch_size, 5))
        wall_hit = np.zeros((self.batch_size, self.num_balls), dtype=bool)
        self.position += self.velocity
        low, high = self.radius, 1.0 - self.radius
        for axis in range(2):
            coord = self.position[..., axis]
            below, above = coord < low, coord > high
            coord[below] = 2 * low - coord[below]
            coord[above] = 2 * high - coord[above]
            flip = below | above
            self.velocity[..., axis][flip] *= -1
            wall_hit |= flip
            hits[:, 2 * axis] += below.sum(1)
            hits[:, 2 * axis + 1] += above.sum(1)
            if axis == 0:
                reward = above[:, 0].astype(np.float32)
        if self.ball_collisions:
            hits[:, 4] = self._collide_balls()

        change = wall_hit
        if self.random_change_prob > 0:
            change = change | (self.rng.random((self.batch_size, self.num_balls)) < self.random_change_prob)
        self._recolour(change)
        event = change.any(1)
        scene_event = None if self.scenes is None else self.scenes.step(event, self.rng)
        return self._observe(hits, event, reward, scene_event)

    def _collide_balls(self) -> np.ndarray:
        count = np.zeros(self.batch_size)
        for i in range(self.num_balls):
            for j in range(i + 1, self.num_balls):
                offset = self.position[:, j] - self.position[:, i]
                dist = np.linalg.norm(offset, axis=-1)
                normal = offset / np.maximum(dist, 1e-12)[:, None]
                closing = np.sum((self.velocity[:, j] - self.velocity[:, i]) * normal, axis=-1)
                # Only approaching pairs bounce: a pair still overlapping after a bounce separates.
                hit = (dist < 2 * self.radius) & (closing < 0)
                exchange = (closing * hit)[:, None] * normal
                self.velocity[:, i] += exchange
                self.velocity[:, j] -= exchange
                count += hit
        return count

    def _recolour(self, change: np.ndarray) -> None:
        rows = np.arange(self.batch_size)[:, None]
        previous = np.zeros((self.batch_size, len(PALETTE)), dtype=bool)
        previous[rows, self.colour] = True
        for i in range(self.num_balls):
            forbidden = previous.copy()
            forbidden[rows, self.colour] = True
            scores = self.rng.random((self.batch_size, len(PALETTE)))
            scores[forbidden] = -1.0
            self.colour[:, i] = np.where(change[:, i], scores.argmax(1), self.colour[:, i])

    def _observe(self, hits: np.ndarray, event: np.ndarray, reward: np.ndarray, scene_event=None) -> dict:
        obs = {"pixels": self.render(), "event": event.copy(), "reward": reward}
        if self.scenes is not None:
            obs["scene_event"] = scene_event.copy()
        if self.audio_dim > 0:
            obs["audio"] = np.clip(hits @ self._bursts, -1.0, 1.0).astype(np.float32)
        return obs

    def render(self) -> np.ndarray:
        """Current frames, ``uint8 [B, 3, H, W]``; later balls are drawn over earlier ones."""
        size = self.image_size
        frame = np.zeros((self.batch_size, 3, size, size), dtype=np.uint8)
        if self.scenes is not None:
            frame[:] = self.scenes.colour()[:, :, None, None]
        # The controlled ball goes last so its marker is never hidden.
        order = [*range(1, self.num_balls), 0] if self.controlled else range(self.num_balls)
        for i in order:
            dist2 = (self._grid_x - self.position[:, i, 0, None, None]) ** 2 + (
                self._grid_y - self.position[:, i, 1, None, None]
            ) ** 2
            colour = PALETTE[self.colour[:, i]][:, :, None, None]
            frame = np.where((dist2 <= self.radius**2)[:, None], colour, frame)
            if self.controlled and i == 0:
                marker = (dist2 <= (0.4 * self.radius) ** 2)[:, None]
                frame = np.where(marker, _MARKER[None, :, None, None], frame)
        return frame
