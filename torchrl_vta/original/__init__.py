"""The original VTA video model (Kim, Ahn & Bengio, NeurIPS 2019), action-free, in its own
subpackage: its convolutional networks (``networks``), the model (``model``), its
generation (``generation``), its TensorDict wrapper (``module``) and its ELBO (``loss``).
Its boundaries are decided by the package's one :class:`~torchrl_vta.modules.segment_policy.SegmentPolicy`.

Example:
    >>> import torch
    >>> from torchrl_vta.original import OriginalVTA, OriginalVTAModule, OriginalVTALoss
    >>> module = OriginalVTAModule(OriginalVTA(belief_size=8, feat_size=8, state_size=2), init_size=1)
    >>> type(OriginalVTALoss(module)).__name__
    'OriginalVTALoss'
"""

from torchrl_vta.original.loss import OriginalVTALoss
from torchrl_vta.original.model import GENERATION_MODES, OriginalVTA, VTAGeneration, VTAOutput
from torchrl_vta.original.module import DEFAULT_VTA_KEYS, OriginalVTAModule
from torchrl_vta.original.networks import ConvBoundaryPosterior, VTADecoder, VTAEncoder

__all__ = [
    "DEFAULT_VTA_KEYS",
    "GENERATION_MODES",
    "ConvBoundaryPosterior",
    "OriginalVTA",
    "OriginalVTALoss",
    "OriginalVTAModule",
    "VTADecoder",
    "VTAEncoder",
    "VTAGeneration",
    "VTAOutput",
]
