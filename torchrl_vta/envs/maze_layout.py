"""Maze layouts for the first-person maze world: :func:`make_maze` and the :class:`Maze` it
returns.

:func:`make_maze` carves a perfect maze of ``maze_size × maze_size`` cells with a
seeded depth-first search on a block grid of ``(2 maze_size + 1)²`` blocks (a block is a
wall or free), then opens each remaining inner wall between two cells with probability
``loop_prob`` so that corridors form loops and junctions offer real choices. Every wall
block gets one of four colours; wall faces that bound the goal block are gold. The goal is
the free cell farthest (by path length) from the top-left cell.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DIRECTIONS", "WALL_PALETTE", "Maze", "make_maze"]

# Headings as (dx, dy) on the block grid, y pointing down the rows: east, south, west, north.
# Turning right adds 1, turning left subtracts 1 (mod 4).
DIRECTIONS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], dtype=np.int64)
WALL_PALETTE = np.array([(150, 62, 52), (84, 98, 140), (62, 124, 76), (128, 84, 140)], dtype=np.float64)


class Maze(NamedTuple):
    """A generated maze: ``walls`` bool ``[G, G]`` (True = wall), ``colours`` int ``[G, G]``
    (index into the wall palette), ``goal`` ``(row, col)`` of the goal block.

    Example:
        >>> maze = make_maze(3, seed=0)
        >>> maze.walls.shape, bool(maze.walls[maze.goal])
        ((7, 7), False)
    """

    walls: np.ndarray
    colours: np.ndarray
    goal: tuple[int, int]


def make_maze(maze_size: int = 7, *, loop_prob: float = 0.1, seed=None) -> Maze:
    """Generates a seeded maze of ``maze_size × maze_size`` cells (see the module docstring).

    Args:
        maze_size: cells per side (2 to 32); the block grid has side ``2 maze_size + 1``.
        loop_prob: probability of opening each remaining wall between two cells.
        seed: anything :func:`numpy.random.default_rng` accepts, or a Generator.

    Example:
        >>> maze = make_maze(2, loop_prob=0.0, seed=1)
        >>> int((~maze.walls).sum())  # 4 cells + 3 openings of a spanning tree
        7
    """
    if not isinstance(maze_size, (int, np.integer)) or not 2 <= maze_size <= 32:
        raise ValueError(f"maze_size must be an int in [2, 32], got {maze_size!r}")
    if not 0.0 <= loop_prob <= 1.0:
        raise ValueError(f"loop_prob must lie in [0, 1], got {loop_prob!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = int(maze_size)
    side = 2 * n + 1
    walls = np.ones((side, side), dtype=bool)
    visited = np.zeros((n, n), dtype=bool)
    start = (int(rng.integers(n)), int(rng.integers(n)))
    stack = [start]
    visited[start] = True
    walls[2 * start[0] + 1, 2 * start[1] + 1] = False
    while stack:
        r, c = stack[-1]
        options = [
            (r + dr, c + dc)
            for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
            if 0 <= r + dr < n and 0 <= c + dc < n and not visited[r + dr, c + dc]
        ]
        if not options:
            stack.pop()
            continue
        nr, nc = options[int(rng.integers(len(options)))]
        walls[r + nr + 1, c + nc + 1] = False
        walls[2 * nr + 1, 2 * nc + 1] = False
        visited[nr, nc] = True
        stack.append((nr, nc))
    rows, cols = np.indices(walls.shape)
    inner = (rows > 0) & (rows < side - 1) & (cols > 0) & (cols < side - 1)
    between_cells = inner & ((rows % 2) != (cols % 2)) & walls
    candidates = np.flatnonzero(between_cells)
    opened = candidates[rng.random(len(candidates)) < loop_prob]
    walls.flat[opened] = False
    colours = rng.integers(0, len(WALL_PALETTE), size=walls.shape)
    return Maze(walls, colours, _farthest_cell(walls, (1, 1)))


def _farthest_cell(walls: np.ndarray, source: tuple[int, int]) -> tuple[int, int]:
    dist = np.full(walls.shape, -1)
    dist[source] = 0
    frontier = [source]
    while frontier:
        nxt = []
        for r, c in frontier:
            for dx, dy in DIRECTIONS:
                rr, cc = r + dy, c + dx
                if not walls[rr, cc] and dist[rr, cc] < 0:
                    dist[rr, cc] = dist[r, c] + 1
                    nxt.append((rr, cc))
        frontier = nxt
    # Only cell blocks (odd, odd) qualify, so the goal is never a doorway between cells.
    cell_dist = np.where((np.indices(walls.shape) % 2 == 1).all(0), dist, -1)
    r, c = np.unravel_index(int(np.argmax(cell_dist)), walls.shape)
    return int(r), int(c)
