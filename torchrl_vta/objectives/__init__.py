"""TorchRL LossModules of the hierarchical world-model agent."""

from torchrl_vta.objectives.actor_loss import ImaginationActorLoss
from torchrl_vta.objectives.value_loss import make_target_updater, make_value_loss
from torchrl_vta.objectives.value_model import make_value_model
from torchrl_vta.objectives.exploration import EXPLORE_MODES, Plan2Explore, mode_scales
from torchrl_vta.objectives.imagination import frozen, imagine_trajectories
from torchrl_vta.objectives.returns import lambda_returns
from torchrl_vta.objectives.world_model_loss import WorldModelLoss

__all__ = [
    "EXPLORE_MODES",
    "Plan2Explore",
    "mode_scales",
    "ImaginationActorLoss",
    "WorldModelLoss",
    "frozen",
    "imagine_trajectories",
    "lambda_returns",
    "make_target_updater",
    "make_value_loss",
    "make_value_model",
]
