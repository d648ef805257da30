"""The original VTA as a TensorDict module: uint8 ``pixels`` in, every output of the model
under :data:`DEFAULT_VTA_KEYS` out."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from torchrl_vta.modules.latent import _check_int
from torchrl_vta.original.model import OriginalVTA, VTAOutput
from torchrl_vta.pixels import quantize_pixels

__all__ = ["DEFAULT_VTA_KEYS", "OriginalVTAModule"]


DEFAULT_VTA_KEYS: dict[str, NestedKey] = {
    "pixels_scaled": "pixels_scaled",
    "reconstruction": "reco_pixels",
    **{name: name for name in VTAOutput._fields if name != "reconstruction"},
}


class OriginalVTAModule(TensorDictModuleBase):
    """TensorDict wrapper of :class:`OriginalVTA` for windows ``[*B, T]``.

    Reads ``pixels_key`` (uint8 ``[*B, T, C, 32, 32]``, reduced to ``bits`` bits in model
    space by :func:`~torchrl_vta.pixels.quantize_pixels`, with dequantisation noise in
    training mode and level centres in eval mode; float pixels are taken as already in model
    space, ``[0, 1]``) and writes the keys of
    :data:`DEFAULT_VTA_KEYS` (renamed by ``out_keys``).

    Args:
        model: the tensor-level model.

    Keyword Args:
        pixels_key: input key. Defaults to ``"pixels"``.
        init_size: context frames at each end of a window. Defaults to 5.
        bits: quantisation bits. Defaults to 5.
        limit_posterior: also force the posterior boundaries by the segment limits
            (evaluation "with forcing"). Defaults to ``False`` (the original).
        out_keys: renames, ``{field: key}`` for fields of :data:`DEFAULT_VTA_KEYS`.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = OriginalVTAModule(OriginalVTA(belief_size=16, feat_size=16, state_size=4),
        ...                            init_size=2)
        >>> pixels = torch.randint(0, 256, (3, 7, 3, 32, 32), dtype=torch.uint8)
        >>> td = module(TensorDict(pixels=pixels, batch_size=[3, 7]))
        >>> td["reco_pixels"].shape, td["boundary"].shape
        (torch.Size([3, 7, 3, 32, 32]), torch.Size([3, 7, 1]))
    """

    def __init__(
        self,
        model: OriginalVTA,
        *,
        pixels_key: NestedKey = "pixels",
        init_size: int = 5,
        bits: int = 5,
        limit_posterior: bool = False,
        out_keys: dict[str, NestedKey] | None = None,
    ):
        super().__init__()
        if not isinstance(model, OriginalVTA):
            raise ValueError(f"model must be an OriginalVTA, got {type(model).__name__}.")
        _check_int("init_size", init_size, minimum=0)
        _check_int("bits", bits)
        unknown = sorted(set(out_keys or {}) - set(DEFAULT_VTA_KEYS))
        if unknown:
            raise ValueError(f"out_keys names unknown fields {unknown}; valid: {sorted(DEFAULT_VTA_KEYS)}.")
        self.model = model
        self.pixels_key = pixels_key
        self.init_size = init_size
        self.bits = bits
        self.limit_posterior = bool(limit_posterior)
        self.key_map = {**DEFAULT_VTA_KEYS, **(out_keys or {})}
        self.in_keys = [pixels_key]
        self.out_keys = list(self.key_map.values())

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """Model-space input from stored pixels (see the class docstring).

        Examples:
            >>> module = OriginalVTAModule(OriginalVTA(belief_size=8, feat_size=8, state_size=2))
            >>> _ = module.eval()
            >>> module.preprocess(torch.full((1,), 255, dtype=torch.uint8)).item()
            0.984375
        """
        if pixels.dtype == torch.uint8:
            return quantize_pixels(pixels, self.bits, dequantize=self.training)
        return pixels

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = self.preprocess(tensordict.get(self.pixels_key))
        out = self.model(obs, init_size=self.init_size, limit_posterior=self.limit_posterior)
        tensordict.set(self.key_map["pixels_scaled"], obs)
        for name, value in zip(VTAOutput._fields, out):
            tensordict.set(self.key_map[name], value)
        return tensordict
