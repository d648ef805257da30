"""TorchRL LossModules of the hierarchical world-model agent."""

from torchrl_vta.objectives.world_model_loss import WorldModelLoss

__all__ = ["WorldModelLoss"]
