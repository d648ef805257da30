"""highway-env driving scenarios as a set-structured TorchRL env, with lane changes as events.

highway-env (``pip install "torchrl_vta[highway]"``) simulates an ego vehicle among
IDM-driven traffic; its ``Kinematics`` observation lists the ego vehicle and its nearest
neighbours, one row each. :func:`make_highway_env` wraps it with TorchRL's
:class:`~torchrl.envs.GymWrapper` and turns the rows into the padded set the set encoder
reads (:class:`VehicleSet`).

Observation (one env, ``V = vehicles_count``, ``F = len(features)``, defaults ``V = 8``,
``F = 7``):

================ ===================== ==================================================
key              shape, dtype          meaning
================ ===================== ==================================================
vehicles         [V, F-1] float32      one row per observed vehicle, the ``features``
                                       without ``presence`` in the given order (default
                                       ``x, y, vx, vy, cos_h, sin_h``); row 0 is the ego
                                       vehicle, then its nearest neighbours by distance
                                       (ahead of it, unless ``see_behind``). Positions
                                       and velocities are highway-env's normalised
                                       ``[-1, 1]`` values; the neighbours' are relative to
                                       the ego vehicle, the ego row's are absolute (its
                                       ``x`` saturates at 1 after ~200 m, its ``y`` gives
                                       its lane). Absent rows are all zeros
vehicles_mask    [V] bool              ``presence > 0.5``: True where a row holds a
                                       vehicle (row 0 always)
crashed          [1] bool              the ego vehicle has collided (highway-env's
                                       ``info["crashed"]``; the episode terminates)
event            [1] bool              the ego vehicle's lane index (road segment, lane)
                                       differs from the previous step's: on the straight
                                       highway scenarios, exactly the steps where the ego
                                       vehicle crosses into another lane (a change that
                                       is started and undone within one step is not
                                       seen); never at a reset frame
================ ===================== ==================================================

Actions: with ``action="discrete"`` highway-env's ``DiscreteMetaAction``, one-hot ``[5]``
(0 lane left, 1 idle, 2 lane right, 3 faster, 4 slower); with ``"continuous"`` its
``ContinuousAction``, ``[2]`` in ``[-1, 1]`` (acceleration, steering). Rewards are
highway-env's (``[0, 1]`` per step on the highway scenarios). Episodes terminate as the
scenario decides (on a collision; some scenarios also on arrival) and are truncated at its
``duration`` (seconds: steps at the default ``policy_frequency`` of 1 Hz) and by
:class:`~torchrl.envs.StepCounter` at ``max_steps``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import (
    GymWrapper,
    InitTracker,
    StepCounter,
    Transform,
    TransformedEnv,
    default_info_dict_reader,
)

__all__ = ["HIGHWAY_FEATURES", "HIGHWAY_SCENARIOS", "VehicleSet", "make_highway_env"]

_INSTALL_HINT = 'the "highway" env needs highway-env: pip install "torchrl_vta[highway]"'

#: Per-vehicle features highway-env's ``Kinematics`` observation can report.
HIGHWAY_FEATURES = (
    "presence", "x", "y", "vx", "vy", "heading", "cos_h", "sin_h",
    "cos_d", "sin_d", "long_off", "lat_off", "ang_off",
)

#: Supported scenarios and the action kinds each runs with (in highway-env 1.12 the other
#: combinations fail inside the simulator, and the listed versions are the current ones).
HIGHWAY_SCENARIOS = {
    "highway-fast-v0": ("discrete", "continuous"),
    "highway-v0": ("discrete", "continuous"),
    "exit-v1": ("discrete", "continuous"),
    "intersection-v2": ("discrete", "continuous"),
    "u-turn-v1": ("discrete", "continuous"),
    "merge-v1": ("discrete",),
    "roundabout-v1": ("discrete",),
    "two-way-v0": ("discrete",),
    "racetrack-v1": ("continuous",),
}

_ACTION_TYPES = {"discrete": "DiscreteMetaAction", "continuous": "ContinuousAction"}
# Set by our own options; `config` may not override them.
_RESERVED_CONFIG = ("observation", "action", "duration")


class VehicleSet(Transform):
    """Split a ``[..., V, F]`` Kinematics observation into a padded set and its mask.

    Writes ``out_key`` (float32 ``[..., V, F-1]``: every column but ``presence``, absent
    rows zeroed) and ``<out_key>_mask`` (bool ``[..., V]``: ``presence > 0.5``), and
    removes ``in_key``: the layout :class:`~torchrl_vta.modules.MultiEncoder` routes to
    its set path.

    Args:
        presence_index: column of the presence flag.
        in_key: the observation entry (``GymWrapper`` names it ``"observation"``).
        out_key: the set entry; its mask is ``out_key + "_mask"``.

    Example:
        >>> from tensordict import TensorDict
        >>> obs = torch.tensor([[1.0, 0.5, 0.2], [0.0, 0.3, 0.1]])
        >>> td = VehicleSet()(TensorDict(observation=obs))
        >>> td["vehicles"], td["vehicles_mask"], "observation" in td.keys()
        (tensor([[0.5000, 0.2000],
                [0.0000, 0.0000]]), tensor([ True, False]), False)
    """

    def __init__(self, presence_index: int = 0, in_key: str = "observation", out_key: str = "vehicles"):
        if isinstance(presence_index, bool) or not isinstance(presence_index, int) or presence_index < 0:
            raise ValueError(f"presence_index must be an int >= 0, got {presence_index!r}")
        super().__init__(in_keys=[in_key], out_keys=[out_key, f"{out_key}_mask"])
        self.presence_index = presence_index

    def _split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.presence_index
        mask = obs[..., p] > 0.5
        columns = torch.cat([obs[..., :p], obs[..., p + 1 :]], dim=-1).to(torch.float32)
        # Exact zeros in absent rows, whatever the simulator padded them with.
        return torch.where(mask.unsqueeze(-1), columns, torch.zeros((), dtype=torch.float32)), mask

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        in_key = self.in_keys[0]
        if in_key in next_tensordict.keys():
            vehicles, mask = self._split(next_tensordict.pop(in_key))
            next_tensordict.set(self.out_keys[0], vehicles)
            next_tensordict.set(self.out_keys[1], mask)
        return next_tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        spec = observation_spec[self.in_keys[0]]
        del observation_spec[self.in_keys[0]]
        *lead, num_features = spec.shape
        if num_features <= self.presence_index:
            raise ValueError(f"presence_index {self.presence_index} is out of range for {num_features} features")
        observation_spec[self.out_keys[0]] = Unbounded(
            (*lead, num_features - 1), dtype=torch.float32, device=spec.device
        )
        observation_spec[self.out_keys[1]] = Categorical(2, tuple(lead), dtype=torch.bool, device=spec.device)
        return observation_spec


class _CrashAndLaneEvents(gym.Wrapper):
    """Adds ``info["event"]`` (ego lane index changed) and makes ``info["crashed"]`` a ``[1]`` array."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lane = self.env.unwrapped.vehicle.lane_index
        return obs, self._info(info, changed=False)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lane = self.env.unwrapped.vehicle.lane_index
        changed, self._lane = lane != self._lane, lane
        return obs, reward, terminated, truncated, self._info(info, changed)

    @staticmethod
    def _info(info: dict, changed: bool) -> dict:
        # TorchRL's info reader needs arrays of the spec's shape, not Python bools.
        return {**info, "crashed": np.array([bool(info["crashed"])]), "event": np.array([bool(changed)])}


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int >= {low}{suffix}, got {value!r}")


def _check_options(scenario, vehicles_count, features, action, flags, duration, max_steps, seed, config) -> None:
    if scenario not in HIGHWAY_SCENARIOS:
        close = difflib.get_close_matches(str(scenario), HIGHWAY_SCENARIOS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown highway scenario {scenario!r}.{hint} Valid: {', '.join(HIGHWAY_SCENARIOS)}")
    if action not in _ACTION_TYPES:
        raise ValueError(f"action must be 'discrete' or 'continuous', got {action!r}")
    if action not in HIGHWAY_SCENARIOS[scenario]:
        raise ValueError(f"action={action!r} is not supported by scenario {scenario!r} in highway-env")
    _check_int("vehicles_count", vehicles_count, 1)
    _check_int("duration", duration, 1, allow_none=True)
    _check_int("max_steps", max_steps, 1, allow_none=True)
    _check_int("seed", seed, 0, allow_none=True)
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise ValueError(f"features must be a sequence of feature names, got {features!r}")
    unknown = [f for f in features if f not in HIGHWAY_FEATURES]
    if unknown or len(set(features)) != len(features) or "presence" not in features or len(features) < 2:
        raise ValueError(
            f"features must be distinct names from {HIGHWAY_FEATURES}, including 'presence' and at "
            f"least one other; got {tuple(features)!r}"
        )
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping of highway-env settings or None, got {config!r}")
    reserved = sorted(set(config or {}) & set(_RESERVED_CONFIG))
    if reserved:
        raise ValueError(f"config may not set {reserved}: use the options of make_highway_env instead")


def make_highway_env(
    *,
    scenario: str = "highway-fast-v0",
    vehicles_count: int = 8,
    features: Sequence[str] = ("presence", "x", "y", "vx", "vy", "cos_h", "sin_h"),
    action: str = "discrete",
    absolute: bool = False,
    see_behind: bool = False,
    duration: int | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    max_steps: int | None = None,
    device: torch.device | str = "cpu",
) -> TransformedEnv:
    """Builds a highway-env scenario with a padded vehicle set, ``crashed`` and lane-change ``event``.

    Keys in the module docstring, plus ``reward`` float32 ``[1]``, the done keys,
    ``is_init`` (:class:`~torchrl.envs.InitTracker`) and ``step_count``.

    Args:
        scenario: a highway-env id from :data:`HIGHWAY_SCENARIOS`.
        vehicles_count: rows of the observation ``V`` (ego vehicle included); highway-env's
            ``observation.vehicles_count``. The traffic on the road is
            ``config["vehicles_count"]`` (20 on ``highway-fast-v0``).
        features: Kinematics columns, from :data:`HIGHWAY_FEATURES`; must include
            ``presence``, which becomes the mask.
        action: ``"discrete"`` (one-hot meta-actions) or ``"continuous"`` (acceleration,
            steering in ``[-1, 1]``).
        absolute: neighbours in absolute road coordinates instead of relative to the ego.
        see_behind: also observe vehicles more than two lengths behind the ego vehicle.
        duration: episode length in seconds (steps at 1 Hz), ``None`` for the scenario's own
            (30 on ``highway-fast-v0``); an error for scenarios without one.
        config: further highway-env settings (``lanes_count``, ``vehicles_density``,
            ``policy_frequency``, ...), checked against the scenario's config.
        seed: seeds the scenario's generator (``None``: fresh entropy).
        max_steps: :class:`~torchrl.envs.StepCounter` limit (sets ``truncated``), or ``None``.
        device: device of the output tensors.

    Example:
        >>> import pytest
        >>> _ = pytest.importorskip("highway_env")
        >>> env = make_highway_env(vehicles_count=5, max_steps=4)
        >>> td = env.rollout(10)
        >>> td["next", "vehicles"].shape, td["next", "vehicles_mask"][:, 0].all().item(), td["action"].shape
        (torch.Size([4, 5, 6]), True, torch.Size([4, 5]))
    """
    features = tuple(features) if isinstance(features, Sequence) and not isinstance(features, str) else features
    flags = {"absolute": absolute, "see_behind": see_behind}
    _check_options(scenario, vehicles_count, features, action, flags, duration, max_steps, seed, config)
    try:
        import highway_env  # noqa: F401  (registers the scenarios with gymnasium)
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err

    settings = dict(config or {})
    settings["observation"] = {
        "type": "Kinematics",
        "vehicles_count": int(vehicles_count),
        "features": list(features),
        "absolute": absolute,
        "see_behind": see_behind,
        "normalize": True,
        "clip": True,
        # Sorted: row 0 is the ego vehicle and rows follow by distance, a stable layout.
        "order": "sorted",
    }
    settings["action"] = {"type": _ACTION_TYPES[action]}
    if duration is not None:
        settings["duration"] = int(duration)
    gym_env = gym.make(scenario, config=settings)
    known = gym_env.unwrapped.default_config()
    unknown = sorted(set(config or {}) - set(known))
    if duration is not None and "duration" not in known:
        unknown.append("duration")
    if unknown:
        gym_env.close()
        raise ValueError(f"scenario {scenario!r} has no setting {unknown}; its settings: {sorted(known)}")

    base = GymWrapper(_CrashAndLaneEvents(gym_env), categorical_action_encoding=False, device=device)
    flag = Categorical(2, (1,), dtype=torch.bool, device=base.device)
    base.set_info_dict_reader(
        default_info_dict_reader(["crashed", "event"], spec={"crashed": flag, "event": flag.clone()})
    )
    env = TransformedEnv(base)
    env.append_transform(VehicleSet(presence_index=features.index("presence")))
    env.append_transform(InitTracker())
    env.append_transform(StepCounter(max_steps=max_steps))
    if seed is not None:
        env.set_seed(int(seed))
    return env
