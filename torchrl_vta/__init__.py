"""torchrl_vta: hierarchical (VTA) world-model agents for TorchRL.

The public API is what this module exports; everything else is private by name
or lives in a submodule for advanced use.
"""

from torchrl_vta.agent import Agent, Learner
from torchrl_vta.config import RecipeConfig
from torchrl_vta.envs import AudioInjection, generate_dataset, load_or_generate, make_env, register_env
from torchrl_vta.metrics import (
    boundary_auc,
    boundary_rates,
    boundary_scores,
    per_tolerance_table,
    periodic_boundaries,
)
from torchrl_vta.modules import (
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
    TemperatureSchedule,
    ValueHead,
    make_actor,
    make_decoder_module,
    make_encoder_module,
    make_feature_module,
    make_world_model,
)
from torchrl_vta.objectives import (
    ImaginationActorLoss,
    WorldModelLoss,
    imagine_trajectories,
    lambda_returns,
    make_target_updater,
    make_value_loss,
    make_value_model,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
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
    "ImaginationActorLoss",
    "Learner",
    "MultiDecoder",
    "MultiEncoder",
    "PreviousActionWriter",
    "RSSMState",
    "RecipeConfig",
    "RewardHead",
    "TemperatureSchedule",
    "ValueHead",
    "WorldModelLoss",
    "boundary_auc",
    "boundary_rates",
    "boundary_scores",
    "generate_dataset",
    "imagine_trajectories",
    "lambda_returns",
    "load_or_generate",
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
    "register_env",
]
