"""Tensor-level networks and their TensorDict wrappers."""

from torchrl_vta.modules.actor import make_actor, make_feature_module
from torchrl_vta.modules.boundary import BoundaryPosterior, BoundaryPrior
from torchrl_vta.modules.boundary_ops import (
    COPY,
    READ,
    BoundarySample,
    TemperatureSchedule,
    concrete_log_prob,
    sample_boundary,
)
from torchrl_vta.modules.decoders import MultiDecoder, make_decoder_module
from torchrl_vta.modules.encoders import MultiEncoder, make_encoder_module
from torchrl_vta.modules.heads import ContinueHead, RewardHead, TwoHotHead, ValueHead
from torchrl_vta.modules.latent import CategoricalLatent, GaussianLatent, make_latent
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.rssm_state import DEFAULT_ROLLOUT_KEYS, DEFAULT_STATE_KEYS, RSSMState, RSSMStep
from torchrl_vta.modules.rssm_wrappers import (
    HierarchicalRSSMRollout,
    HierarchicalStateEstimator,
    PreviousActionWriter,
)
from torchrl_vta.modules.segment_policy import BoundaryDecision, SegmentPolicy
from torchrl_vta.modules.set_baseline import DeterministicSetModel
from torchrl_vta.modules.sets import SetDecoder, SetEncoder
from torchrl_vta.modules.world_model import HierarchicalWorldModel, make_world_model

__all__ = [
    "BoundaryDecision",
    "BoundaryPosterior",
    "BoundaryPrior",
    "BoundarySample",
    "COPY",
    "CategoricalLatent",
    "ContinueHead",
    "DEFAULT_ROLLOUT_KEYS",
    "DEFAULT_STATE_KEYS",
    "DeterministicSetModel",
    "GaussianLatent",
    "HierarchicalRSSM",
    "HierarchicalRSSMRollout",
    "HierarchicalStateEstimator",
    "HierarchicalWorldModel",
    "MultiDecoder",
    "MultiEncoder",
    "PreviousActionWriter",
    "READ",
    "RSSMState",
    "RSSMStep",
    "RewardHead",
    "SegmentPolicy",
    "SetDecoder",
    "SetEncoder",
    "TemperatureSchedule",
    "TwoHotHead",
    "ValueHead",
    "concrete_log_prob",
    "make_actor",
    "make_decoder_module",
    "make_encoder_module",
    "make_feature_module",
    "make_latent",
    "make_world_model",
    "sample_boundary",
]
