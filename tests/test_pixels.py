"""The one pixel convention: uint8 at the exchange, floats in [0, 1] in every model and loss."""

import math

import pytest
import torch
from tensordict import TensorDict

from torchrl_vta import quantize_pixels, to_uint8, to_unit
from torchrl_vta.original import OriginalVTA, OriginalVTALoss, OriginalVTAModule

SIZES = dict(belief_size=16, feat_size=8, state_size=3)


def test_unit_and_uint8_round_trip_every_value():
    pixels = torch.arange(256, dtype=torch.uint8)
    unit = to_unit(pixels)
    assert unit.dtype == torch.float32 and unit.min() == 0 and unit.max() == 1
    assert torch.equal(to_uint8(unit), pixels)
    floats = torch.rand(10)
    assert to_unit(floats) is floats  # floats are already model space


def test_five_bit_quantisation_in_model_space():
    pixels = torch.arange(256, dtype=torch.uint8)
    centres = quantize_pixels(pixels, dequantize=False)
    assert centres.unique().numel() == 32
    assert centres.min() > 0 and centres.max() < 1
    assert to_uint8(centres).unique().numel() == 32
    noisy = quantize_pixels(pixels.repeat(50))
    # Dequantisation noise stays inside the level: the level is recovered exactly.
    assert torch.equal(torch.floor(noisy * 32), (pixels.repeat(50) // 8).float())
    assert noisy.unique().numel() > 1000
    with pytest.raises(ValueError, match="uint8"):
        quantize_pixels(torch.zeros(3))
    with pytest.raises(ValueError, match="bits"):
        quantize_pixels(pixels, bits=9)


def test_original_vta_reads_and_writes_model_space():
    torch.manual_seed(0)
    module = OriginalVTAModule(OriginalVTA(**SIZES), init_size=2).eval()
    pixels = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
    from_uint8 = module(TensorDict(pixels=pixels, batch_size=[2, 8]))
    as_float = quantize_pixels(pixels, dequantize=False)
    from_float = module(TensorDict(pixels=as_float, batch_size=[2, 8]))
    assert torch.equal(from_uint8["pixels_scaled"], as_float)
    assert torch.equal(from_uint8["reco_pixels"], from_float["reco_pixels"])
    modelled = from_uint8["modelled"][..., 0]
    reco = from_uint8["reco_pixels"][modelled]
    assert reco.min() >= 0 and reco.max() <= 1
    generated = module.model.generate(as_float[:, :3], 4, mode="full").frames
    assert generated.min() >= 0 and generated.max() <= 1


def test_original_likelihood_is_the_papers_on_its_scale():
    # The paper's N(x; Dec, 1) on [-1, 1] is N(x; Dec, 1/2) on [0, 1]: the same squared
    # error term, a normaliser lower by log 2 per value (the change of scale).
    torch.manual_seed(1)
    module = OriginalVTAModule(OriginalVTA(**SIZES), init_size=2).eval()
    loss = OriginalVTALoss(module)
    pixels = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
    td = module(TensorDict(pixels=pixels, batch_size=[2, 8]))
    losses = loss.loss_from_outputs(td)
    modelled = td["modelled"][..., 0]
    paper_target = td["pixels_scaled"][modelled] * 2 - 1
    paper_reco = td["reco_pixels"][modelled] * 2 - 1
    values = paper_target[0].numel()
    paper_nll = (0.5 * (paper_reco - paper_target).square().flatten(1).sum(-1)
                 + values * 0.5 * math.log(2 * math.pi)).mean()
    assert losses["loss_reco"].item() == pytest.approx(
        paper_nll.item() - values * math.log(2), rel=1e-5)
