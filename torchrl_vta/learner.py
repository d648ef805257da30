"""The learner step of the agent: one DreamerV3-style update of the world model, the actor
and the critic (and, with exploration, Plan2Explore's ensembles and the intrinsic critic),
with its losses, optimisers, slow critics, non-finite guard and data-parallel averaging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.trainers.algorithms import DreamerV3Optimizer

from torchrl_vta.distributed import DataParallel, collective_statistics
from torchrl_vta.guard import NonFiniteGuard
from torchrl_vta.objectives._checks import total_loss
from torchrl_vta.objectives.actor_loss import ImaginationActorLoss
from torchrl_vta.objectives.value_loss import make_target_updater, make_value_loss
from torchrl_vta.objectives.value_model import make_value_model
from torchrl_vta.objectives.exploration import Plan2Explore, mode_scales
from torchrl_vta.objectives.imagination import DEFAULT_GAMMA
from torchrl_vta.objectives.world_model_loss import WorldModelLoss

if TYPE_CHECKING:
    # Only the annotation: torchrl_vta.agent re-exports Learner, so importing it here would
    # be circular.
    from torchrl_vta.agent import Agent

__all__ = ["AUTOCAST", "Learner", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "dreamerv3")
AUTOCAST = (None, "bf16")


def _renamed_critic(value_model: TensorDictSequential) -> TensorDictSequential:
    """A fresh critic of ``value_model``'s shape writing ``intrinsic_state_value(_logits)``."""
    head = value_model[0].module
    return make_value_model(
        head.in_features, layers=head.layers, units=head.units, num_bins=head.num_bins,
        feature_key=value_model[0].in_keys[0], value_key="intrinsic_state_value",
        logits_key="intrinsic_state_value_logits",
    ).to(next(value_model.parameters()).device)


def _clip(parameters, max_norm: float) -> torch.Tensor:
    return nn.utils.clip_grad_norm_(parameters, max_norm)


class Learner(nn.Module):
    """One DreamerV3-style learner step: world model, then actor, then critic.

    Holds the three losses, their optimisers and the slow-critic updater;
    :meth:`update` takes a replay batch ``[B, T]`` and returns detached
    metrics. ``optimizer="adam"`` uses three Adams (DreamerV3 2023: model lr
    1e-4 / eps 1e-8 / clip 1000; actor and critic 3e-5 / 1e-5 / 100);
    ``"dreamerv3"`` uses TorchRL's :class:`DreamerV3Optimizer` (LaProp + AGC)
    for each. Its ``state_dict`` includes the optimisers, the return
    normaliser and the slow critic, so a checkpoint resumes exactly.
    ``compile=True`` compiles the RSSM's one-step functions
    (:meth:`~torchrl_vta.modules.HierarchicalRSSM.compile_steps`;
    ``compile_mode="reduce-overhead"`` adds CUDA graphs on a GPU);
    ``autocast="bf16"`` runs the loss forwards under bfloat16 autocast.
    ``explore_mode="reward_free"|"mixed"`` adds Plan2Explore
    (:class:`~torchrl_vta.objectives.Plan2Explore`, options in ``explore``): after the
    world model, its ensembles step on the batch's detached posterior rollout (their own
    Adam, ``explore_lr`` / eps 1e-5 / clip ``explore_clip``; sheeprl's ``p2e_dv3``
    values); the actor mixes the task and the intrinsic advantages with
    ``extrinsic_scale`` / ``intrinsic_scale`` (defaults by mode:
    :func:`~torchrl_vta.objectives.exploration.mode_scales`); a second two-hot critic
    (``intrinsic_value_model``, shaped like the agent's, with its own slow target and
    optimiser) learns the intrinsic λ-returns. All of it is in ``state_dict``.
    After each update the RSSM's segment policy anneals its Gumbel temperature to the
    update count (:meth:`~torchrl_vta.modules.SegmentPolicy.anneal`; a no-op without a
    ``schedule``), also on :meth:`load_state_dict`, so a resumed run acts at the same
    temperature.

    Each part steps only if its loss and gradient norm are finite
    (:class:`~torchrl_vta.guard.NonFiniteGuard`): a non-finite part is skipped with
    no parameter, optimiser-state or buffer change, counted (``skipped_model`` /
    ``skipped_actor`` / ``skipped_critic`` metrics) and logged; after
    ``max_skipped_updates`` consecutive updates with a skipped part, ``update``
    raises :class:`~torchrl_vta.guard.NonFiniteUpdateError`. ``updates`` counts
    the updates in which at least one part stepped.

    ``data_parallel`` (a :class:`~torchrl_vta.distributed.DataParallel`) makes it one rank of
    a data-parallel learner: rank 0's state is broadcast at construction, each part's
    gradients are averaged over the ranks before its clip, the guard checks the ranks' mean
    loss, and the running statistics the losses update (surprise histogram, return
    percentiles) come from every rank's batch, so the ranks stay bit-identical.

    Examples:
        >>> import torch
        >>> from torchrl_vta.agent import Agent
        >>> from torchrl_vta.envs import make_env
        >>> env = make_env("maze", image_size=16, max_steps=20)
        >>> agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        >>> learner = Learner(agent, horizon=3)
        >>> batch = env.rollout(8).unsqueeze(0)
        >>> sorted(learner.update(batch))[:3]
        ['actor_entropy', 'boundary_rate', 'continue_mean']
    """

    def __init__(
        self,
        agent: Agent,
        *,
        optimizer: str = "adam",
        model_lr: float = 1e-4,
        actor_lr: float = 3e-5,
        critic_lr: float = 3e-5,
        model_clip: float = 1000.0,
        actor_clip: float = 100.0,
        critic_clip: float = 100.0,
        horizon: int = 15,
        gamma: float = DEFAULT_GAMMA,
        lmbda: float = 0.95,
        entropy_coef: float = 3e-4,
        actor_gradient: str = "auto",
        slow_critic: float = 1.0,
        slow_critic_tau: float = 0.02,
        replay_value_scale: float = 0.0,
        world_model_loss: dict[str, Any] | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        autocast: str | None = None,
        max_skipped_updates: int = 10,
        data_parallel: DataParallel | None = None,
        explore_mode: str = "off",
        explore: dict[str, Any] | None = None,
        extrinsic_scale: float | None = None,
        intrinsic_scale: float | None = None,
        explore_lr: float = 1e-4,
        explore_clip: float = 100.0,
    ):
        super().__init__()
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast={autocast!r} is not one of {AUTOCAST}.")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r} is not one of {OPTIMIZERS}.")
        if replay_value_scale < 0:
            raise ValueError(f"replay_value_scale must be >= 0, got {replay_value_scale}.")
        extrinsic, intrinsic = mode_scales(explore_mode, extrinsic_scale, intrinsic_scale)
        if explore_mode == "off" and explore:
            raise ValueError("explore options were given with explore.mode=off: set "
                             "explore.mode=reward_free|mixed, or drop them.")
        for name, value in (("explore.lr", explore_lr), ("explore.clip", explore_clip)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}.")
        self.agent = agent
        self.world_model_loss = WorldModelLoss(agent.world_model, **(world_model_loss or {}))
        self.explore = None
        exploration = {}
        if explore_mode != "off":
            self.explore = Plan2Explore(agent.world_model, **(explore or {}))
            self.intrinsic_value_model = _renamed_critic(agent.value_model)
            exploration = dict(intrinsic=self.explore,
                               intrinsic_value_model=self.intrinsic_value_model,
                               extrinsic_scale=extrinsic, intrinsic_scale=intrinsic)
        self.actor_loss = ImaginationActorLoss(
            agent.actor,
            agent.world_model,
            value_model=agent.value_model,
            horizon=horizon,
            gamma=gamma,
            lmbda=lmbda,
            entropy_coef=entropy_coef,
            gradient=actor_gradient,
            **exploration,
        )
        self.value_loss = make_value_loss(
            agent.value_model, slow_regularization=slow_critic, actor_loss=self.actor_loss
        )
        self.target_updater = make_target_updater(self.value_loss, tau=slow_critic_tau)
        parts = ["model", "actor", "critic"]
        self.replay_value_scale = replay_value_scale
        self.gamma, self.lmbda = gamma, lmbda
        self.clips = (model_clip, actor_clip, critic_clip)
        self.optimizers = [
            self._optimizer(optimizer, agent.world_model.parameters(), model_lr, 1e-8),
            self._optimizer(optimizer, agent.actor.parameters(), actor_lr, 1e-5),
            self._optimizer(optimizer, agent.value_model.parameters(), critic_lr, 1e-5),
        ]
        if self.explore is not None:
            self.intrinsic_value_loss = make_value_loss(
                self.intrinsic_value_model, slow_regularization=slow_critic,
                actor_loss=self.actor_loss, value_key="intrinsic_state_value",
                logits_key="intrinsic_state_value_logits")
            self.intrinsic_target_updater = make_target_updater(
                self.intrinsic_value_loss, tau=slow_critic_tau)
            self.optimizers += [
                self._optimizer(optimizer, self.explore.parameters(), explore_lr, 1e-5),
                self._optimizer(optimizer, self.intrinsic_value_model.parameters(), critic_lr, 1e-5),
            ]
            self.clips += (explore_clip, critic_clip)
            parts += ["ensemble", "intrinsic_critic"]
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.guard = NonFiniteGuard(parts, max_consecutive=max_skipped_updates)
        self.autocast = autocast
        self.data_parallel = data_parallel or DataParallel.single()
        # Every rank starts from rank 0's parameters and statistics.
        self.data_parallel.broadcast_(self)
        if compile:
            agent.world_model.rssm.compile_steps(mode=compile_mode)

    def _autocast(self):
        device = next(self.agent.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.autocast == "bf16")

    @staticmethod
    def _optimizer(kind, parameters, lr, eps):
        if kind == "adam":
            return torch.optim.Adam(parameters, lr=lr, eps=eps)
        return DreamerV3Optimizer(parameters, lr=lr)

    def _step(self, part, optimizer, loss, parameters, clip, restore) -> torch.Tensor:
        """Backward, clip, and step ``optimizer`` only if ``loss`` and the gradient norm are finite."""
        parameters = list(parameters)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Data-parallel: every rank clips and checks the same mean gradient and loss, so
        # all step or all skip.
        self.data_parallel.average_gradients(parameters)
        grad_norm = _clip(parameters, clip)
        if self.guard.finite(part, self.data_parallel.mean(loss), grad_norm):
            optimizer.step()
        else:
            optimizer.zero_grad(set_to_none=True)
            restore()
        return grad_norm

    def update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """One step on every part; ``batch`` is ``[B, T]`` replay data (this rank's share
        with ``data_parallel``)."""
        with collective_statistics(self.data_parallel):
            return self._update(batch)

    def _update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        model_opt, actor_opt, critic_opt = self.optimizers[:3]
        model_clip, actor_clip, critic_clip = self.clips[:3]
        metrics: dict[str, torch.Tensor] = {}
        skipped_before = self.guard.skipped.clone()

        restore = self.guard.snapshot_buffers(self.world_model_loss)
        with self._autocast():
            model_losses = self.world_model_loss(batch)
        metrics["grad_norm_model"] = self._step(
            "model", model_opt, WorldModelLoss.total(model_losses),
            self.agent.world_model.parameters(), model_clip, restore,
        )
        metrics.update(model_losses.items())

        if self.explore is not None:
            # On the rollout the world-model loss left in the batch (detached inside).
            restore = self.guard.snapshot_buffers(self.explore)
            with self._autocast():
                explore_losses = self.explore(batch)
            metrics["grad_norm_ensemble"] = self._step(
                "ensemble", self.optimizers[3], total_loss(explore_losses),
                self.explore.parameters(), self.clips[3], restore,
            )
            metrics.update(explore_losses.items())

        restore = self.guard.snapshot_buffers(self.actor_loss)
        with self._autocast():
            actor_losses, imagined = self.actor_loss(batch)
        metrics["grad_norm_actor"] = self._step(
            "actor", actor_opt, actor_losses["loss_actor"], self.agent.actor.parameters(),
            actor_clip, restore,
        )
        metrics.update(actor_losses.items())

        restore = self.guard.snapshot_buffers(self.value_loss)
        with self._autocast():
            value_losses, _ = self.value_loss(imagined)
        critic_loss = value_losses["loss_value"]
        if self.replay_value_scale:
            replay = self.actor_loss.replay_value_input(batch, imagined)
            replay_loss = self.value_loss.replay_value_loss(
                replay, horizon=1 / (1 - self.gamma), lmbda=self.lmbda
            )["loss_replay_value"]
            critic_loss = critic_loss + self.replay_value_scale * replay_loss
            metrics["loss_replay_value"] = replay_loss
        metrics["grad_norm_critic"] = self._step(
            "critic", critic_opt, critic_loss, self.agent.value_model.parameters(),
            critic_clip, restore,
        )
        if self.explore is not None:
            restore = self.guard.snapshot_buffers(self.intrinsic_value_loss)
            keys = self.actor_loss.tensor_keys
            # TorchRL's value loss reads its target under "lambda_target".
            intrinsic_input = imagined.select(keys.feature, keys.discount_weight).set(
                "lambda_target", imagined.get(keys.intrinsic_lambda_target))
            with self._autocast():
                intrinsic_losses, _ = self.intrinsic_value_loss(intrinsic_input)
            metrics["grad_norm_intrinsic_critic"] = self._step(
                "intrinsic_critic", self.optimizers[4], intrinsic_losses["loss_value"],
                self.intrinsic_value_model.parameters(), self.clips[4], restore,
            )
            metrics["loss_intrinsic_value"] = intrinsic_losses["loss_value"]
        skipped = self.guard.skipped - skipped_before
        if not skipped[2]:
            self.target_updater.step()
        if self.explore is not None and not skipped[4]:
            self.intrinsic_target_updater.step()
        metrics["loss_value"] = value_losses["loss_value"]
        for part, count in zip(self.guard.parts, skipped):
            metrics[f"skipped_{part}"] = count.float()
        if not bool(skipped.all()):
            self.updates += 1
            self.agent.world_model.rssm.segment_policy.anneal(int(self.updates))
        self.guard.end_update()
        return {key: value.detach() for key, value in metrics.items()}

    def state_dict(self, *args, **kwargs):
        """The module state plus every optimiser's (under ``"optimizers"``): what a
        checkpoint needs to resume the learner bit for bit."""
        state = super().state_dict(*args, **kwargs)
        state["optimizers"] = [opt.state_dict() for opt in self.optimizers]
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Inverse of :meth:`state_dict`; the temperature is re-annealed from the update count."""
        state = dict(state_dict)
        for opt, opt_state in zip(self.optimizers, state.pop("optimizers")):
            opt.load_state_dict(opt_state)
        result = super().load_state_dict(state, strict=strict)
        # The temperature is a function of the update count, not saved state.
        self.agent.world_model.rssm.segment_policy.anneal(int(self.updates))
        return result
