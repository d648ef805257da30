"""Name -> builder registry behind :func:`make_env`.

A builder is any callable returning a TorchRL :class:`~torchrl.envs.EnvBase`; the options
an env accepts are the builder's keyword arguments, read with :func:`inspect.signature`,
so names and options are checked before any optional dependency is imported or any env
is built. Builders import their heavy dependencies (dm_control, ale_py, highway_env) lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torchrl.envs import EnvBase

from torchrl_vta.envs.atari import make_atari_env
from torchrl_vta.envs.balls import make_balls_env
from torchrl_vta.envs.dmc import make_dmc_env
from torchrl_vta.envs.highway import make_highway_env
from torchrl_vta.envs.maze import make_maze_env
from torchrl_vta.envs.traffic import make_traffic_env

__all__ = ["env_options", "make_env", "register_env", "registered_envs"]

_BUILDERS: dict[str, Callable[..., EnvBase]] = {}

_OPTION_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def register_env(name: str, builder: Callable[..., EnvBase], *, overwrite: bool = False) -> None:
    """Register ``builder`` under ``name`` so that ``make_env(name, **options)`` calls it.

    Example:
        >>> from torchrl.envs.libs.gym import GymEnv
        >>> def make_pendulum(*, frame_skip: int = 1):
        ...     return GymEnv("Pendulum-v1", frame_skip=frame_skip)
        >>> register_env("pendulum", make_pendulum, overwrite=True)
        >>> env_options("pendulum")
        {'frame_skip': 1}
    """
    check_registration("env", "builder", name, builder, _BUILDERS, overwrite)
    _BUILDERS[name] = builder


def check_registration(kind: str, role: str, name, factory, registered, overwrite: bool) -> None:
    """The checks of every registry (envs, datasets): a non-empty name, a callable
    ``factory``, no silent replacement.

    Example:
        >>> check_registration("env", "builder", "", print, {}, False)
        Traceback (most recent call last):
        ...
        ValueError: env name must be a non-empty string, got ''
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"{role} for {name!r} must be callable, got {type(factory).__name__}")
    if name in registered and not overwrite:
        raise ValueError(f"{kind} {name!r} is already registered; pass overwrite=True to replace it")


def registered_envs() -> list[str]:
    """Sorted names accepted by :func:`make_env`.

    Example:
        >>> {"atari", "dmc"} <= set(registered_envs())
        True
    """
    return sorted(_BUILDERS)


def _builder(name: str) -> Callable[..., EnvBase]:
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(registered_envs())}") from None


def env_options(name: str) -> dict[str, Any]:
    """The options ``make_env(name, ...)`` accepts, with their defaults.

    A required option has the default ``inspect.Parameter.empty``.

    Example:
        >>> env_options("dmc")["task"]
        'walker_walk'
    """
    parameters = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind in _OPTION_KINDS}


def make_env(name: str, **options: Any) -> EnvBase:
    """Build the env registered under ``name`` with keyword ``options``.

    Unknown names and options raise ``ValueError`` (listing the valid ones) before any
    optional dependency is imported; a missing dependency raises ``ImportError`` naming
    the extra to install.

    Example:
        >>> env = make_env("dmc", task="cheetah_run", seed=0)
        >>> env.reset()["pixels"].shape
        torch.Size([3, 64, 64])
    """
    builder = _builder(name)
    signature = inspect.signature(builder)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    if not takes_any:
        valid = env_options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for env {name!r}; "
                f"valid options: {', '.join(valid)}"
            )
    return builder(**options)


register_env("dmc", make_dmc_env)
register_env("atari", make_atari_env)
register_env("balls", make_balls_env)
register_env("maze", make_maze_env)
register_env("traffic", make_traffic_env)
register_env("highway", make_highway_env)
