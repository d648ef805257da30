"""torchrl_vta: hierarchical (VTA) world-model agents for TorchRL.

The public API is what this module exports; everything else is private by name
or lives in a submodule for advanced use.
"""

from torchrl_vta.agent import Agent
from torchrl_vta.checkpoint import Checkpointer, CheckpointError, check_free_space
from torchrl_vta.collectors import sync_policy_weights
from torchrl_vta.config import RecipeConfig
from torchrl_vta.config_resume import flatten_config, resume_config
from torchrl_vta.distributed import DataParallel, load_agreed_checkpoint
from torchrl_vta.learner import Learner
from torchrl_vta.logger_media import log_image, log_video
from torchrl_vta.evaluation import (
    evaluate,
    openloop_strip,
    replay_boundary_scores,
    save_episode_video,
    save_strip,
)
from torchrl_vta.envs import (
    AudioInjection,
    generate_dataset,
    load_or_generate,
    make_env,
    register_dataset,
    register_env,
    registered_datasets,
)
from torchrl_vta.metrics import (
    boundary_auc,
    boundary_offsets,
    boundary_rates,
    boundary_scores,
    event_triggered_average,
    per_tolerance_table,
    periodic_boundaries,
)
from torchrl_vta.modules import (
    READ,
    BoundaryPosterior,
    BoundaryPrior,
    CategoricalLatent,
    ContinueHead,
    GaussianLatent,
    HierarchicalRSSM,
    HierarchicalRSSMRollout,
    HierarchicalStateEstimator,
    HierarchicalWorldModel,
    MultiDecoder,
    MultiEncoder,
    PreviousActionWriter,
    RewardHead,
    RSSMState,
    SegmentPolicy,
    BoundaryDecision,
    SetDecoder,
    SetEncoder,
    TemperatureSchedule,
    ValueHead,
    make_actor,
    make_decoder_module,
    make_encoder_module,
    make_feature_module,
    make_world_model,
)
from torchrl_vta.original import (
    OriginalVTA,
    OriginalVTALoss,
    OriginalVTAModule,
)
from torchrl_vta.pixels import quantize_pixels, to_uint8, to_unit
from torchrl_vta.recipe import (
    TRAJ_KEY,
    configure_threads,
    longest_trajectory,
    make_agent,
    make_collector,
    make_env_factory,
    make_learner,
    make_logger,
    make_replay_buffer,
    replay_keys,
    select_device,
)
from torchrl_vta.guard import NonFiniteUpdateError
from torchrl_vta.rundir import claim_run_dir
from torchrl_vta.signals import GracefulStop
from torchrl_vta.modules.ensemble import EnsembleMLP
from torchrl_vta.pretrained import load_pretrained
from torchrl_vta.objectives import (
    ImaginationActorLoss,
    Plan2Explore,
    WorldModelLoss,
    imagine_trajectories,
    lambda_returns,
    make_target_updater,
    make_value_loss,
    make_value_model,
)

__version__ = "0.1.0"

__all__ = [
    "READ",
    "TRAJ_KEY",
    "Agent",
    "Checkpointer",
    "DataParallel",
    "CheckpointError",
    "check_free_space",
    "flatten_config",
    "load_agreed_checkpoint",
    "load_pretrained",
    "log_image",
    "log_video",
    "longest_trajectory",
    "GracefulStop",
    "NonFiniteUpdateError",
    "claim_run_dir",
    "configure_threads",
    "resume_config",
    "evaluate",
    "make_agent",
    "make_collector",
    "make_env_factory",
    "make_learner",
    "make_logger",
    "make_replay_buffer",
    "openloop_strip",
    "replay_boundary_scores",
    "replay_keys",
    "save_episode_video",
    "save_strip",
    "select_device",
    "sync_policy_weights",
    "AudioInjection",
    "BoundaryPosterior",
    "BoundaryPrior",
    "CategoricalLatent",
    "ContinueHead",
    "GaussianLatent",
    "HierarchicalRSSM",
    "HierarchicalRSSMRollout",
    "HierarchicalStateEstimator",
    "HierarchicalWorldModel",
    "EnsembleMLP",
    "Plan2Explore",
    "ImaginationActorLoss",
    "Learner",
    "MultiDecoder",
    "MultiEncoder",
    "SetDecoder",
    "SetEncoder",
    "OriginalVTA",
    "OriginalVTALoss",
    "OriginalVTAModule",
    "PreviousActionWriter",
    "RSSMState",
    "RecipeConfig",
    "RewardHead",
    "SegmentPolicy",
    "BoundaryDecision",
    "TemperatureSchedule",
    "ValueHead",
    "WorldModelLoss",
    "boundary_auc",
    "boundary_offsets",
    "boundary_rates",
    "boundary_scores",
    "event_triggered_average",
    "generate_dataset",
    "imagine_trajectories",
    "lambda_returns",
    "load_or_generate",
    "register_dataset",
    "registered_datasets",
    "make_actor",
    "make_decoder_module",
    "make_encoder_module",
    "make_env",
    "make_feature_module",
    "make_target_updater",
    "make_value_loss",
    "make_value_model",
    "make_world_model",
    "per_tolerance_table",
    "periodic_boundaries",
    "quantize_pixels",
    "register_env",
    "to_uint8",
    "to_unit",
]
