"""torchrl_vta: hierarchical (VTA) world-model agents for TorchRL."""

__version__ = "0.1.0"
