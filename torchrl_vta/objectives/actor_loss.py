"""The DreamerV3 actor loss on imagined trajectories of the hierarchical RSSM.

:class:`ImaginationActorLoss` imagines from every posterior state of a rolled-out replay
batch (:func:`~torchrl_vta.objectives.imagination.imagine_trajectories`), computes
continue-weighted λ-returns (:mod:`~torchrl_vta.objectives.returns`, TorchRL's
:func:`~torchrl.objectives.value.functional.td_lambda_return_estimate`), normalises them
with TorchRL's :class:`~torchrl.modules.PercentileValueNorm` and returns the REINFORCE or
dynamics-backprop actor loss; its second output feeds the critic's loss
(:func:`~torchrl_vta.objectives.make_value_loss`). With an intrinsic reward
(:class:`~torchrl_vta.objectives.Plan2Explore`) a second critic and return norm join in.
What it reads from the replay batch (start states, replay-value inputs) is
:mod:`~torchrl_vta.objectives.replay_inputs`.

One learner step::

    world_model(batch)                         # posterior under ("next", ...)
    actor_td, imagined = actor_loss(batch)     # imagined: [B*T, H], detached
    value_td, _ = value_loss(imagined)         # reads "lambda_target", "discount_weight"
    replay = actor_loss.replay_value_input(batch, imagined)       # optional,
    replay_td = value_loss.replay_value_loss(replay, horizon=333)  # weight 0.3
    (actor_td["loss_actor"]).backward(); actor_opt.step()
    (value_td["loss_value"] + 0.3 * replay_td["loss_replay_value"]).backward()
    critic_opt.step(); target_updater.step()

TorchRL's :class:`~torchrl.objectives.DreamerV3ActorLoss` could not be reused:
it rolls a :class:`~torchrl.envs.model_based.dreamer.DreamerEnv` whose state
is a single ``state``/``belief`` latent and ``select``-s only those keys, so
the abstract level, the boundaries and the segment counters would be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from tensordict.utils import NestedKey
from torch import distributions as D
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import PercentileValueNorm
from torchrl.modules.value_norm import ValueNorm
from torchrl.objectives import LossModule
from torchrl.objectives.utils import ValueEstimators

from torchrl_vta.distributed import gather_statistics
from torchrl_vta.objectives._checks import _is_real
from torchrl_vta.objectives.imagination import DEFAULT_GAMMA, frozen, imagine_trajectories
from torchrl_vta.objectives.replay_inputs import _START_FIELDS, ReplayInputs
from torchrl_vta.objectives.returns import LambdaReturnEstimator, lambda_returns

__all__ = ["GRADIENTS", "ImaginationActorLoss", "lambda_returns"]

GRADIENTS = ("auto", "reinforce", "dynamics")


class ImaginationActorLoss(ReplayInputs, LambdaReturnEstimator, LossModule):
    """DreamerV3 actor loss on imagined trajectories of the hierarchical RSSM.

    ``forward(tensordict)`` takes a replay batch rolled out by the world model
    (posterior states under ``("next", ...)``, any batch shape, typically
    ``[B, T]``), imagines ``horizon`` steps from each of its ``N`` states
    and returns ``(loss_td, imagined)``:

    * ``loss_td``: ``loss_actor`` and detached diagnostics ``actor_entropy``,
      ``return_mean``, ``return_scale``, ``value_mean``, ``continue_mean``,
      ``return_low``/``return_high`` (percentile norm) and (``levels=2``)
      ``imagined_boundary_rate`` (READ rate of the imagined transitions);
    * ``imagined``: the first ``horizon`` states of the imagined trajectories,
      batch ``[N, horizon]``, detached, with ``lambda_target`` and
      ``discount_weight`` (and every entry of
      :func:`~torchrl_vta.objectives.imagination.imagine_trajectories`):
      the input of :func:`make_value_loss`'s loss.

    λ-returns: ``R_t = r_{t+1} + γ c_{t+1} ((1 - λ) v_{t+1} + λ R_{t+1})``,
    ``R_H = v_H``, with ``v`` the (frozen) online critic. The loss is
    ``-mean(w_t (obj_t + η H[π(·|s_t)]))`` with ``w`` the detached
    ``discount_weight``, η = ``entropy_coef`` and ``obj_t`` either
    ``log π(a_t|s_t) sg((R_t - v_t) / S)`` (REINFORCE) or ``R_t / S``
    (dynamics backprop); ``S = max(1, EMA(P95 - P5))`` from ``return_norm``
    (updated in training mode). No world-model or critic parameter receives
    a gradient; with dynamics backprop the gradient reaches the actor
    through the frozen world model.

    Args:
        actor: a :class:`~tensordict.nn.ProbabilisticTensorDictSequential`
            (e.g. :func:`~torchrl_vta.modules.actor.make_actor`) reading the
            ``feature`` key and writing the ``action`` key.
        world_model: a :class:`~torchrl_vta.modules.world_model.HierarchicalWorldModel`
            (or anything with ``rssm``, ``reward_head`` and ``continue_head``).
            Not registered as a submodule: its parameters are not the actor
            loss's, and ``.to(device)`` does not move it.

    Keyword Args:
        value_model: the critic (:func:`make_value_model`), reading the
            ``feature`` key and writing the ``value`` key. Not registered either.
        horizon (int): imagination length. Defaults to 15.
        gamma (float): discount in ``(0, 1]``. Defaults to ``1 - 1/333``.
        lmbda (float): λ in ``[0, 1]``. Defaults to 0.95.
        entropy_coef (float): entropy bonus η ``>= 0``. Defaults to 3e-4.
        gradient (str): ``"reinforce"``, ``"dynamics"`` or ``"auto"``
            (REINFORCE for categorical actors, dynamics for the others).
        return_norm (ValueNorm, optional): return normaliser; defaults to
            TorchRL's :class:`~torchrl.modules.PercentileValueNorm` with
            quantiles (0.05, 0.95), rate 0.01 (decay 0.99), min scale 1.
        intrinsic (Plan2Explore, optional): an intrinsic reward
            (:class:`~torchrl_vta.objectives.Plan2Explore`). With it, the
            imagined trajectories also carry ``intrinsic_reward``, the
            ``intrinsic_value_model`` (a second critic, reading ``feature`` and
            writing ``intrinsic_state_value``) gives their own λ-returns
            ``intrinsic_lambda_target`` with their own percentile norm, and the
            actor's objective is ``extrinsic_scale`` times the task term plus
            ``intrinsic_scale`` times the intrinsic one. The intrinsic reward
            enters only the intrinsic returns. Not registered (the learner owns it).
        intrinsic_value_model (TensorDictModule, optional): the intrinsic critic
            (required with ``intrinsic``; not registered).
        extrinsic_scale, intrinsic_scale (float): the two advantage weights
            (with ``intrinsic``). Defaults 1.0 and 0.1 (sheeprl's ``p2e_dv3``).

    ``gamma``/``lmbda`` live in a TorchRL ``TDLambdaEstimator`` (see
    :meth:`make_value_estimator`); the returns themselves come from the
    functional TD(λ) with a per-step discount ``γ c_{t+1}``, which the
    estimator's scalar ``gamma`` cannot express.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded, Composite, Unbounded
        >>> from torchrl_vta.modules.actor import make_actor
        >>> from torchrl_vta.modules.world_model import make_world_model
        >>> from torchrl_vta.objectives import make_target_updater, make_value_loss, make_value_model
        >>> action_spec = Bounded(-1, 1, (2,))
        >>> wm = make_world_model(Composite(position=Unbounded((5,))), action_spec, preset="test")
        >>> actor = make_actor(action_spec, wm.rssm.feature_dim, units=16)
        >>> value_model = make_value_model(wm.rssm.feature_dim, units=16)
        >>> loss = ImaginationActorLoss(actor, wm, value_model=value_model, horizon=4)
        >>> batch = wm(TensorDict({"action": torch.zeros(2, 3, 2),
        ...                        "is_init": torch.zeros(2, 3, 1, dtype=torch.bool),
        ...                        "next": {"position": torch.randn(2, 3, 5),
        ...                                 "terminated": torch.zeros(2, 3, 1, dtype=torch.bool)}},
        ...                       [2, 3]))
        >>> loss_td, imagined = loss(batch)
        >>> loss_td["loss_actor"].requires_grad, imagined.batch_size
        (True, torch.Size([6, 4]))
        >>> value_loss = make_value_loss(value_model, actor_loss=loss)
        >>> target_updater = make_target_updater(value_loss)
        >>> value_td, _ = value_loss(imagined)
        >>> value_td["loss_value"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys.

        Replay inputs (defaults follow the world model's rollout keys):

        Attributes:
            belief, state, abs_belief, abs_state, seg_len, seg_num (NestedKey):
                posterior states to imagine from. Defaults ``("next", <name>)``.
            terminated (NestedKey): gives the start continue ``1 - terminated``
                (optional entry). Defaults to ``("next", "terminated")``.
            boundary (NestedKey): posterior READ indicator of the start states
                (optional entry). Defaults to ``("next", "boundary")``.

        Imagined entries:

        Attributes:
            feature, action, action_log_prob, action_entropy, reward,
            continuation, imagined_boundary, imagined_seg_len,
            discount_weight (NestedKey): see
                :func:`~torchrl_vta.objectives.imagination.imagine_trajectories`.
                Defaults ``"feature"``, ``"action"``, ``"action_log_prob"``,
                ``"action_entropy"``, ``"reward"``, ``"continue"``,
                ``"boundary"``, ``"seg_len"``, ``"discount_weight"``.
            value (NestedKey): decoded critic output. Defaults to ``"state_value"``.
            lambda_target (NestedKey): λ-returns. Defaults to ``"lambda_target"``
                (the key TorchRL's value loss reads).
            intrinsic_reward, intrinsic_value, intrinsic_lambda_target (NestedKey):
                the intrinsic stream (with ``intrinsic``). Defaults
                ``"intrinsic_reward"``, ``"intrinsic_state_value"``,
                ``"intrinsic_lambda_target"``.
        """

        belief: NestedKey = ("next", "belief")
        state: NestedKey = ("next", "state")
        abs_belief: NestedKey = ("next", "abs_belief")
        abs_state: NestedKey = ("next", "abs_state")
        seg_len: NestedKey = ("next", "seg_len")
        seg_num: NestedKey = ("next", "seg_num")
        terminated: NestedKey = ("next", "terminated")
        boundary: NestedKey = ("next", "boundary")
        feature: NestedKey = "feature"
        action: NestedKey = "action"
        action_log_prob: NestedKey = "action_log_prob"
        action_entropy: NestedKey = "action_entropy"
        reward: NestedKey = "reward"
        continuation: NestedKey = "continue"
        imagined_boundary: NestedKey = "boundary"
        imagined_seg_len: NestedKey = "seg_len"
        discount_weight: NestedKey = "discount_weight"
        value: NestedKey = "state_value"
        lambda_target: NestedKey = "lambda_target"
        intrinsic_reward: NestedKey = "intrinsic_reward"
        intrinsic_value: NestedKey = "intrinsic_state_value"
        intrinsic_lambda_target: NestedKey = "intrinsic_lambda_target"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda

    def __init__(
        self,
        actor: ProbabilisticTensorDictSequential,
        world_model,
        *,
        value_model: TensorDictModule,
        horizon: int = 15,
        gamma: float = DEFAULT_GAMMA,
        lmbda: float = 0.95,
        entropy_coef: float = 3e-4,
        gradient: str = "auto",
        return_norm: ValueNorm | None = None,
        intrinsic=None,
        intrinsic_value_model: TensorDictModule | None = None,
        extrinsic_scale: float = 1.0,
        intrinsic_scale: float = 0.1,
    ):
        super().__init__()
        if (intrinsic is None) != (intrinsic_value_model is None):
            raise ValueError("intrinsic and intrinsic_value_model come together: an intrinsic "
                             "reward needs its own critic.")
        for name, value in (("extrinsic_scale", extrinsic_scale), ("intrinsic_scale", intrinsic_scale)):
            if not _is_real(value) or not value >= 0:
                raise ValueError(f"{name} must be a float >= 0, got {value!r}.")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}.")
        if not _is_real(entropy_coef) or not entropy_coef >= 0:
            raise ValueError(f"entropy_coef must be a float >= 0, got {entropy_coef!r}.")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient={gradient!r} is not one of {GRADIENTS}.")
        if return_norm is not None and not isinstance(return_norm, ValueNorm):
            raise ValueError(
                f"return_norm must be a torchrl ValueNorm (e.g. PercentileValueNorm), "
                f"got {type(return_norm).__name__}."
            )
        for name in ("rssm", "reward_head", "continue_head"):
            if not hasattr(world_model, name):
                raise ValueError(f"world_model has no {name!r} attribute.")
        self.actor = actor
        # Stashed, not registered: the world model and the critic belong to
        # their own losses/optimisers and must not show up in this loss's
        # parameters (TorchRL's DreamerV3ActorLoss does the same for the critic).
        self.__dict__["world_model"] = world_model
        self.__dict__["value_model"] = value_model
        self.__dict__["intrinsic"] = intrinsic
        self.__dict__["intrinsic_value_model"] = intrinsic_value_model
        self.extrinsic_scale = float(extrinsic_scale) if intrinsic is not None else 1.0
        self.intrinsic_scale = float(intrinsic_scale) if intrinsic is not None else 0.0
        if intrinsic is not None:
            self.intrinsic_retnorm = PercentileValueNorm(quantiles=(0.05, 0.95), rate=0.01,
                                                         min_scale=1.0)
        self.horizon = horizon
        self.entropy_coef = float(entropy_coef)
        self.gradient = gradient if gradient != "auto" else (
            "reinforce" if _is_categorical(actor) else "dynamics"
        )
        self.retnorm = (
            return_norm
            if return_norm is not None
            else PercentileValueNorm(quantiles=(0.05, 0.95), rate=0.01, min_scale=1.0)
        )
        self.out_keys = ["loss_actor"]
        rollout_keys = getattr(getattr(world_model, "rollout", None), "out_key_map", {})
        # set_keys also refreshes in_keys (through _forward_value_estimator_keys).
        self.set_keys(**{n: rollout_keys[n] for n in _START_FIELDS if n in rollout_keys})
        self.make_value_estimator(ValueEstimators.TDLambda, gamma=gamma, lmbda=lmbda)

    # ------------------------------------------------------------ estimator
    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            self._value_estimator.set_keys(value=self.tensor_keys.value)
        self._set_in_keys()

    # -------------------------------------------------------------- forward
    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        keys = self.tensor_keys
        value_model = self.value_model
        if keys.feature not in value_model.in_keys:
            raise ValueError(
                f"The value model reads {value_model.in_keys}, not the imagined feature "
                f"key {keys.feature!r}."
            )
        world_model = self.world_model
        terminated = self._optional(tensordict, keys.terminated)
        # gamma/lmbda are read from the estimator, not kept as attributes:
        # TorchRL's dispatch_value_estimator would prefer a `gamma` attribute
        # over the value being set.
        gamma = float(self.value_estimator.gamma)
        lmbda = float(self.value_estimator.lmbda)
        # LossModule.forward runs under DETERMINISTIC exploration; imagination samples.
        with set_exploration_type(ExplorationType.RANDOM):
            imagined = imagine_trajectories(
                world_model.rssm,
                self.actor,
                world_model.reward_head,
                world_model.continue_head,
                self.start_state(tensordict),
                self.horizon,
                start_continue=None if terminated is None else 1 - terminated.float(),
                start_boundary=self._optional(tensordict, keys.boundary),
                gamma=gamma,
                backprop=self.gradient == "dynamics",
                feature_key=keys.feature,
                action_key=keys.action,
                log_prob_key=keys.action_log_prob,
                entropy_key=keys.action_entropy,
                reward_key=keys.reward,
                continue_key=keys.continuation,
                boundary_key=keys.imagined_boundary,
                seg_len_key=keys.imagined_seg_len,
                discount_key=keys.discount_weight,
            )
        cont = imagined.get(keys.continuation)
        horizon = self.horizon
        streams = [("", self.extrinsic_scale, imagined.get(keys.reward), value_model, keys.value,
                    self.retnorm)]
        if self.intrinsic is not None:
            intrinsic_reward = self.intrinsic.intrinsic_reward(
                imagined.get(keys.feature), imagined.get(keys.action),
                imagined.get(keys.imagined_boundary, None))
            imagined.set(keys.intrinsic_reward, intrinsic_reward)
            streams.append(("intrinsic_", self.intrinsic_scale, intrinsic_reward,
                            self.intrinsic_value_model, keys.intrinsic_value, self.intrinsic_retnorm))
        weight = imagined.get(keys.discount_weight)[..., :horizon, :]
        entropy = imagined.get(keys.action_entropy)[..., :horizon, :]
        objective = 0.0
        diagnostics, targets = {}, []
        for prefix, stream_scale, reward, critic, critic_key, norm in streams:
            with frozen(critic):
                value = critic(imagined.select(*critic.in_keys)).get(critic_key)
            lambda_target = lambda_returns(
                reward[..., 1:, :], value[..., 1:, :], cont[..., 1:, :], gamma, lmbda
            )
            baseline = value[..., :horizon, :]
            if self.training:
                norm.update(gather_statistics(lambda_target))
            scale = norm.scale()
            # Each stream's advantage is normalised by its own return range before mixing.
            if stream_scale:
                if self.gradient == "reinforce":
                    objective = objective + stream_scale * (
                        (lambda_target - baseline) / scale).detach()
                else:
                    objective = objective + stream_scale * lambda_target / scale
            targets.append(lambda_target)
            diagnostics.update({
                f"{prefix}return_mean": lambda_target.mean().detach(),
                f"{prefix}return_scale": scale.detach().reshape(()).clone(),
                f"{prefix}value_mean": baseline.mean().detach(),
            })
            if prefix:
                diagnostics[f"{prefix}reward_mean"] = reward[..., 1:, :].mean().detach()
        if self.gradient == "reinforce":
            objective = imagined.get(keys.action_log_prob)[..., :horizon, :] * objective
        loss = -(weight * (objective + self.entropy_coef * entropy)).mean()
        lambda_target = targets[0]
        diagnostics.update({
            "loss_actor": loss,
            "actor_entropy": entropy.mean().detach(),
            "continue_mean": cont[..., 1:, :].mean().detach(),
        })
        if isinstance(self.retnorm, PercentileValueNorm):
            diagnostics["return_low"] = self.retnorm.low.detach().reshape(()).clone()
            diagnostics["return_high"] = self.retnorm.high.detach().reshape(()).clone()
        if keys.imagined_boundary in imagined.keys(True):
            diagnostics["imagined_boundary_rate"] = (
                imagined.get(keys.imagined_boundary)[..., 1:, :].mean().detach()
            )
        out = imagined[..., :horizon].detach()
        out.set(keys.lambda_target, lambda_target.detach())
        if self.intrinsic is not None:
            out.set(keys.intrinsic_lambda_target, targets[1].detach())
        return TensorDict(diagnostics, []), out


def _is_categorical(actor: ProbabilisticTensorDictSequential) -> bool:
    for module in actor.modules():
        if isinstance(module, ProbabilisticTensorDictModule):
            return issubclass(module.distribution_class, (D.Categorical, D.OneHotCategorical))
    raise ValueError("actor has no ProbabilisticTensorDictModule: it cannot be a policy.")

