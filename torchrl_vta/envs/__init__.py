"""Environments for torchrl_vta: ``make_env(name, **options)`` and the transforms it uses.

Importing this package imports none of dm_control, ale_py and highway_env: each builder
imports its simulator when called.
"""

from torchrl_vta.envs.atari import make_atari_env
from torchrl_vta.envs.balls import make_balls_env
from torchrl_vta.envs.datasets import generate_dataset, load_or_generate, register_dataset, registered_datasets
from torchrl_vta.envs.dmc import make_dmc_env
from torchrl_vta.envs.highway import VehicleSet, make_highway_env
from torchrl_vta.envs.maze import make_maze_env
from torchrl_vta.envs.registry import env_options, make_env, register_env, registered_envs
from torchrl_vta.envs.traffic import make_traffic_env, traffic_sequences
from torchrl_vta.envs.transforms import AudioInjection, CenterAudio, ResizeImage

__all__ = [
    "AudioInjection",
    "CenterAudio",
    "ResizeImage",
    "VehicleSet",
    "env_options",
    "generate_dataset",
    "load_or_generate",
    "register_dataset",
    "registered_datasets",
    "make_balls_env",
    "make_maze_env",
    "make_traffic_env",
    "traffic_sequences",
    "make_atari_env",
    "make_dmc_env",
    "make_highway_env",
    "make_env",
    "register_env",
    "registered_envs",
]
