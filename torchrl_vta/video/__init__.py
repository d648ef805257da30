"""Unsupervised video modelling with learned segment boundaries, as a library: the typed
configuration of ``configs/video``, the original VTA and the agent world model behind one
interface, training, the held-out boundary evaluation, pictures, and the whole experiment
``examples/vta_video.py`` runs. A user's own world trains and is scored after
:func:`~torchrl_vta.envs.datasets.register_dataset`.

Example:
    >>> from torchrl_vta.video import make_variant, validate_config
    >>> config = validate_config({"model": {"name": "original", "size": "tiny"}})
    >>> type(make_variant(config)).__name__
    'OriginalVariant'
"""

from torchrl_vta.video.config import (
    AgentModelConfig,
    DatasetConfig,
    EvalConfig,
    OptimConfig,
    OriginalModelConfig,
    RunConfig,
    TemperatureConfig,
    VideoConfig,
    validate_config,
)
from torchrl_vta.video.data import load_data, windows
from torchrl_vta.video.evaluation import boundary_report, evaluate_video_model
from torchrl_vta.video.pictures import save_boundary_strip, save_generation
from torchrl_vta.video.resume import SAFE_ON_RESUME, VideoCheckpoints, config_dict
from torchrl_vta.video.run import load_video_run, run_video_experiment
from torchrl_vta.video.training import train_video_model
from torchrl_vta.video.variants import AgentVariant, Inference, OriginalVariant, make_variant

__all__ = [
    "AgentModelConfig",
    "AgentVariant",
    "DatasetConfig",
    "EvalConfig",
    "Inference",
    "OptimConfig",
    "OriginalModelConfig",
    "OriginalVariant",
    "RunConfig",
    "SAFE_ON_RESUME",
    "TemperatureConfig",
    "VideoCheckpoints",
    "VideoConfig",
    "boundary_report",
    "config_dict",
    "evaluate_video_model",
    "load_data",
    "load_video_run",
    "make_variant",
    "run_video_experiment",
    "save_boundary_strip",
    "save_generation",
    "train_video_model",
    "validate_config",
    "windows",
]
