"""The agent: world model, actor and critic, with the acting policy that runs them in a
TorchRL env. Its learner step is :mod:`~torchrl_vta.learner`.
"""

from __future__ import annotations

from typing import Any

from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase, TensorDictPrimer

from torchrl_vta.learner import AUTOCAST, OPTIMIZERS, Learner
from torchrl_vta.modules.actor import make_actor, make_feature_module
from torchrl_vta.modules.encoders import make_encoder_module
from torchrl_vta.modules.rssm_wrappers import HierarchicalStateEstimator, PreviousActionWriter
from torchrl_vta.modules.world_model import PRESETS, HierarchicalWorldModel, make_world_model
from torchrl_vta.objectives.value_model import make_value_model

__all__ = ["AUTOCAST", "Agent", "Learner", "OPTIMIZERS"]


class Agent(nn.Module):
    """World model, actor and critic, with the acting policy that runs them in a TorchRL env.

    Build it with :meth:`from_env` from the env *before* adding
    :meth:`make_primer` to that env (the primer adds the recurrent state
    entries, which are not observations).

    Examples:
        >>> from torchrl_vta.envs import make_env
        >>> env = make_env("maze", image_size=16, max_steps=20)
        >>> agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        >>> env.append_transform(agent.make_primer())
        TransformedEnv(...)
        >>> rollout = env.rollout(5, agent.policy)
        >>> rollout["boundary"].shape
        torch.Size([5, 1])
    """

    def __init__(self, world_model: HierarchicalWorldModel, actor: nn.Module, value_model: nn.Module):
        super().__init__()
        self.world_model = world_model
        self.actor = actor
        self.value_model = value_model
        self.estimator = HierarchicalStateEstimator(world_model.rssm)
        self.policy = TensorDictSequential(
            make_encoder_module(world_model.encoder),
            self.estimator,
            make_feature_module(),
            actor,
            PreviousActionWriter(),
        )

    @classmethod
    def from_env(
        cls,
        env: EnvBase,
        *,
        preset: str = "cpu",
        levels: int = 2,
        encoder: dict[str, Any] | None = None,
        rssm: dict[str, Any] | None = None,
        decoder: dict[str, Any] | None = None,
        head: dict[str, Any] | None = None,
        actor: dict[str, Any] | None = None,
        critic: dict[str, Any] | None = None,
    ) -> "Agent":
        """Size the networks from ``env``'s observation and action specs.

        ``encoder``/``rssm``/``decoder``/``head`` override options of the
        ``preset`` (see :data:`~torchrl_vta.modules.world_model.PRESETS`);
        ``actor`` and ``critic`` go to :func:`~torchrl_vta.modules.make_actor`
        and :func:`~torchrl_vta.objectives.make_value_model`.
        """
        # The encoder skips non-observations itself (bool flags such as
        # `is_init`/`event`, counters, done/reward entries).
        world_model = make_world_model(
            env.observation_spec,
            env.action_spec,
            preset=preset,
            levels=levels,
            encoder=encoder,
            rssm=rssm,
            decoder=decoder,
            head=head,
        )
        head_sizes = {k: v for k, v in (head or {}).items() if k in ("layers", "units")}
        defaults = {**PRESETS[preset]["head"], **head_sizes}
        feature_dim = world_model.rssm.feature_dim
        actor_module = make_actor(env.action_spec, feature_dim, **{**defaults, **(actor or {})})
        value_model = make_value_model(feature_dim, **{**defaults, **(critic or {})})
        return cls(world_model, actor_module, value_model)

    def make_primer(self) -> TensorDictPrimer:
        """The primer creating the acting state (``belief``, ``abs_state``, ``prev_action``...)."""
        return self.estimator.make_primer()
