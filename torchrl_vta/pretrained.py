"""Start a run from another run's weights (``init_from=<run>``): fine-tuning after pretraining.

Plan2Explore's protocol trains an agent reward-free, then fine-tunes it on the task from the
same weights. :func:`load_pretrained` copies the newest checkpoint of a finished (or
running) ``vta_dreamer.py`` run into a new learner: the world model, actor and critic with
their slow target and return normaliser, and the Plan2Explore ensembles and intrinsic critic
where both runs have them. Optimiser state, counters, the replay buffer and the guard's skip
counts start afresh: the new run is a new run that begins at the old weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from torchrl_vta.learner import Learner
from torchrl_vta.checkpoint import Checkpointer

__all__ = ["load_pretrained", "pretrained_checkpoints"]

log = logging.getLogger(__name__)

# Per-run state, not weights: a fine-tuning run counts and guards its own updates.
_FRESH = ("updates", "guard.")


def _part(key: str) -> str:
    return ".".join(key.split(".")[:2])


def pretrained_checkpoints(source: str | Path) -> Path:
    """The checkpoint directory of ``source`` (a run directory or its ``checkpoints/``).

    Examples:
        >>> import tempfile
        >>> pretrained_checkpoints(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        FileNotFoundError: init_from=...: no checkpoint there (give a vta_dreamer.py output_dir that has checkpointed).
    """
    path = Path(source)
    for candidate in (path / "checkpoints", path):
        if (candidate / "LATEST").exists() or any(candidate.glob("gen_*")):
            return candidate
    raise FileNotFoundError(f"init_from={source}: no checkpoint there (give a vta_dreamer.py "
                            "output_dir that has checkpointed).")


def load_pretrained(learner: Learner, source: str | Path) -> dict:
    """Load the newest checkpoint of run ``source`` into ``learner`` (and its agent).

    Every weight both learners have is copied; a part only the new learner has (e.g. the
    ensembles when the source ran with ``explore.mode=off``) keeps its initialisation, and a
    part only the source has (e.g. Plan2Explore when fine-tuning with it off) is left
    behind; both are logged. A weight of another shape (another env or model size) raises
    ``ValueError`` naming it. Returns the source's counters (``frames`` ...).

    Examples:
        >>> import tempfile
        >>> from torchrl_vta.envs import make_env
        >>> from torchrl_vta.agent import Agent
        >>> env = make_env("maze", image_size=16, max_steps=20)
        >>> agent = Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2)))
        >>> source = Learner(agent, explore_mode="reward_free", explore=dict(units=16))
        >>> run = tempfile.mkdtemp()
        >>> _ = Checkpointer(f"{run}/checkpoints").save(
        ...     {"learner": source.state_dict(), "counters": {"frames": 7}})
        >>> target = Learner(Agent.from_env(env, preset="test", encoder=dict(cnn_mults=(1, 2))))
        >>> load_pretrained(target, run)["frames"]
        7
        >>> w = "world_model.reward_head.mlp.model.0.weight"
        >>> torch.equal(target.agent.state_dict()[w], agent.state_dict()[w])
        True
    """
    checkpoints = pretrained_checkpoints(source)
    state = Checkpointer(checkpoints).load()
    if state is None or "learner" not in state:
        raise FileNotFoundError(f"init_from={source}: {checkpoints} holds no learner state.")
    theirs = {k: v for k, v in state["learner"].items()
              if k != "optimizers" and not k.startswith(_FRESH)}
    ours = nn.Module.state_dict(learner)
    wrong = sorted(k for k in theirs.keys() & ours.keys() if theirs[k].shape != ours[k].shape)
    if wrong:
        raise ValueError(
            f"init_from={source}: {len(wrong)} weight(s) have another shape here, e.g. "
            f"{wrong[0]} {tuple(theirs[wrong[0]].shape)} there, {tuple(ours[wrong[0]].shape)} "
            "here: fine-tune with the source run's env and model options.")
    missing = sorted({_part(k) for k in ours.keys() - theirs.keys() if not k.startswith(_FRESH)})
    unused = sorted({_part(k) for k in theirs.keys() - ours.keys()})
    if missing:
        log.info("init_from=%s has no %s: those start from their initialisation.", source, missing)
    if unused:
        log.info("init_from=%s: %s not used by this run.", source, unused)
    with torch.no_grad():
        nn.Module.load_state_dict(learner, {**ours, **{k: theirs[k] for k in theirs.keys() & ours.keys()}})
    # The temperature follows the update count, which starts afresh.
    learner.agent.world_model.rssm.segment_policy.anneal(int(learner.updates))
    return dict(state.get("counters", {}))

