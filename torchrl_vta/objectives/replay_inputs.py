"""What :class:`~torchrl_vta.objectives.actor_loss.ImaginationActorLoss` reads from a replay
batch rolled out by the world model: the posterior states imagination starts from
(:meth:`ReplayInputs.start_state`, and the loss's ``in_keys``), and the inputs of TorchRL's
replay-value loss, which trains the critic on those same states
(:meth:`ReplayInputs.replay_value_input`).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from torchrl_vta.modules.rssm_state import RSSMState

__all__ = ["ReplayInputs"]

_START_FIELDS = ("belief", "state", "abs_belief", "abs_state", "seg_len", "seg_num")


class ReplayInputs:
    """The replay side of :class:`~torchrl_vta.objectives.actor_loss.ImaginationActorLoss`
    (a mixin of that loss: it reads ``world_model.rssm`` and the ``tensor_keys``).

    Example:
        >>> from torchrl_vta.objectives import ImaginationActorLoss
        >>> issubclass(ImaginationActorLoss, ReplayInputs)
        True
    """

    def _start_fields(self) -> tuple[str, ...]:
        if self.world_model.rssm.levels >= 2:
            return _START_FIELDS
        return tuple(name for name in _START_FIELDS if not name.startswith("abs_"))

    def _set_in_keys(self) -> None:
        keys = self.tensor_keys
        self.in_keys = [getattr(keys, name) for name in self._start_fields()] + [
            keys.terminated,
            keys.boundary,
        ]

    def start_state(self, tensordict: TensorDictBase) -> RSSMState:
        """The posterior states of ``tensordict``, flattened to ``[N, ...]`` and detached.

        ``boundary_context`` (unused by ``img_step``) is zeros; with
        ``levels=1`` the abstract fields are empty.

        Examples:
            >>> import torch
            >>> from tensordict import TensorDict
            >>> from torchrl.data import OneHot, Composite, Unbounded
            >>> from torchrl_vta.modules.actor import make_actor
            >>> from torchrl_vta.modules.world_model import make_world_model
            >>> from torchrl_vta.objectives import ImaginationActorLoss, make_value_model
            >>> wm = make_world_model(Composite(position=Unbounded((5,))), OneHot(3), preset="test")
            >>> dim = wm.rssm.feature_dim
            >>> loss = ImaginationActorLoss(make_actor(OneHot(3), dim, units=16), wm,
            ...                             value_model=make_value_model(dim, units=16))
            >>> batch = wm(TensorDict({"action": torch.zeros(2, 4, 3),
            ...                        "is_init": torch.ones(2, 4, 1, dtype=torch.bool),
            ...                        "next": {"position": torch.randn(2, 4, 5)}}, [2, 4]))
            >>> loss.start_state(batch).abs_state.shape
            torch.Size([8, 4])
        """
        rssm = self.world_model.rssm
        batch = tensordict.batch_size
        n = batch.numel()
        fields = {}
        for name in self._start_fields():
            key = getattr(self.tensor_keys, name)
            value = tensordict.get(key, None)
            if value is None:
                raise KeyError(
                    f"ImaginationActorLoss needs the posterior entry {key!r} ({name}): "
                    "run the world model on the batch first, or rename it with set_keys."
                )
            fields[name] = value.detach().reshape(n, *value.shape[len(batch):])
        belief = fields["belief"]
        start = rssm.initial_state([n], belief.device, belief.dtype)
        return start._replace(**fields)

    def _optional(self, tensordict: TensorDictBase, key: NestedKey) -> torch.Tensor | None:
        value = tensordict.get(key, None)
        if value is None:
            return None
        return value.detach().reshape(tensordict.batch_size.numel(), 1)

    def replay_value_input(
        self, tensordict: TensorDictBase, imagined: TensorDictBase, *, detach: bool = True
    ) -> TensorDict:
        """Inputs of TorchRL's ``DreamerV3ValueLoss.replay_value_loss`` for this batch.

        The replay-value loss (DreamerV3 2025, weight 0.3) trains the critic
        on the replay posterior states themselves, towards λ-returns along the
        replay sequence that bootstrap from each state's first imagined
        return. Returns a TensorDict with the batch of ``tensordict``
        (``[B, T]``): the feature (detached unless ``detach=False``),
        ``"bootstrap"`` (``imagined["lambda_target"][:, 0]``) and the replay
        ``("next", "reward" / "done" / "terminated")``. Call
        ``value_loss.replay_value_loss(out, horizon=1 / (1 - gamma), lmbda=lmbda)``.

        Examples:
            >>> import torch
            >>> from tensordict import TensorDict
            >>> from torchrl.data import OneHot, Composite, Unbounded
            >>> from torchrl_vta.modules.actor import make_actor
            >>> from torchrl_vta.modules.world_model import make_world_model
            >>> from torchrl_vta.objectives import (ImaginationActorLoss, make_target_updater,
            ...                                     make_value_loss, make_value_model)
            >>> wm = make_world_model(Composite(position=Unbounded((5,))), OneHot(3), preset="test")
            >>> dim = wm.rssm.feature_dim
            >>> value_model = make_value_model(dim, units=16)
            >>> loss = ImaginationActorLoss(make_actor(OneHot(3), dim, units=16), wm,
            ...                             value_model=value_model, horizon=3)
            >>> zeros = torch.zeros(2, 4, 1, dtype=torch.bool)
            >>> batch = wm(TensorDict({"action": torch.eye(3)[torch.zeros(2, 4, dtype=torch.long)],
            ...                        "is_init": zeros, "next": {"position": torch.randn(2, 4, 5),
            ...                        "reward": torch.ones(2, 4, 1), "done": zeros,
            ...                        "terminated": zeros}}, [2, 4]))
            >>> _, imagined = loss(batch)
            >>> replay = loss.replay_value_input(batch, imagined)
            >>> value_loss = make_value_loss(value_model)
            >>> target_updater = make_target_updater(value_loss)
            >>> value_loss.replay_value_loss(replay, horizon=333.0)["loss_replay_value"].shape
            torch.Size([])
        """
        keys = self.tensor_keys
        rssm = self.world_model.rssm
        batch = tensordict.batch_size
        names = ("belief", "state") + (("abs_belief", "abs_state") if rssm.levels >= 2 else ())
        feature = torch.cat([tensordict.get(getattr(keys, name)) for name in names], -1)
        bootstrap = imagined.get(keys.lambda_target)[..., 0, :].reshape(*batch, 1)
        out = TensorDict(
            {
                keys.feature: feature.detach() if detach else feature,
                "bootstrap": bootstrap.detach(),
            },
            batch,
        )
        for name in ("reward", "done", "terminated"):
            value = tensordict.get(("next", name), None)
            if value is None:
                raise KeyError(f"replay_value_input needs the replay entry ('next', {name!r}).")
            out.set(("next", name), value)
        return out

