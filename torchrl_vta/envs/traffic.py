"""A signalised four-way intersection as a set-structured TorchRL env, with ground-truth events.

The simulator is :class:`~torchrl_vta.envs.traffic_world.TrafficWorld` (rules in that
module's docstring): vehicles enter on the four approaches, follow each other with a safe
gap, stop at the stop line on red, and leave; signal phase changes are the events.

Observation (one env, ``M = max_vehicles``):

================ ===================== ==================================================
key              shape, dtype          meaning
================ ===================== ==================================================
vehicles         [M, 8] float32        one row per slot, columns :data:`VEHICLE_FEATURES`:
                                       ``x, y`` (centre, box ``[-1, 1]²``), ``vx, vy``
                                       (displacement in the last step), ``heading_cos,
                                       heading_sin``, then the discrete ``site_id``
                                       (0..3: N, E, S, W) and ``lane_id`` (0..lanes-1) as
                                       integer-valued floats; absent slots are all zeros
vehicles_mask    [M] bool              True where a slot holds a vehicle
signal           [4] float32           one-hot of :data:`SIGNAL_PHASES`
                                       (only with ``observe_signal=True``)
event            [1] bool              the phase changed between the previous frame and
                                       this one
================ ===================== ==================================================

A vehicle keeps its slot for life, so the slot index is its identity (trajectory metrics
can use it). :data:`DISCRETE_FEATURE_INDICES` and :data:`DISCRETE_FEATURE_CARDINALITIES`
(``(6, 7)`` and ``(4, 2)``; as a mapping, :data:`VEHICLE_DISCRETE_COLUMNS` ``{6: 4, 7: 2}``)
configure a model's categorical inputs; ``lane_id`` has 2 classes even with ``lanes=1``.
:data:`CONTINUOUS_FEATURE_INDICES` lists the other columns.

Actions: one-hot ``[2]`` (0 keep, 1 request a switch, honoured once the green has shown
``min_green`` frames) when ``controlled``, else a one-action no-op ``[1]``. Reward: minus
the fraction of present vehicles standing still (0 with no vehicle), computed in both
modes. Episodes never terminate; :class:`~torchrl.envs.StepCounter` truncates them.

With the defaults (2 lanes, ``arrival_rate`` 0.02, greens of 8 to 16 frames, 2-frame
clearances) a phase changes on 14% of the frames and about 8 of the 16 slots are occupied.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import Compose, EnvBase, InitTracker, StepCounter, TransformedEnv

from torchrl_vta.envs.traffic_world import (
    CONTINUOUS_FEATURE_INDICES,
    DISCRETE_FEATURE_CARDINALITIES,
    DISCRETE_FEATURE_INDICES,
    LANE_ID_INDEX,
    MAX_LANES,
    NUM_PHASES,
    NUM_SITES,
    SIGNAL_PHASES,
    SITE_ID_INDEX,
    SITE_NAMES,
    VEHICLE_DISCRETE_COLUMNS,
    VEHICLE_FEATURES,
    TrafficWorld,
)

__all__ = [
    "CONTINUOUS_FEATURE_INDICES",
    "DISCRETE_FEATURE_CARDINALITIES",
    "DISCRETE_FEATURE_INDICES",
    "LANE_ID_INDEX",
    "MAX_LANES",
    "NUM_PHASES",
    "NUM_SITES",
    "SIGNAL_PHASES",
    "SITE_ID_INDEX",
    "SITE_NAMES",
    "VEHICLE_DISCRETE_COLUMNS",
    "VEHICLE_FEATURES",
    "TrafficEnv",
    "TrafficWorld",
    "make_traffic_env",
    "traffic_sequences",
]


def _vehicles_spec(max_vehicles: int, max_speed: float, device: torch.device) -> Bounded:
    low = torch.tensor([-1.0, -1.0, -max_speed, -max_speed, -1.0, -1.0, 0.0, 0.0])
    high = torch.tensor([1.0, 1.0, max_speed, max_speed, 1.0, 1.0, NUM_SITES - 1, MAX_LANES - 1])
    shape = (max_vehicles, len(VEHICLE_FEATURES))
    return Bounded(low.expand(shape), high.expand(shape), shape, dtype=torch.float32, device=device)


class TrafficEnv(EnvBase):
    """TorchRL env around a single :class:`TrafficWorld` (never terminates; add a time limit).

    Keys in the module docstring, plus ``reward`` float32 ``[1]`` and ``done``/``terminated``
    bool ``[1]``. Keyword arguments are those of :class:`TrafficWorld` (without
    ``batch_size``) plus ``observe_signal`` (add the ``signal`` key) and ``device``.

    Example:
        >>> env = TrafficEnv(seed=0, observe_signal=True)
        >>> td = env.rollout(3)
        >>> td["next", "vehicles"].shape, td["next", "vehicles_mask"].shape, td["next", "signal"].shape
        (torch.Size([3, 16, 8]), torch.Size([3, 16]), torch.Size([3, 4]))
    """

    def __init__(
        self,
        *,
        observe_signal: bool = False,
        seed=None,
        device: torch.device | str = "cpu",
        **world_options,
    ) -> None:
        if not isinstance(observe_signal, bool):
            raise ValueError(f"observe_signal must be a bool, got {observe_signal!r}")
        super().__init__(device=device, batch_size=torch.Size([]))
        self.world = TrafficWorld(1, seed=seed, **world_options)
        self.observe_signal = observe_signal
        world = self.world
        observation = Composite(
            vehicles=_vehicles_spec(world.max_vehicles, world.max_speed, self.device),
            vehicles_mask=Categorical(2, (world.max_vehicles,), dtype=torch.bool, device=self.device),
            event=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            device=self.device,
        )
        if observe_signal:
            observation["signal"] = OneHot(NUM_PHASES, dtype=torch.float32, device=self.device)
        self.observation_spec = observation
        self.action_spec = OneHot(world.num_actions, dtype=torch.float32, device=self.device)
        self.reward_spec = Unbounded((1,), dtype=torch.float32, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self.world.rng = np.random.default_rng(seed)

    def _to_tensordict(self, obs: dict, with_reward: bool) -> TensorDictBase:
        out = TensorDict(
            {
                "vehicles": torch.from_numpy(obs["vehicles"][0]),
                "vehicles_mask": torch.from_numpy(obs["vehicles_mask"][0]),
                "event": torch.from_numpy(obs["event"][:1]),
            },
            batch_size=(),
        )
        if self.observe_signal:
            out["signal"] = torch.from_numpy(obs["signal"][0])
        false = torch.zeros(1, dtype=torch.bool)
        out["done"] = false
        out["terminated"] = false.clone()
        if with_reward:
            out["reward"] = torch.from_numpy(obs["reward"][:1])
        return out.to(self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        return self._to_tensordict(self.world.reset(), with_reward=False)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"].argmax(-1).reshape(1).cpu().numpy()
        return self._to_tensordict(self.world.step(action), with_reward=True)


def make_traffic_env(
    *,
    seed: int | None = 0,
    observe_signal: bool = False,
    max_steps: int | None = 500,
    device: torch.device | str = "cpu",
    **world_options,
) -> TransformedEnv:
    """Builds :class:`TrafficEnv` wrapped with :class:`~torchrl.envs.InitTracker` and a time limit.

    Args:
        seed: seed of the world's random generator (``None``: fresh entropy).
        observe_signal: add the phase one-hot ``signal`` to the observation.
        max_steps: episode length enforced by :class:`~torchrl.envs.StepCounter`
            (sets ``truncated``); ``None`` for endless episodes.
        device: device of the output tensors.
        **world_options: the keyword options of :class:`TrafficWorld` (``max_vehicles``,
            ``lanes``, ``arrival_rate``, ``controlled``, ...), with its defaults; the
            signature lists them, so :func:`~torchrl_vta.envs.env_options` does too.

    Example:
        >>> env = make_traffic_env(controlled=True, max_steps=4)
        >>> td = env.rollout(10)
        >>> td.shape, td["action"].shape, td["next", "truncated"][-1].item()
        (torch.Size([4]), torch.Size([4, 2]), True)
    """
    if max_steps is not None and not (isinstance(max_steps, (int, np.integer)) and not isinstance(max_steps, bool)
                                      and max_steps >= 1):
        raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
    env = TrafficEnv(seed=seed, observe_signal=observe_signal, device=device, **world_options)
    return TransformedEnv(env, Compose(InitTracker(), StepCounter(max_steps=max_steps)))


def _world_keywords() -> list[inspect.Parameter]:
    # TrafficWorld's keyword options (its defaults are the only ones), seed aside.
    return [p for p in inspect.signature(TrafficWorld.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "seed"]


# The registry reads a builder's options from its signature: list the world's there.
make_traffic_env.__signature__ = inspect.Signature(
    [p for p in inspect.signature(make_traffic_env).parameters.values()
     if p.kind is not inspect.Parameter.VAR_KEYWORD] + _world_keywords(),
    return_annotation=TransformedEnv,
)


def traffic_sequences(num_sequences: int, length: int, seed: int, **world_options) -> TensorDict:
    """Action-free (scripted signal) sequences of the intersection, batch ``[N, T]``.

    Keys: ``vehicles`` ``[N, T, M, 8]``, ``vehicles_mask`` ``[N, T, M]``, ``signal``
    ``[N, T, 4]`` and ``event`` ``[N, T, 1]`` (never at frame 0), laid out as the env's.
    The output is a deterministic function of the arguments.

    Args:
        num_sequences: number of independent sequences ``N``.
        length: frames per sequence ``T``.
        seed: non-negative int seeding the simulator.
        **world_options: options of :class:`TrafficWorld` other than ``controlled``.

    Example:
        >>> data = traffic_sequences(2, 5, seed=0)
        >>> data.batch_size, data["vehicles"].shape, data["event"][:, 0].any().item()
        (torch.Size([2, 5]), torch.Size([2, 5, 16, 8]), False)
    """
    for name, value, low in (("num_sequences", num_sequences, 1), ("length", length, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    valid = [p.name for p in _world_keywords() if p.name != "controlled"]
    unknown = sorted(set(world_options) - set(valid))
    if unknown:
        raise ValueError(f"unknown traffic option(s) {unknown}; valid: {sorted(valid)}")
    world = TrafficWorld(int(num_sequences), seed=int(seed), **world_options)
    frames = [world.reset()] + [world.step() for _ in range(int(length) - 1)]
    data = {key: np.stack([f[key] for f in frames], 1) for key in ("vehicles", "vehicles_mask", "signal", "event")}
    data["event"] = data["event"][..., None]
    return TensorDict(
        {key: torch.from_numpy(value) for key, value in data.items()}, batch_size=[num_sequences, length]
    )
