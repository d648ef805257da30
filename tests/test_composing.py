"""The recipes of docs/composing.md, run as written, then checked.

Every ``python`` block of the document is announced by ``<!-- recipe: NAME -->``;
each test below executes one block (compiled with the document's own line
numbers, so a traceback points into docs/composing.md) and checks the objects it
leaves behind, beyond the ``assert`` lines the recipe shows its readers.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "composing.md"

_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_RECIPE = re.compile(r"<!-- recipe: (\w+) -->\s*\n```python\n(.*?)```", re.S)


def recipes() -> dict[str, tuple[int, str]]:
    """Recipe name -> (line of the block's first code line, code)."""
    text = DOC.read_text()
    found = {}
    for match in _RECIPE.finditer(text):
        name, code = match.group(1), match.group(2)
        if name in found:
            raise ValueError(f"recipe {name!r} appears twice in {DOC}")
        first_line = text.count("\n", 0, match.start(2)) + 1
        found[name] = (first_line, code)
    return found


@functools.lru_cache(maxsize=None)
def run_recipe(name: str) -> dict:
    """Run recipe ``name`` once per test process and return its namespace."""
    first_line, code = recipes()[name]
    # Pad with blank lines so that line numbers in tracebacks are the document's.
    source = "\n" * (first_line - 1) + code
    namespace: dict = {"__name__": f"composing_{name}"}
    exec(compile(source, str(DOC), "exec"), namespace)
    return namespace


def test_every_python_block_is_a_tested_recipe():
    text = DOC.read_text()
    assert len(_BLOCK.findall(text)) == len(recipes()), (
        "every ```python block of docs/composing.md must follow a <!-- recipe: NAME --> marker"
    )
    assert set(recipes()) == {"ppo", "world_model", "dreamerv3_pieces", "flat_rssm"}


def test_ppo_with_hierarchical_feature_extractor():
    ns = run_recipe("ppo")
    history = ns["history"]
    # 2 collector batches x 2 epochs x 2 minibatches of 32 steps.
    assert len(history) == 8
    for row in history:
        for key in ("loss_objective", "loss_critic", "loss_entropy"):
            assert torch.isfinite(torch.tensor(row[key])), (key, row)
    # The first minibatch is evaluated with the acting parameters: the recomputed
    # feature is the acting one, so PPO's ratio starts at exactly 1.
    assert history[0]["max_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert history[0]["clip_fraction"] == 0.0
    # Every encoder parameter moved.
    encoder = ns["encoder"]
    assert all(not torch.equal(p, ns["initial"][encoder][name])
               for name, p in encoder.named_parameters())
    # The acting policy and the learner share the very same modules, and the
    # collector's batches carry the state each step started from.
    assert ns["policy"][1].rssm is ns["backbone"][1].module.rssm
    assert ns["rssm"].training is False
    batch = ns["batch"]
    torch.testing.assert_close(batch["recurrent_in", "belief"][1:], batch["belief"][:-1])
    torch.testing.assert_close(batch["next", "recurrent_in", "belief"], batch["belief"])


def test_world_model_on_torchrl_replay():
    ns = run_recipe("world_model")
    history, loss_module, world_model = ns["history"], ns["loss_module"], ns["world_model"]
    assert len(history) == 10
    assert {"loss_reco", "loss_reward", "loss_continue", "loss_kl", "loss_kl_abs",
            "loss_boundary"} <= set(history[0])
    # Reconstruction decreases over the steps, not only at the end points.
    reco = [row["loss_reco"] for row in history]
    assert sum(b < a for a, b in zip(reco, reco[1:])) >= 7
    # The rename is in force, the other keys keep their defaults.
    assert loss_module.tensor_keys.reward == ("next", "clipped_reward")
    assert loss_module.tensor_keys.terminated == ("next", "terminated")
    # The replay slices never cross the collector's trajectories.
    batch = ns["batch"]
    traj = batch["collector", "traj_ids"]
    assert (traj == traj[:, :1]).all()
    # The loss left the posterior in the slice for an actor-critic to start from.
    assert batch["next", "abs_state"].shape[:2] == (4, 8)
    assert world_model.rssm.levels == 2


def test_world_model_loss_reads_the_renamed_reward():
    ns = run_recipe("world_model")
    batch, loss_module = ns["batch"].clone(), ns["loss_module"]
    del batch["next", "clipped_reward"]
    with pytest.raises(KeyError, match="clipped_reward"):
        loss_module(batch)


def test_dreamerv3_pieces_on_our_modules():
    ns = run_recipe("dreamerv3_pieces")
    imagined, value_loss = ns["imagined"], ns["value_loss"]
    # The imagination our actor loss hands to TorchRL's value loss.
    assert imagined.batch_size == (24, 5)
    for key in ("feature", "lambda_target", "discount_weight"):
        assert key in imagined.keys()
    assert value_loss.tensor_keys.value == "v"
    assert value_loss.tensor_keys.value_logits == "v_logits"
    # Our loss uses the PercentileValueNorm it was given.
    assert ns["actor_loss"].retnorm is ns["return_norm"]
    # TorchRL's optimizer stepped every world-model parameter that got a gradient.
    moved = [not torch.equal(p, q) for p, q in zip(ns["world_model"].parameters(), ns["initial"])]
    with_grad = [p.grad is not None and bool(p.grad.abs().sum() > 0)
                 for p in ns["world_model"].parameters()]
    assert all(m for m, g in zip(moved, with_grad) if g)
    # The slow critic moved by tau of the gap: new = (1 - tau) * old + tau * online.
    online = dict(value_loss.value_model_params.flatten_keys().items())
    old = dict(ns["slow_before"].flatten_keys().items())
    new = dict(value_loss.target_value_model_params.flatten_keys().items())
    for key, value in new.items():
        expected = 0.98 * old[key] + 0.02 * online[key]
        torch.testing.assert_close(value, expected)


def test_flat_rssm_with_torchrl_actor_on_state_belief():
    ns = run_recipe("flat_rssm")
    rollout, rssm = ns["rollout"], ns["rssm"]
    assert rssm.levels == 1
    # The estimator carried the state: it changes from step to step.
    assert not torch.equal(rollout["belief"][1], rollout["belief"][2])
    # prev_action is the action the policy took (written for the next step).
    torch.testing.assert_close(rollout["prev_action"], rollout["action"].float())
    assert "boundary" not in rollout.keys()  # levels=1 has no boundaries


def test_torchrl_actor_on_state_belief_also_runs_on_the_hierarchy():
    # The doc's remark: with levels=2 the same TorchRL actor runs, seeing [h, s] only.
    from tensordict.nn import TensorDictModule, TensorDictSequential
    from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor

    from torchrl_vta import (
        HierarchicalStateEstimator,
        PreviousActionWriter,
        make_encoder_module,
        make_env,
        make_world_model,
    )

    env = make_env("balls", controlled=True, image_size=32, audio_dim=0, max_steps=50, seed=0)
    model = make_world_model(env.observation_spec, env.action_spec, preset="test", levels=2)
    rssm = model.rssm
    estimator = HierarchicalStateEstimator(rssm)
    env.append_transform(estimator.make_primer())
    actor = ProbabilisticActor(
        TensorDictModule(
            MLP(in_features=rssm.state_dim + rssm.belief_dim, out_features=5, num_cells=[8]),
            in_keys=["state", "belief"],
            out_keys=["logits"],
        ),
        in_keys=["logits"],
        spec=env.action_spec,
        distribution_class=OneHotCategorical,
    )
    policy = TensorDictSequential(
        make_encoder_module(model.encoder), estimator, actor, PreviousActionWriter()
    )
    rollout = env.rollout(4, policy)
    assert rollout["abs_state"].shape == (4, rssm.abs_state_dim) and rssm.abs_state_dim > 0
    assert rollout["boundary"].shape == (4, 1)
