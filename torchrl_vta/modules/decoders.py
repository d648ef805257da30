"""Observation decoders mirroring :class:`~torchrl_vta.modules.encoders.MultiEncoder`.

:class:`MultiDecoder` predicts every encoded observation key from a latent
feature with one network per path, built from TorchRL's DreamerV3 blocks:

- ``cnn``: one :class:`~torchrl.modules.DreamerV3ImageDecoder` for all image
  keys (channels concatenated, then split back), predicting pixels on the
  ``[0, 1]`` scale (unbounded);
- ``mlp``: one :class:`~torchrl.modules.DreamerV3MLP` predicting ``symlog(x)``
  of every vector key;
- ``audio``: one :class:`~torchrl.modules.DreamerV3MLP` predicting raw audio;
- ``set``: one :class:`~torchrl_vta.modules.sets.SetDecoder` per set key ``[K, F]``,
  predicting every slot's columns and an existence logit (scored on the slots the
  key's mask marks, see :meth:`~torchrl_vta.modules.sets.SetDecoder.loss`).

:meth:`MultiDecoder.loss` gives each key's per-sample loss (image MSE summed
over pixels, vector symlog-MSE summed over the vector, audio MSE summed;
:mod:`~torchrl_vta.modules.reconstruction`), and :func:`make_decoder_module` wraps the
decoder in a :class:`~tensordict.nn.TensorDictModule`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey, unravel_key
from torch import nn
from torchrl.modules import DreamerV3ImageDecoder, DreamerV3MLP

from torchrl_vta.modules.sets import SetDecoder
from torchrl_vta.modules.encoders import (
    PATHS,
    MultiEncoder,
    _positive_int,
    key_name,
    prefix_key,
)
from torchrl_vta.modules.reconstruction import ReconstructionLoss

__all__ = ["MultiDecoder", "make_decoder_module"]


class MultiDecoder(ReconstructionLoss, nn.Module):
    """Predict observation keys from features ``[*B, in_features]``.

    Outputs follow :attr:`out_keys`: image keys, then vector keys, then audio
    keys, each group in ``routing`` order. Predictions live where the loss
    compares them: images on the ``[0, 1]`` scale, vectors in symlog space
    (apply :func:`~torchrl.modules.functional.symexp` for raw values), audio raw.

    Args:
        key_shapes (mapping): observation key -> event shape (``[C, H, W]`` for
            images, ``[N]`` for vectors and audio).
        routing (mapping): observation key -> ``"cnn"``, ``"mlp"`` or
            ``"audio"``; the keys to decode. Image keys must share ``H, W``.
        in_features (int): size of the (concatenated) input features.

    Keyword Args:
        cnn_depth (int): base channel count. Defaults to 32.
        cnn_mults (sequence of int): channel multiplier per stage, mirrored
            from the encoder; ``H`` and ``W`` must be divisible by
            ``2 ** len(cnn_mults)``. Defaults to ``(2, 3, 4, 4)``.
        cnn_kernel (int): odd transposed-convolution kernel size. Defaults to 5.
        cnn_blocks (int): feature blocks of the image decoder's input
            projection (DreamerV3's block-linear layer; ``1`` = dense). Must
            divide ``in_features``. Defaults to 8.
        mlp_layers (int): hidden layers of the vector MLP. Defaults to 2.
        mlp_units (int): width of the vector MLP. Defaults to 256.
        audio_layers (int, optional): hidden layers of the audio MLP.
            Defaults to ``mlp_layers``.
        audio_units (int, optional): width of the audio MLP. Defaults to
            ``mlp_units``.
        set_discrete (mapping, optional): ``{column: cardinality}`` of the set keys'
            integer-valued columns.
        set_units (int): hidden width of the set decoders. Defaults to 128.
        set_mask_keys (mapping, optional): set key -> the key of its mask among the loss
            targets (``None``: every slot exists).
        set_existence_scale (float): weight of the sets' existence BCE against their
            reconstruction in :meth:`loss`. Defaults to 1.
        device (torch.device, optional): device of the parameters.

    Attributes:
        out_keys (list of NestedKey): decoded observation keys, ``forward`` order.
        cnn_out_keys, mlp_out_keys, audio_out_keys, set_out_keys (list of NestedKey): keys
            per path.
        routing (dict), key_shapes (dict): as given, restricted to ``out_keys``.

    Examples:
        >>> import torch
        >>> decoder = MultiDecoder(
        ...     {"pixels": (3, 16, 16), "position": (4,)},
        ...     {"pixels": "cnn", "position": "mlp"},
        ...     in_features=8, cnn_depth=2, cnn_mults=(1, 1), mlp_units=8,
        ... )
        >>> pixels, position = decoder(torch.randn(5, 7, 8))
        >>> pixels.shape, position.shape
        (torch.Size([5, 7, 3, 16, 16]), torch.Size([5, 7, 4]))
        >>> targets = {"pixels": torch.zeros(5, 7, 3, 16, 16, dtype=torch.uint8),
        ...            "position": torch.zeros(5, 7, 4)}
        >>> losses = decoder.loss({"pixels": pixels, "position": position}, targets)
        >>> losses["pixels"].shape
        torch.Size([5, 7])
    """

    def __init__(
        self,
        key_shapes: Mapping[NestedKey, Sequence[int]],
        routing: Mapping[NestedKey, str],
        in_features: int,
        *,
        cnn_depth: int = 32,
        cnn_mults: Sequence[int] = (2, 3, 4, 4),
        cnn_kernel: int = 5,
        cnn_blocks: int = 8,
        mlp_layers: int = 2,
        mlp_units: int = 256,
        audio_layers: int | None = None,
        audio_units: int | None = None,
        set_discrete: Mapping[int, int] | None = None,
        set_units: int = 128,
        set_mask_keys: Mapping[NestedKey, NestedKey | None] | None = None,
        set_existence_scale: float = 1.0,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        shapes = {unravel_key(k): torch.Size(v) for k, v in key_shapes.items()}
        routing = {unravel_key(k): v for k, v in routing.items()}
        if not routing:
            raise ValueError("routing must name at least one key to decode, got {}.")
        for key, path in routing.items():
            if path not in PATHS:
                raise ValueError(
                    f"routing[{key_name(key)!r}]={path!r} is not one of {PATHS}."
                )
            if key not in shapes:
                raise ValueError(
                    f"routing names {key_name(key)!r}, which has no entry in key_shapes."
                )
            expected = {"cnn": 3, "set": 2}.get(path, 1)
            if len(shapes[key]) != expected:
                raise ValueError(
                    f"key_shapes[{key_name(key)!r}]={tuple(shapes[key])} does not fit "
                    f"the {path!r} path, which decodes {expected}-D observations."
                )
        self.cnn_out_keys = [k for k, p in routing.items() if p == "cnn"]
        self.mlp_out_keys = [k for k, p in routing.items() if p == "mlp"]
        self.audio_out_keys = [k for k, p in routing.items() if p == "audio"]
        self.set_out_keys = [k for k, p in routing.items() if p == "set"]
        self.out_keys = (self.cnn_out_keys + self.mlp_out_keys + self.audio_out_keys
                         + self.set_out_keys)
        self.set_mask_keys = {unravel_key(k): None if v is None else unravel_key(v)
                              for k, v in (set_mask_keys or {}).items()}
        self.routing = {k: routing[k] for k in self.out_keys}
        self.key_shapes = {k: shapes[k] for k in self.out_keys}
        audio_layers = mlp_layers if audio_layers is None else audio_layers
        audio_units = mlp_units if audio_units is None else audio_units

        self.cnn = self.mlp = self.audio = None
        if self.cnn_out_keys:
            self.cnn = self._image_decoder(
                cnn_depth, tuple(cnn_mults), cnn_kernel, cnn_blocks, device
            )
        if self.mlp_out_keys:
            self.mlp = DreamerV3MLP(
                self.in_features,
                self._width(self.mlp_out_keys),
                depth=_positive_int("mlp_layers", mlp_layers),
                num_cells=_positive_int("mlp_units", mlp_units),
                device=device,
            )
        if self.audio_out_keys:
            self.audio = DreamerV3MLP(
                self.in_features,
                self._width(self.audio_out_keys),
                depth=_positive_int("audio_layers", audio_layers),
                num_cells=_positive_int("audio_units", audio_units),
                device=device,
            )

        self.set_discrete = dict(set_discrete or {})
        self.set_units = _positive_int("set_units", set_units)
        if not (isinstance(set_existence_scale, (int, float)) and 0 <= set_existence_scale < math.inf):
            raise ValueError(f"set_existence_scale must be a finite number >= 0, got "
                             f"{set_existence_scale!r}.")
        self.set_existence_scale = float(set_existence_scale)
        self.sets = nn.ModuleList(
            SetDecoder(self.in_features, slots=self.key_shapes[k][0],
                       features=self.key_shapes[k][1], discrete=self.set_discrete,
                       units=self.set_units, device=device)
            for k in self.set_out_keys
        )

    def _image_decoder(self, depth, mults, kernel, blocks, device) -> DreamerV3ImageDecoder:
        _positive_int("cnn_depth", depth)
        _positive_int("cnn_kernel", kernel)
        _positive_int("cnn_blocks", blocks)
        if not mults:
            raise ValueError("cnn_mults must name at least one stage, got ().")
        for mult in mults:
            _positive_int("cnn_mults", mult)
        shapes = [self.key_shapes[k] for k in self.cnn_out_keys]
        height, width = shapes[0][1:]
        factor = 2 ** len(mults)
        for key, shape in zip(self.cnn_out_keys, shapes):
            if tuple(shape[1:]) != (height, width):
                raise ValueError(
                    f"Image keys share one decoder and must have the same height and "
                    f"width; {key_name(key)!r} is {tuple(shape)}, "
                    f"{key_name(self.cnn_out_keys[0])!r} is {tuple(shapes[0])}."
                )
            if height % factor or width % factor:
                raise ValueError(
                    f"Image {key_name(key)!r} of shape {tuple(shape)} cannot be decoded "
                    f"with cnn_mults={mults}: height and width must be divisible by "
                    f"2 ** len(cnn_mults) = {factor}. Use fewer stages."
                )
        projection = depth * mults[-1] * (height // factor) * (width // factor)
        if blocks > 1 and (self.in_features % blocks or projection % blocks):
            raise ValueError(
                f"cnn_blocks={blocks} must divide in_features={self.in_features} and the "
                f"decoder's first feature map size {projection}; pick a divisor or "
                f"cnn_blocks=1 (dense projection)."
            )
        channels = sum(shape[0] for shape in shapes)
        return DreamerV3ImageDecoder(
            self.in_features,
            (channels, height, width),
            depth=depth,
            mults=mults,
            kernel_size=kernel,
            num_blocks=blocks,
            device=device,
        )

    @classmethod
    def from_encoder(
        cls,
        encoder: MultiEncoder,
        in_features: int,
        *,
        cnn_depth: int | None = None,
        cnn_mults: Sequence[int] | None = None,
        cnn_kernel: int | None = None,
        cnn_blocks: int = 8,
        mlp_layers: int | None = None,
        mlp_units: int | None = None,
        audio_layers: int | None = None,
        audio_units: int | None = None,
        set_existence_scale: float = 1.0,
        device: torch.device | str | None = None,
    ) -> MultiDecoder:
        """Build the decoder of every key ``encoder`` reads, with its sizes by default.

        Arguments left ``None`` copy the encoder's value; the rest are as in
        :class:`MultiDecoder`.

        Examples:
            >>> import torch
            >>> from torchrl.data import Composite, Unbounded
            >>> spec = Composite(position=Unbounded((4,)), audio=Unbounded((6,)))
            >>> encoder = MultiEncoder(spec, mlp_units=8)
            >>> decoder = MultiDecoder.from_encoder(encoder, in_features=16)
            >>> decoder.routing
            {'position': 'mlp', 'audio': 'audio'}
            >>> [p.shape for p in decoder(torch.randn(3, 16))]
            [torch.Size([3, 4]), torch.Size([3, 6])]
        """
        if not isinstance(encoder, MultiEncoder):
            raise ValueError(
                f"encoder must be a MultiEncoder, got {type(encoder).__name__}."
            )

        def pick(value, default):
            return default if value is None else value

        return cls(
            encoder.key_shapes,
            encoder.routing,
            in_features,
            cnn_depth=pick(cnn_depth, encoder.cnn_depth),
            cnn_mults=pick(cnn_mults, encoder.cnn_mults),
            cnn_kernel=pick(cnn_kernel, encoder.cnn_kernel),
            cnn_blocks=cnn_blocks,
            mlp_layers=pick(mlp_layers, encoder.mlp_layers),
            mlp_units=pick(mlp_units, encoder.mlp_units),
            audio_layers=pick(audio_layers, encoder.audio_layers),
            audio_units=pick(audio_units, encoder.audio_units),
            set_discrete=encoder.set_discrete,
            set_units=encoder.set_units,
            set_mask_keys=encoder.set_mask_keys,
            set_existence_scale=set_existence_scale,
            device=device,
        )

    def _width(self, keys: list) -> int:
        return sum(self.key_shapes[k][0] for k in keys)

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return one prediction per key of :attr:`out_keys`; inputs are concatenated."""
        value = features[0] if len(features) == 1 else torch.cat(features, -1)
        if value.shape[-1] != self.in_features:
            raise ValueError(
                f"MultiDecoder was built for in_features={self.in_features}, got "
                f"features of shape {tuple(value.shape)}."
            )
        outputs = []
        if self.cnn is not None:
            sizes = [self.key_shapes[k][0] for k in self.cnn_out_keys]
            outputs.extend(self.cnn(value).split(sizes, dim=-3))
        for module, keys in ((self.mlp, self.mlp_out_keys), (self.audio, self.audio_out_keys)):
            if module is not None:
                sizes = [self.key_shapes[k][0] for k in keys]
                outputs.extend(module(value).split(sizes, dim=-1))
        outputs.extend(decoder(value) for decoder in self.sets)
        return tuple(outputs)


def make_decoder_module(
    decoder: MultiDecoder,
    *,
    in_keys: NestedKey | Sequence[NestedKey] = ("state", "belief"),
    key_prefix: NestedKey | None = None,
    out_prefix: str = "reco_",
    out_keys: Mapping[NestedKey, NestedKey] | None = None,
) -> TensorDictModule:
    """Wrap ``decoder`` in a :class:`~tensordict.nn.TensorDictModule`.

    The module concatenates ``in_keys`` into the decoder's input and writes the
    prediction of observation key ``k`` to ``out_prefix + k`` (for a nested
    key, the prefix goes on its last name: ``("a", "b")`` -> ``("a", "reco_b")``),
    unless ``out_keys`` maps ``k`` elsewhere. ``key_prefix`` is then prepended to
    every key read and written (``"next"`` as in TorchRL's DreamerV3 world model).
    ``module.out_keys`` follows ``decoder.out_keys``, so
    ``dict(zip(decoder.out_keys, module.out_keys))`` maps observation keys to
    prediction keys, e.g. to feed :meth:`MultiDecoder.loss`.

    Args:
        decoder (MultiDecoder): the tensor-level decoder.

    Keyword Args:
        in_keys (NestedKey or sequence of NestedKey): feature keys, concatenated
            in this order. A tuple is read as several keys; put a nested key in
            a list: ``[("latent", "feature")]``. Defaults to ``("state", "belief")``.
        key_prefix (NestedKey, optional): prefix of all keys. Defaults to ``None``.
        out_prefix (str): prefix of the prediction names. Defaults to ``"reco_"``.
        out_keys (mapping, optional): observation key -> prediction key,
            overriding ``out_prefix`` for the keys listed.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> decoder = MultiDecoder({"position": (4,)}, {"position": "mlp"}, 6, mlp_units=8)
        >>> module = make_decoder_module(decoder, key_prefix="next")
        >>> module.in_keys, module.out_keys
        ([('next', 'state'), ('next', 'belief')], [('next', 'reco_position')])
        >>> td = TensorDict({("next", "state"): torch.randn(2, 2),
        ...                  ("next", "belief"): torch.randn(2, 4)}, [2])
        >>> module(td)["next", "reco_position"].shape
        torch.Size([2, 4])
    """
    if not isinstance(decoder, MultiDecoder):
        raise ValueError(f"decoder must be a MultiDecoder, got {type(decoder).__name__}.")
    if isinstance(in_keys, str):
        in_keys = [in_keys]
    if not in_keys:
        raise ValueError("in_keys must name at least one feature key, got an empty sequence.")
    if not isinstance(out_prefix, str):
        raise ValueError(f"out_prefix must be a string, got {out_prefix!r}.")
    renames = {unravel_key(k): unravel_key(v) for k, v in (out_keys or {}).items()}
    unknown = [key_name(k) for k in renames if k not in decoder.out_keys]
    if unknown:
        raise ValueError(
            f"out_keys renames {unknown}, which the decoder does not predict; its keys "
            f"are {[key_name(k) for k in decoder.out_keys]}."
        )

    def default_out(key: NestedKey) -> NestedKey:
        if isinstance(key, tuple):
            return (*key[:-1], out_prefix + key[-1])
        return out_prefix + key

    written = [
        prefix_key(key_prefix, renames.get(k, default_out(k))) for k in decoder.out_keys
    ]
    if len(set(written)) != len(written):
        raise ValueError(
            f"The decoder would write two predictions to one key: {written}. Use "
            f"distinct out_keys (and a non-empty out_prefix)."
        )
    read = [prefix_key(key_prefix, k) for k in in_keys]
    return TensorDictModule(decoder, in_keys=read, out_keys=written)
