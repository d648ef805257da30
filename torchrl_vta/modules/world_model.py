"""The hierarchical world model: encoder, RSSM rollout, decoder and heads in one module."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.data import Composite, TensorSpec

from torchrl_vta.modules.decoders import MultiDecoder, make_decoder_module
from torchrl_vta.modules.encoders import MultiEncoder, make_encoder_module
from torchrl_vta.modules.heads import ContinueHead, RewardHead
from torchrl_vta.modules.rssm import HierarchicalRSSM
from torchrl_vta.modules.rssm_wrappers import HierarchicalRSSMRollout

__all__ = ["HierarchicalWorldModel", "make_world_model", "FEATURE_NAMES"]

#: Rollout entries concatenated (in this order) into the feature read by heads, actor and critic.
FEATURE_NAMES = ("belief", "state", "abs_belief", "abs_state")


class HierarchicalWorldModel(TensorDictModuleBase):
    """Encode ``("next", obs)``, filter with the hierarchical RSSM, decode and predict.

    Over a ``[*B, T]`` TensorDict (TorchRL replay layout) it writes
    ``("next", "embed")``, every rollout entry (see
    :data:`~torchrl_vta.modules.rssm_state.DEFAULT_ROLLOUT_KEYS`), the
    reconstructions ``("next", "reco_<key>")`` from the observation-level
    feature ``[h, s]``, and ``("next", "reward_logits")`` /
    ``("next", "continue_logits")`` from the full feature ``[h, s, c, z]``.

    Args:
        encoder, rssm, decoder, reward_head: the tensor-level parts.
        continue_head: optional; without it no continue logits are written.

    Keyword Args:
        obs_prefix: where the modelled observations live. Defaults to ``"next"``.
        action_key, is_init_key: input keys. Defaults ``"action"``, ``"is_init"``.
        rollout_keys: renames of rollout outputs (names of
            :data:`~torchrl_vta.modules.rssm_state.DEFAULT_ROLLOUT_KEYS`).
        reward_logits_key, continue_logits_key: head output keys.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded, Composite, Unbounded
        >>> obs_spec = Composite(position=Unbounded((5,)))
        >>> model = make_world_model(obs_spec, Bounded(-1, 1, (2,)), preset="test")
        >>> td = TensorDict({"action": torch.zeros(2, 4, 2),
        ...                  "is_init": torch.zeros(2, 4, 1, dtype=torch.bool),
        ...                  "next": {"position": torch.randn(2, 4, 5)}}, [2, 4])
        >>> model(td)["next", "reco_position"].shape
        torch.Size([2, 4, 5])
    """

    def __init__(
        self,
        encoder: MultiEncoder,
        rssm: HierarchicalRSSM,
        decoder: MultiDecoder,
        reward_head: RewardHead,
        continue_head: ContinueHead | None = None,
        *,
        obs_prefix: NestedKey = "next",
        action_key: NestedKey = "action",
        is_init_key: NestedKey | None = "is_init",
        rollout_keys: dict[str, NestedKey] | None = None,
        reward_logits_key: NestedKey = ("next", "reward_logits"),
        continue_logits_key: NestedKey = ("next", "continue_logits"),
    ):
        super().__init__()
        self.encoder = encoder
        self.rssm = rssm
        self.decoder = decoder
        self.reward_head = reward_head
        self.continue_head = continue_head
        self.encoder_module = make_encoder_module(encoder, key_prefix=obs_prefix)
        embed_key = self.encoder_module.out_keys[0]
        self.rollout = HierarchicalRSSMRollout(
            rssm,
            embed_key=embed_key,
            action_key=action_key,
            is_init_key=is_init_key,
            out_keys=rollout_keys,
        )
        keys = self.rollout.out_key_map
        self.feature_keys = [keys[name] for name in FEATURE_NAMES if name in keys]
        #: decoder key -> (observation key in the data, reconstruction key), for the loss.
        self.reconstruction_keys = {
            obs_key: (_prefixed(obs_prefix, obs_key), _prefixed(obs_prefix, _reco_name(obs_key)))
            for obs_key in decoder.out_keys
        }
        #: mask key of a set observation -> its key in the data (a target of the set loss).
        self.reconstruction_masks = {
            mask: _prefixed(obs_prefix, mask)
            for mask in decoder.set_mask_keys.values() if mask is not None
        }
        self.decoder_module = make_decoder_module(
            decoder,
            in_keys=[keys["belief"], keys["state"]],
            out_keys={
                obs_key: _prefixed(obs_prefix, _reco_name(obs_key))
                for obs_key in decoder.out_keys
            },
        )
        self.reward_module = TensorDictModule(
            reward_head, in_keys=self.feature_keys, out_keys=[reward_logits_key]
        )
        modules = [self.encoder_module, self.rollout, self.decoder_module, self.reward_module]
        if continue_head is not None:
            self.continue_module = TensorDictModule(
                continue_head, in_keys=self.feature_keys, out_keys=[continue_logits_key]
            )
            modules.append(self.continue_module)
        self._modules_in_order = modules
        produced: set = set()
        in_keys: list = []
        for module in modules:
            in_keys += [k for k in module.in_keys if k not in produced and k not in in_keys]
            produced.update(module.out_keys)
        self.in_keys = in_keys
        self.out_keys = [k for m in modules for k in m.out_keys]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        for module in self._modules_in_order:
            module(tensordict)
        return tensordict

    def feature(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The full feature ``[h, s, c, z]`` of a rolled-out TensorDict."""
        return torch.cat([tensordict.get(key) for key in self.feature_keys], -1)


def _reco_name(key: NestedKey) -> NestedKey:
    if isinstance(key, str):
        return f"reco_{key}"
    return (*key[:-1], f"reco_{key[-1]}")


def _prefixed(prefix: NestedKey | None, key: NestedKey) -> NestedKey:
    if prefix is None:
        return key
    prefix = (prefix,) if isinstance(prefix, str) else tuple(prefix)
    key = (key,) if isinstance(key, str) else tuple(key)
    if key[: len(prefix)] == prefix:
        return key
    return prefix + key


#: Size presets. ``test``: tiny, for unit tests; ``cpu``: learns on a 2-core CPU;
#: ``size12m`` etc.: DreamerV3's GPU sizes (REFERENCE §1) with Gaussian or categorical latents.
PRESETS: dict[str, dict[str, Any]] = {
    "test": dict(
        encoder=dict(cnn_depth=4, cnn_mults=(1, 2), cnn_kernel=3, mlp_layers=1, mlp_units=16,
                     set_units=16, set_layers=1, set_heads=2),
        rssm=dict(belief_dim=16, hidden=16, stoch_dim=4, groups=4, classes=4,
                  boundary_proj_dim=8, boundary_hidden=16),
        decoder=dict(cnn_blocks=1),
        head=dict(layers=1, units=16),
    ),
    "cpu": dict(
        # CNN width 8 (twice DreamerV3's size1m): the CNN dominates a CPU update.
        encoder=dict(cnn_depth=8, cnn_mults=(2, 3, 4, 4), cnn_kernel=5, mlp_layers=2, mlp_units=128,
                     # Set width 256: a set autoencoder's held-out existence F1 0.975 vs 0.93
                     # at 64 (positions equally poor at both; benchmarks/README.md).
                     set_units=256, set_layers=2, set_heads=4),
        rssm=dict(belief_dim=128, hidden=128, stoch_dim=16, groups=16, classes=16,
                  boundary_proj_dim=32, boundary_hidden=64),
        decoder=dict(cnn_blocks=1),
        head=dict(layers=2, units=128),
    ),
    "size12m": dict(
        encoder=dict(cnn_depth=32, cnn_mults=(2, 3, 4, 4), cnn_kernel=5, mlp_layers=3, mlp_units=256),
        # A quarter-width abstract belief: it updates once per segment, and at full
        # width it makes levels=2 cost ~2x levels=1 (benchmarks/README.md).
        rssm=dict(belief_dim=2048, abs_belief_dim=512, hidden=256, stoch_dim=32, groups=16,
                  classes=16, boundary_proj_dim=64, boundary_hidden=256),
        decoder=dict(cnn_blocks=8),
        head=dict(layers=1, units=256),
    ),
    "size25m": dict(
        encoder=dict(cnn_depth=48, cnn_mults=(2, 3, 4, 4), cnn_kernel=5, mlp_layers=3, mlp_units=384),
        rssm=dict(belief_dim=3072, abs_belief_dim=768, hidden=384, stoch_dim=32, groups=24,
                  classes=24, boundary_proj_dim=64, boundary_hidden=384),
        decoder=dict(cnn_blocks=8),
        head=dict(layers=1, units=384),
    ),
}


def make_world_model(
    observation_spec: Composite,
    action_spec: TensorSpec,
    *,
    preset: str = "cpu",
    levels: int = 2,
    encoder: dict[str, Any] | None = None,
    rssm: dict[str, Any] | None = None,
    decoder: dict[str, Any] | None = None,
    head: dict[str, Any] | None = None,
    continue_head: bool = True,
    **world_model_kwargs,
) -> HierarchicalWorldModel:
    """Build a :class:`HierarchicalWorldModel` from an env's specs.

    ``preset`` picks sizes from :data:`PRESETS`; the ``encoder``, ``rssm``,
    ``decoder`` and ``head`` dicts override single options of
    :class:`MultiEncoder`, :class:`HierarchicalRSSM`, :class:`MultiDecoder`
    and the heads. The action size is the last dimension of ``action_spec``
    (one-hot for discrete actions).

    Examples:
        >>> from torchrl.data import Bounded, Composite, Unbounded
        >>> model = make_world_model(Composite(position=Unbounded((5,))), Bounded(-1, 1, (2,)),
        ...                          preset="test", levels=1)
        >>> model.rssm.levels
        1
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {sorted(PRESETS)}.")
    sizes = PRESETS[preset]
    encoder_module = MultiEncoder(observation_spec, **{**sizes["encoder"], **(encoder or {})})
    rssm_module = HierarchicalRSSM(
        action_spec.shape[-1] if len(action_spec.shape) else 1,
        encoder_module.out_features,
        levels=levels,
        **{**sizes["rssm"], **(rssm or {})},
    )
    decoder_module = MultiDecoder.from_encoder(
        encoder_module, rssm_module.obs_feature_dim, **{**sizes["decoder"], **(decoder or {})}
    )
    head_options = {**sizes["head"], **(head or {})}
    reward_head = RewardHead(rssm_module.feature_dim, **head_options)
    cont = ContinueHead(rssm_module.feature_dim, **head_options) if continue_head else None
    return HierarchicalWorldModel(
        encoder_module, rssm_module, decoder_module, reward_head, cont, **world_model_kwargs
    )
