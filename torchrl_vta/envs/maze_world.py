"""The first-person maze world: a batched numpy simulator of cameras walking the blocks of
a :class:`~torchrl_vta.envs.maze_layout.Maze`, rendered by ray casting, with ground-truth
turn events and a scripted agent for datasets.

Agent. The camera sits on block centres and block edges: a ``forward`` action moves
``1 / steps_per_block`` of a block along the heading (a no-op when a wall is ahead or when
the agent stands between two blocks facing sideways); ``left``/``right`` turn by 90 degrees
in place. Actions are one-hot over ``(forward, left, right)``.

Scripted agent (datasets). On arriving at a block centre it lists the open directions other
than straight back; in a corridor that is one direction (straight on, or the bend), at a
junction it picks one uniformly at random, and at a dead end it turns back (two left
turns). It turns in place until facing that way, then walks forward to the next centre.

Event. ``event[t]`` is True exactly when the heading of frame ``t`` differs from that of
frame ``t - 1``, i.e. when the action taken after frame ``t - 1`` was a turn: the frame
shows the view in a new direction from the same place. Frame 0 has no event. Walking straight
through a junction is not an event. With the defaults (7 × 7 cells, ``loop_prob`` 0.1,
2 steps per block) the scripted agent turns about once every 7 frames; about 8% of the gaps
between events are a single frame (the two halves of a U-turn at a dead end).
"""

from __future__ import annotations

import numpy as np

from torchrl_vta.envs.maze_layout import DIRECTIONS, WALL_PALETTE, Maze

__all__ = ["FORWARD", "LEFT", "RIGHT", "NUM_ACTIONS", "MazeWorld"]

FORWARD, LEFT, RIGHT = 0, 1, 2
NUM_ACTIONS = 3
GOAL_COLOUR = np.array((235, 200, 40), dtype=np.float64)


class MazeWorld:
    """Batched first-person maze simulator and ray-casting renderer, one maze per batch row.

    Args:
        mazes: one :class:`Maze` per batch row (all of the same size).
        image_size: frame height and width in pixels.
        steps_per_block: forward actions needed to cross one block.
        fov: horizontal field of view in degrees.
        seed: anything :func:`numpy.random.default_rng` accepts, or a Generator (start poses
            and the scripted agent's choices).

    Example:
        >>> from torchrl_vta.envs.maze_layout import make_maze
        >>> world = MazeWorld([make_maze(3, seed=0), make_maze(3, seed=1)], image_size=32, seed=0)
        >>> obs = world.reset()
        >>> obs["pixels"].shape, obs["pixels"].dtype
        ((2, 3, 32, 32), dtype('uint8'))
        >>> obs = world.step(np.array([LEFT, FORWARD]))
        >>> obs["event"].tolist()
        [True, False]
    """

    def __init__(
        self,
        mazes: list[Maze],
        *,
        image_size: int = 64,
        steps_per_block: int = 2,
        fov: float = 66.0,
        seed=None,
    ) -> None:
        if len(mazes) == 0:
            raise ValueError("mazes must hold at least one Maze")
        if not isinstance(image_size, (int, np.integer)) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if not isinstance(steps_per_block, (int, np.integer)) or not 1 <= steps_per_block <= 16:
            raise ValueError(f"steps_per_block must be an int in [1, 16], got {steps_per_block!r}")
        if not 10.0 <= fov <= 150.0:
            raise ValueError(f"fov must lie in [10, 150] degrees, got {fov!r}")
        self.batch_size = len(mazes)
        self.image_size = int(image_size)
        self.steps_per_block = int(steps_per_block)
        self.plane_scale = float(np.tan(np.radians(fov) / 2))
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.set_mazes(mazes)
        self.units = np.zeros((self.batch_size, 2), dtype=np.int64)
        self.heading = np.zeros(self.batch_size, dtype=np.int64)
        self._target = np.zeros(self.batch_size, dtype=np.int64)
        self._arrived = np.ones(self.batch_size, dtype=bool)
        rows = (np.arange(self.image_size) + 0.5) / self.image_size
        horizon = np.abs(rows - 0.5)[:, None] * 2  # 0 at the horizon, 1 at the top/bottom edge
        ceiling = (1 - horizon) * np.array([78, 78, 96]) + horizon * np.array([30, 30, 46])
        floor = (1 - horizon) * np.array([62, 54, 46]) + horizon * np.array([140, 122, 96])
        self._background = np.where((rows < 0.5)[:, None], ceiling, floor)  # [H, 3]

    def set_mazes(self, mazes: list[Maze]) -> None:
        """Installs one maze per batch row (all of the same size); call :meth:`reset` after."""
        if len(mazes) != self.batch_size or len({m.walls.shape for m in mazes}) != 1:
            raise ValueError(f"mazes must hold {self.batch_size} mazes of the same size")
        self.walls = np.stack([m.walls for m in mazes])
        self.colours = np.stack([m.colours for m in mazes])
        self.goal = np.array([m.goal for m in mazes], dtype=np.int64)

    @property
    def position(self) -> np.ndarray:
        """Camera position ``[B, 2]`` as ``(x, y)`` in blocks (block ``(row, col)`` spans ``[col, col + 1) × [row, row + 1)``)."""
        return self.units / self.steps_per_block + 0.5

    def _block(self) -> np.ndarray:
        """Block ``(x, y)`` the camera is in, for cameras on a block centre."""
        return self.units // self.steps_per_block

    def _at_centre(self) -> np.ndarray:
        return (self.units % self.steps_per_block == 0).all(1)

    def _open(self, block: np.ndarray) -> np.ndarray:
        """``[B, 4]``: whether the neighbour block in each direction is free."""
        rows = np.arange(self.batch_size)[:, None]
        nx = block[:, None, 0] + DIRECTIONS[None, :, 0]
        ny = block[:, None, 1] + DIRECTIONS[None, :, 1]
        return ~self.walls[rows, ny, nx]

    def reset(self) -> dict:
        """Puts every camera on a random free block centre other than the goal, facing a
        random open direction; returns the observations."""
        for b in range(self.batch_size):
            free = np.argwhere(~self.walls[b])
            free = free[(free != self.goal[b]).any(1)]
            r, c = free[int(self.rng.integers(len(free)))]
            self.units[b] = (c * self.steps_per_block, r * self.steps_per_block)
        scores = self.rng.random((self.batch_size, 4))
        self.heading = np.where(self._open(self._block()), scores, -1.0).argmax(1)
        self._arrived[:] = True
        zeros = np.zeros(self.batch_size, dtype=bool)
        return self._observe(zeros, np.zeros(self.batch_size, np.float32), zeros)

    def set_pose(self, position: np.ndarray, heading: np.ndarray) -> dict:
        """Places the cameras at ``position`` ``[B, 2]`` (as returned by :attr:`position`)
        facing ``heading`` ``[B]``; returns the observations there."""
        units = np.rint((np.asarray(position, dtype=np.float64) - 0.5) * self.steps_per_block).astype(np.int64)
        heading = np.asarray(heading, dtype=np.int64).reshape(self.batch_size)
        if units.shape != (self.batch_size, 2) or ((heading < 0) | (heading > 3)).any():
            raise ValueError("position must be [B, 2] and heading [B] in 0..3")
        block = np.floor(np.asarray(position)).astype(np.int64)
        if self.walls[np.arange(self.batch_size), block[:, 1], block[:, 0]].any():
            raise ValueError("position must lie in free blocks")
        self.units = units
        self.heading = heading
        self._arrived[:] = True
        zeros = np.zeros(self.batch_size, dtype=bool)
        return self._observe(zeros, np.zeros(self.batch_size, np.float32), zeros)

    def scripted_action(self) -> np.ndarray:
        """Actions ``[B]`` of the corridor-following agent with random turns at junctions."""
        scores = self.rng.random((self.batch_size, 4))
        decide = self._arrived & self._at_centre()
        if decide.any():
            candidates = self._open(self._block())
            back = (self.heading + 2) % 4
            candidates[np.arange(self.batch_size), back] = False
            dead_end = ~candidates.any(1)
            candidates[dead_end, back[dead_end]] = True
            choice = np.where(candidates, scores, -1.0).argmax(1)
            self._target = np.where(decide, choice, self._target)
            self._arrived &= ~decide
        turn = (self._target - self.heading) % 4
        action = np.full(self.batch_size, FORWARD)
        action[turn == 1] = RIGHT
        action[(turn == 2) | (turn == 3)] = LEFT
        # A camera between centres (e.g. placed there by set_pose) can only walk on.
        action[~self._at_centre()] = FORWARD
        return action

    def step(self, action: np.ndarray) -> dict:
        """Applies actions ``[B]`` (``FORWARD``, ``LEFT``, ``RIGHT``); returns the new observations."""
        action = np.asarray(action).reshape(self.batch_size)
        if ((action < 0) | (action >= NUM_ACTIONS)).any():
            raise ValueError(f"action must lie in [0, {NUM_ACTIONS}), got {action}")
        old_heading = self.heading.copy()
        self.heading = (self.heading + (action == RIGHT) - (action == LEFT)) % 4
        step = DIRECTIONS[self.heading]
        target = self.units + step
        # A move crosses the segment between two consecutive block centres along the heading;
        # it is allowed when both blocks are free and the camera is centred across the heading.
        s = self.steps_per_block
        low = np.minimum(self.units, target) // s
        high = low + np.abs(step)
        rows = np.arange(self.batch_size)
        both_free = ~self.walls[rows, low[:, 1], low[:, 0]] & ~self.walls[rows, high[:, 1], high[:, 0]]
        across = np.where(step[:, 0] != 0, 1, 0)
        centred_across = self.units[rows, across] % s == 0
        moved = (action == FORWARD) & both_free & centred_across
        self.units = np.where(moved[:, None], target, self.units)
        arrived = moved & self._at_centre()
        self._arrived |= arrived
        on_goal = arrived & (self._block()[:, ::-1] == self.goal).all(1)
        return self._observe(self.heading != old_heading, on_goal.astype(np.float32), on_goal)

    def _observe(self, event: np.ndarray, reward: np.ndarray, terminated: np.ndarray) -> dict:
        return {"pixels": self.render(), "event": event, "reward": reward, "terminated": terminated}

    def render(self) -> np.ndarray:
        """Current first-person frames, ``uint8 [B, 3, H, W]``."""
        size = self.image_size
        batch = self.batch_size
        pos = self.position
        direction = DIRECTIONS[self.heading].astype(np.float64)
        plane = np.stack([-direction[:, 1], direction[:, 0]], axis=1) * self.plane_scale
        camera = 2 * (np.arange(size) + 0.5) / size - 1
        ray = direction[:, None, :] + plane[:, None, :] * camera[None, :, None]  # [B, W, 2]
        ray_x, ray_y = ray[..., 0], ray[..., 1]
        px = np.broadcast_to(pos[:, None, 0], ray_x.shape)
        py = np.broadcast_to(pos[:, None, 1], ray_y.shape)
        map_x = np.floor(px).astype(np.int64)
        map_y = np.floor(py).astype(np.int64)
        with np.errstate(divide="ignore"):
            delta_x = np.where(ray_x == 0, 1e30, np.abs(1.0 / ray_x))
            delta_y = np.where(ray_y == 0, 1e30, np.abs(1.0 / ray_y))
        step_x = np.where(ray_x < 0, -1, 1)
        step_y = np.where(ray_y < 0, -1, 1)
        side_x = np.where(ray_x < 0, px - map_x, map_x + 1 - px) * delta_x
        side_y = np.where(ray_y < 0, py - map_y, map_y + 1 - py) * delta_y
        hit = np.zeros(ray_x.shape, dtype=bool)
        side = np.zeros(ray_x.shape, dtype=np.int64)
        rows = np.arange(batch)[:, None]
        last = self.walls.shape[1] - 1
        # Digital differential analysis, all rays at once: step to the nearer grid line until a wall.
        for _ in range(2 * self.walls.shape[1] + 2):
            active = ~hit
            along_x = active & (side_x < side_y)
            along_y = active & ~(side_x < side_y)
            side_x = np.where(along_x, side_x + delta_x, side_x)
            side_y = np.where(along_y, side_y + delta_y, side_y)
            map_x = np.clip(np.where(along_x, map_x + step_x, map_x), 0, last)
            map_y = np.clip(np.where(along_y, map_y + step_y, map_y), 0, last)
            side = np.where(along_x, 0, np.where(along_y, 1, side))
            hit |= self.walls[rows, map_y, map_x]
            if hit.all():
                break
        distance = np.maximum(np.where(side == 0, side_x - delta_x, side_y - delta_y), 1e-3)
        wall_u = np.where(side == 0, py + distance * ray_y, px + distance * ray_x)
        wall_u -= np.floor(wall_u)
        colour = WALL_PALETTE[self.colours[rows, map_y, map_x]]
        front_x = np.where(side == 0, map_x - step_x, map_x)
        front_y = np.where(side == 1, map_y - step_y, map_y)
        facing_goal = (front_y == self.goal[:, None, 0]) & (front_x == self.goal[:, None, 1])
        colour = np.where(facing_goal[..., None], GOAL_COLOUR, colour)
        # Darker x-facing walls, distance fog and dark block edges give depth and motion cues.
        shade = np.where(side == 0, 0.72, 1.0) / (1.0 + 0.2 * distance)
        shade = shade * np.where((wall_u < 0.05) | (wall_u > 0.95), 0.5, 1.0)
        colour = colour * shade[..., None]  # [B, W, 3]
        half = size / (2.0 * distance)  # half the wall's screen height, in pixels
        rows_px = np.arange(size)[None, :, None] + 0.5 - size / 2.0
        on_wall = np.abs(rows_px) < half[:, None, :]  # [B, H, W]
        frame = np.where(on_wall[..., None], colour[:, None, :, :], self._background[None, :, None, :])
        return np.clip(np.rint(frame), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
