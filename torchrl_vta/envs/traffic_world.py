"""The numpy simulator behind the ``traffic`` env: a signalised four-way intersection.

Geometry (box ``[-1, 1]²``, y pointing up). Two straight roads cross at the origin. Each of
the four approaches (sites ``N, E, S, W``, numbered 0 to 3, named by where vehicles come
from) has ``lanes`` lanes of width :data:`LANE_WIDTH`; traffic keeps right, lane 0 is the
one next to the centre line. A vehicle is a segment of length :data:`VEHICLE_LENGTH` on its
lane, at longitudinal position ``s`` (its centre) running from -1 (entry, on the box edge)
to +1 (exit); it is removed once ``s > 1``. The junction is the square where the roads
cross, of half-side ``lanes * LANE_WIDTH``; each approach has a stop line :data:`STOP_GAP`
before it.

Kinematics (per step, no turns). A vehicle's speed grows by :data:`ACCEL` up to
``max_speed``, but it never moves closer than :data:`MIN_GAP` behind the *previous*
position of the vehicle ahead in its lane (leaders only move forward, so gaps never shrink
below ``MIN_GAP``: no overlap, ever). A vehicle that has not crossed its stop line stops at
it unless its approach is green *and* no vehicle of the crossing road is still inside the
junction; so cross traffic never meets in the junction either. Braking is immediate.

Arrivals. Every step each lane receives a vehicle with probability ``arrival_rate``,
entering at ``s = -1`` at ``max_speed`` (its reported velocity); the arrival is dropped
when the lane's last vehicle is closer than one vehicle length plus ``MIN_GAP`` to the
entry, or when no slot is free.

Slots. Vehicles live in ``max_vehicles`` slots; a vehicle keeps its slot for life and a new
one takes the lowest slot that was already free at the previous frame, so a departure always
shows as one frame with the slot empty before the slot is reused.

Signal. Phases :data:`SIGNAL_PHASES` cycle NS green, clearance (all red), EW green,
clearance. Clearances last ``clearance_steps`` frames. Uncontrolled, each green lasts a
duration drawn uniformly from ``[green_min, green_max]`` frames; controlled, a green ends
when the action requests a switch and the green has shown for at least ``min_green`` frames.
``event[t]`` is True exactly when the phase of frame ``t`` differs from that of ``t - 1``
(never at frame 0). Reset runs ``warmup_steps`` scripted steps so that frame 0 already shows
traffic.

Reward: minus the fraction of present vehicles that stood still during the step (0 when the
area is empty), computed in both modes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACCEL",
    "CONTINUOUS_FEATURE_INDICES",
    "DISCRETE_FEATURE_CARDINALITIES",
    "DISCRETE_FEATURE_INDICES",
    "LANE_ID_INDEX",
    "LANE_WIDTH",
    "MAX_LANES",
    "MIN_GAP",
    "NUM_PHASES",
    "NUM_SITES",
    "SIGNAL_PHASES",
    "SITE_ID_INDEX",
    "SITE_NAMES",
    "STOP_GAP",
    "VEHICLE_DISCRETE_COLUMNS",
    "VEHICLE_FEATURES",
    "VEHICLE_LENGTH",
    "TrafficWorld",
]

SITE_NAMES = ("N", "E", "S", "W")
NUM_SITES = len(SITE_NAMES)
MAX_LANES = 2
#: Columns of the ``vehicles`` observation: continuous features, then the discrete ids
#: stored as integer-valued floats.
VEHICLE_FEATURES = ("x", "y", "vx", "vy", "heading_cos", "heading_sin", "site_id", "lane_id")
SITE_ID_INDEX = VEHICLE_FEATURES.index("site_id")
LANE_ID_INDEX = VEHICLE_FEATURES.index("lane_id")
DISCRETE_FEATURE_INDICES = (SITE_ID_INDEX, LANE_ID_INDEX)
#: ``lane_id`` always has ``MAX_LANES`` classes so that a model does not depend on ``lanes``.
DISCRETE_FEATURE_CARDINALITIES = (NUM_SITES, MAX_LANES)
#: ``{column: cardinality}`` of the discrete columns, the form a set encoder's options take.
VEHICLE_DISCRETE_COLUMNS = dict(zip(DISCRETE_FEATURE_INDICES, DISCRETE_FEATURE_CARDINALITIES))
CONTINUOUS_FEATURE_INDICES = tuple(i for i in range(len(VEHICLE_FEATURES)) if i not in DISCRETE_FEATURE_INDICES)
SIGNAL_PHASES = ("ns_green", "ns_clearance", "ew_green", "ew_clearance")
NUM_PHASES = len(SIGNAL_PHASES)

VEHICLE_LENGTH = 0.08
LANE_WIDTH = 0.1
MIN_GAP = 0.02
STOP_GAP = 0.02
ACCEL = 0.01
# Road axis given green by each phase (0: N-S, 1: E-W, -1: none).
_GREEN_AXIS = np.array([0, -1, 1, -1])
# Driving directions and right-hand normals (lane offsets) of the sites N, E, S, W.
_DIRECTIONS = np.array([(0.0, -1.0), (-1.0, 0.0), (0.0, 1.0), (1.0, 0.0)])
_NORMALS = np.stack([_DIRECTIONS[:, 1], -_DIRECTIONS[:, 0]], axis=1)
# Slack for "at the stop line" comparisons after float additions.
_EPS = 1e-9


def _is_int(value, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= low


def _check_options(options: dict) -> None:
    for name, low in (("max_vehicles", 1), ("green_min", 1), ("clearance_steps", 1), ("min_green", 1),
                      ("warmup_steps", 0)):
        if not _is_int(options[name], low):
            raise ValueError(f"{name} must be an int >= {low}, got {options[name]!r}")
    if options["lanes"] not in (1, 2) or isinstance(options["lanes"], bool):
        raise ValueError(f"lanes must be 1 or 2, got {options['lanes']!r}")
    if not _is_int(options["green_max"], options["green_min"]):
        raise ValueError(f"green_max must be an int >= green_min ({options['green_min']}), got {options['green_max']!r}")
    rate = options["arrival_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"arrival_rate must be a probability in [0, 1], got {rate!r}")
    speed = options["max_speed"]
    # A faster vehicle could jump the whole junction in one step, unseen by the crossing road.
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.0 < speed <= 0.1:
        raise ValueError(f"max_speed must lie in (0, 0.1] box units per step, got {speed!r}")
    if not isinstance(options["controlled"], bool):
        raise ValueError(f"controlled must be a bool, got {options['controlled']!r}")


class TrafficWorld:
    """Batched numpy simulator of the intersection (rules in the module docstring).

    State (arrays ``[B, max_vehicles]``): ``alive``, ``site``, ``lane``, ``s`` (centre
    position along the lane), ``v`` (distance moved in the last step); per world ``phase``,
    ``phase_age`` (frames the phase has shown, counting this one) and ``green_duration``.

    Args:
        batch_size: number of independent worlds simulated together.
        max_vehicles: slots of the padded vehicle set.
        lanes: lanes per approach (1 or 2).
        arrival_rate: per-lane, per-step arrival probability.
        max_speed: cruising speed, box units per step.
        green_min, green_max: range of the scripted green durations, frames (inclusive).
        clearance_steps: frames of all-red between two greens.
        min_green: shortest green a switch request can end (controlled).
        warmup_steps: scripted steps run by :meth:`reset` before frame 0.
        controlled: whether :meth:`step` takes switch requests instead of the script.
        seed: anything :func:`numpy.random.default_rng` accepts, or a Generator.

    Example:
        >>> world = TrafficWorld(2, seed=0)
        >>> obs = world.reset()
        >>> obs["vehicles"].shape, obs["vehicles_mask"].shape, obs["event"].tolist()
        ((2, 16, 8), (2, 16), [False, False])
        >>> sorted(world.step())
        ['event', 'reward', 'signal', 'vehicles', 'vehicles_mask']
    """

    def __init__(
        self,
        batch_size: int = 1,
        *,
        max_vehicles: int = 16,
        lanes: int = 2,
        arrival_rate: float = 0.02,
        max_speed: float = 0.05,
        green_min: int = 8,
        green_max: int = 16,
        clearance_steps: int = 2,
        min_green: int = 4,
        warmup_steps: int = 60,
        controlled: bool = False,
        seed=None,
    ) -> None:
        options = dict(locals())
        options.pop("self")
        _check_options(options)
        if not _is_int(batch_size, 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.max_vehicles = int(max_vehicles)
        self.lanes = int(lanes)
        self.arrival_rate = float(arrival_rate)
        self.max_speed = float(max_speed)
        self.green_min, self.green_max = int(green_min), int(green_max)
        self.clearance_steps = int(clearance_steps)
        self.min_green = int(min_green)
        self.warmup_steps = int(warmup_steps)
        self.controlled = controlled
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.junction_half_width = self.lanes * LANE_WIDTH
        #: Centre position of a vehicle whose front touches the stop line.
        self.stop_position = -self.junction_half_width - STOP_GAP - VEHICLE_LENGTH / 2
        shape = (self.batch_size, self.max_vehicles)
        self.alive = np.zeros(shape, dtype=bool)
        self.site = np.zeros(shape, dtype=np.int64)
        self.lane = np.zeros(shape, dtype=np.int64)
        self.s = np.zeros(shape)
        self.v = np.zeros(shape)
        self.phase = np.zeros(self.batch_size, dtype=np.int64)
        self.phase_age = np.ones(self.batch_size, dtype=np.int64)
        self.green_duration = np.zeros(self.batch_size, dtype=np.int64)

    @property
    def num_actions(self) -> int:
        """Size of the one-hot action: 2 (keep, request switch) when controlled, else 1 (no-op)."""
        return 2 if self.controlled else 1

    def reset(self) -> dict:
        """Empties every world, draws a starting green, runs the warm-up; returns frame 0."""
        for array in (self.alive, self.site, self.lane, self.s, self.v):
            array[...] = 0
        self.phase = 2 * self.rng.integers(0, 2, size=self.batch_size)
        self.phase_age = np.ones(self.batch_size, dtype=np.int64)
        self.green_duration = self._draw_green(self.batch_size)
        for _ in range(self.warmup_steps):
            self._advance(None, scripted=True)
        return self._observe(np.zeros(self.batch_size, dtype=bool), np.zeros(self.batch_size, np.float32))

    def step(self, action: np.ndarray | None = None) -> dict:
        """Advances every world one frame; ``action`` is an int array ``[B]`` (controlled only:
        0 keep, 1 request a switch)."""
        request = None
        if self.controlled and action is not None:
            request = np.asarray(action).reshape(self.batch_size)
            if ((request < 0) | (request > 1)).any():
                raise ValueError(f"action must be 0 (keep) or 1 (switch), got {request}")
            request = request == 1
        previous = self.phase.copy()
        reward = self._advance(request, scripted=not self.controlled)
        return self._observe(self.phase != previous, reward)

    def facing_red(self) -> np.ndarray:
        """bool ``[B, max_vehicles]``: present vehicles whose approach is not green now."""
        return self.alive & (_GREEN_AXIS[self.phase][:, None] != self.site % 2)

    def _draw_green(self, n: int) -> np.ndarray:
        return self.rng.integers(self.green_min, self.green_max + 1, size=n)

    def _advance(self, request: np.ndarray | None, scripted: bool) -> np.ndarray:
        was_alive = self.alive.copy()
        self._advance_signal(request, scripted)
        self._move()
        self._arrive(free=~was_alive)
        present = self.alive.sum(1)
        waiting = (self.alive & (self.v <= 0.0)).sum(1)
        return (-waiting / np.maximum(present, 1)).astype(np.float32)

    def _advance_signal(self, request: np.ndarray | None, scripted: bool) -> None:
        green = _GREEN_AXIS[self.phase] >= 0
        if scripted:
            end_green = green & (self.phase_age >= self.green_duration)
        elif request is None:
            end_green = np.zeros(self.batch_size, dtype=bool)
        else:
            end_green = green & request & (self.phase_age >= self.min_green)
        end_clearance = ~green & (self.phase_age >= self.clearance_steps)
        switch = end_green | end_clearance
        self.phase = np.where(switch, (self.phase + 1) % NUM_PHASES, self.phase)
        self.phase_age = np.where(switch, 1, self.phase_age + 1)
        # Drawn every step so the random stream does not depend on the switch pattern.
        self.green_duration = np.where(end_clearance, self._draw_green(self.batch_size), self.green_duration)

    def _lane_key(self) -> np.ndarray:
        return np.where(self.alive, self.site * self.lanes + self.lane, -1)

    def _move(self) -> None:
        s, alive, key = self.s, self.alive, self._lane_key()
        same_lane = alive[:, :, None] & (key[:, :, None] == key[:, None, :])
        ahead = same_lane & (s[:, None, :] > s[:, :, None])
        headway = np.where(ahead, s[:, None, :] - s[:, :, None], np.inf).min(-1)
        limit = s + headway - VEHICLE_LENGTH - MIN_GAP
        before_line = s <= self.stop_position + _EPS
        axis = self.site % 2
        # Vehicles past their stop line but not yet out of the junction, per road axis.
        inside = alive & ~before_line & (s - VEHICLE_LENGTH / 2 < self.junction_half_width)
        busy = np.stack([(inside & (axis == a)).any(1) for a in (0, 1)], axis=1)
        cross_busy = np.take_along_axis(busy, 1 - axis, axis=1)
        may_enter = (axis == _GREEN_AXIS[self.phase][:, None]) & ~cross_busy
        limit = np.where(before_line & ~may_enter, np.minimum(limit, self.stop_position), limit)
        desired = np.minimum(self.v + ACCEL, self.max_speed)
        target = np.maximum(np.minimum(s + desired, limit), s)
        # Rounding leaves creeps of ~1e-17 behind a constraint: a vehicle that barely moves stands.
        moving = alive & (target - s > _EPS)
        self.s = np.where(moving, target, s)
        self.v = np.where(moving, self.s - s, 0.0)
        left = alive & (self.s > 1.0)
        self.alive = alive & ~left
        for array in (self.site, self.lane, self.s, self.v):
            array[left] = 0

    def _arrive(self, free: np.ndarray) -> None:
        num_lanes = NUM_SITES * self.lanes
        want = self.rng.random((self.batch_size, num_lanes)) < self.arrival_rate
        key = self._lane_key()
        lanes = np.arange(num_lanes)
        in_lane = key[:, None, :] == lanes[None, :, None]
        rear = np.where(in_lane, self.s[:, None, :], np.inf).min(-1)
        want &= rear >= -1.0 + VEHICLE_LENGTH + MIN_GAP
        rank = np.cumsum(want, axis=1) - 1
        # Free slots first, in increasing order: the k-th arrival takes the k-th free slot.
        order = np.argsort(~free, axis=1, kind="stable")
        take = want & (rank < free.sum(1, keepdims=True))
        rows, lane_index = np.nonzero(take)
        slots = order[rows, rank[rows, lane_index]]
        self.alive[rows, slots] = True
        self.site[rows, slots] = lane_index // self.lanes
        self.lane[rows, slots] = lane_index % self.lanes
        self.s[rows, slots] = -1.0
        self.v[rows, slots] = self.max_speed

    def vehicle_features(self) -> np.ndarray:
        """float32 ``[B, max_vehicles, len(VEHICLE_FEATURES)]``; absent slots are zero."""
        direction, normal = _DIRECTIONS[self.site], _NORMALS[self.site]
        offset = (self.lane + 0.5) * LANE_WIDTH
        position = self.s[..., None] * direction + offset[..., None] * normal
        features = np.concatenate(
            [position, self.v[..., None] * direction, direction, self.site[..., None], self.lane[..., None]], axis=-1
        )
        return np.where(self.alive[..., None], features, 0.0).astype(np.float32)

    def _observe(self, event: np.ndarray, reward: np.ndarray) -> dict:
        return {
            "vehicles": self.vehicle_features(),
            "vehicles_mask": self.alive.copy(),
            "signal": np.eye(NUM_PHASES, dtype=np.float32)[self.phase],
            "event": event,
            "reward": reward,
        }
