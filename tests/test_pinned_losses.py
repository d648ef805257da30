"""World-model losses on a fixed batch, pinned before the N-level redesign (issue 15).

The redesign must keep ``levels=1`` and ``levels=2`` numerically where they are: each term
of ``WorldModelLoss`` on fixed weights and a fixed batch, for the ``learned`` and
``surprise`` boundary kinds, equals the value pinned in ``tests/pinned/pinned_losses.json``.
The weights are stored too (``tests/pinned/pinned_<case>.pt``, preset ``test``), so the pin
does not depend on the order in which modules draw their initial values: a redesign that
renames parameters maps the stored keys onto its own. The losses are computed in eval mode,
where the filter is noise-free and no random draw enters. Regenerate only for an intended
change of behaviour (``python tests/test_pinned_losses.py``) and say so in the commit.
"""

import json
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Composite, Unbounded

from torchrl_vta.modules.world_model import make_world_model
from torchrl_vta.objectives import WorldModelLoss

PINNED = Path(__file__).parent / "pinned" / "pinned_losses.json"
CASES = [(1, "learned"), (2, "learned"), (2, "surprise")]
B, T = 3, 10


def _batch() -> TensorDict:
    gen = torch.Generator().manual_seed(1)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[1, 6] = True
    return TensorDict(
        {
            "action": torch.rand(B, T, 2, generator=gen) * 2 - 1,
            "is_init": is_init,
            "next": {
                "pixels": (torch.rand(B, T, 3, 1, 1, generator=gen) * 255).expand(B, T, 3, 16, 16)
                .to(torch.uint8),
                "position": torch.randn(B, T, 5, generator=gen) * 3,
                "reward": torch.randn(B, T, 1, generator=gen),
                "terminated": torch.rand(B, T, 1, generator=gen) < 0.1,
            },
        },
        [B, T],
    )


def _model(levels: int, kind: str):
    spec = Composite(pixels=Bounded(0, 255, (3, 16, 16), dtype=torch.uint8), position=Unbounded((5,)))
    rssm = {} if levels == 1 else {"boundary_kind": kind}
    return make_world_model(spec, Bounded(-1, 1, (2,)), preset="test", levels=levels, rssm=rssm)


def _losses(model) -> dict[str, float]:
    loss = WorldModelLoss(model).eval()
    with torch.no_grad():
        out = loss(_batch())
    return {key: float(value) for key, value in sorted(out.items())}


def _key(levels: int, kind: str) -> str:
    return f"levels={levels},kind={kind}"


def _weights(levels: int, kind: str) -> Path:
    return PINNED.parent / f"pinned_levels{levels}_{kind}.pt"


@pytest.mark.parametrize("levels, kind", CASES)
def test_losses_equal_the_pinned_values(levels, kind):
    pinned = json.loads(PINNED.read_text())[_key(levels, kind)]
    model = _model(levels, kind)
    model.load_state_dict(torch.load(_weights(levels, kind), weights_only=True))
    losses = _losses(model)
    assert set(losses) == set(pinned)
    for name, value in pinned.items():
        assert losses[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_the_pin_can_fail():
    # Other weights give other losses: the comparison above is not vacuous.
    pinned = json.loads(PINNED.read_text())[_key(2, "learned")]
    torch.manual_seed(123)
    losses = _losses(_model(2, "learned"))
    assert losses["loss_reco"] != pytest.approx(pinned["loss_reco"], rel=1e-4)


if __name__ == "__main__":
    values = {}
    for case in CASES:
        torch.manual_seed(0)
        model = _model(*case)
        torch.save(model.state_dict(), _weights(*case))
        values[_key(*case)] = _losses(model)
    PINNED.write_text(json.dumps(values, indent=1) + "\n")
