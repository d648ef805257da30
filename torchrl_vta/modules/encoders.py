"""Observation encoders: one embedding from images, vectors and audio.

:class:`MultiEncoder` routes every observation key of an environment's spec to
one of three paths built from TorchRL's DreamerV3 blocks, and concatenates
their outputs into a single embedding (in the order CNN, vector MLP, audio MLP):

- ``cnn``: 3-D keys ``[C, H, W]`` (uint8 in ``[0, 255]`` or float in
  ``[0, 1]``). Several image keys are concatenated channel-wise into one
  :class:`~torchrl.modules.DreamerV3ImageEncoder`, as DreamerV3 does, so they
  must share ``H`` and ``W``.
- ``mlp``: 1-D vectors, symlog'd, concatenated, then a
  :class:`~torchrl.modules.DreamerV3MLP`.
- ``audio``: 1-D audio vectors, concatenated without symlog (samples already
  lie in ``[-1, 1]``), then their own :class:`~torchrl.modules.DreamerV3MLP`.
- ``set``: 2-D keys ``[K, F]``, padded sets of entities (vehicles, agents), each with
  its own :class:`~torchrl_vta.modules.sets.SetEncoder`; the key's mask (a boolean
  ``[K]`` sibling named ``<key>_mask``, or as given by ``set_masks``) marks the slots
  that hold an entity.

:func:`make_encoder_module` wraps the encoder in a
:class:`~tensordict.nn.TensorDictModule` whose keys can be renamed or prefixed
(e.g. ``"next"`` for the world model, which encodes observations at ``t + 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey, unravel_key
from torch import nn
from torchrl.data import Composite
from torchrl.modules import DreamerV3ImageEncoder, DreamerV3MLP
from torchrl.modules.functional import symlog

from torchrl_vta.modules.obs_routing import (
    _compile,
    candidate_shapes,
    find_set_masks,
    key_name,
    prefix_key,
    route,
)
from torchrl_vta.modules.sets import SetEncoder, check_discrete_columns
from torchrl_vta.pixels import to_unit

__all__ = ["PATHS", "MultiEncoder", "key_name", "make_encoder_module", "prefix_key"]

#: Encoder/decoder paths, in the order their outputs are concatenated.
PATHS = ("cnn", "mlp", "audio", "set")

_DEFAULT_EXCLUDE = (
    "is_init",
    "step_count",
    "episode_reward",
    "terminated",
    "truncated",
    "done",
    "reward",
)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def _stages_above(side: int, minres: int, most: int) -> int:
    """Stride-2 stages (at least 1, at most ``most``) that keep a ``side`` map >= ``minres``."""
    stages = 0
    while stages < most and side // 2 >= minres:
        side //= 2
        stages += 1
    return max(stages, 1)


def _as_float(value: torch.Tensor) -> torch.Tensor:
    return value if value.is_floating_point() else value.float()


class MultiEncoder(nn.Module):
    """Encode every observation key of a spec into one embedding ``[*B, out_features]``.

    Candidate keys are ``obs_keys`` when given, else every leaf of ``obs_spec``
    with a floating or uint8 dtype, a 1-D, 2-D or 3-D shape (after the spec's own
    batch dims) and whose dotted name or last component is not in
    ``exclude_keys``. Regexes are matched with :func:`re.search` on the dotted
    key name (``("a", "b")`` -> ``"a.b"``); ``cnn_keys`` is tried on 3-D keys,
    ``mlp_keys`` and ``audio_keys`` on 1-D keys, ``set_keys`` on 2-D keys. Every candidate must be matched
    by exactly one path, otherwise a :class:`ValueError` names the key.

    Args:
        obs_spec (Composite): observation spec, e.g. ``env.observation_spec``.

    Keyword Args:
        obs_keys (sequence of NestedKey, optional): keys to encode, bypassing
            the dtype/shape/exclude filter (each must still be 1-D or 3-D).
        cnn_keys (str or None): regex of image keys; ``None`` matches nothing.
            Defaults to ``r"^pixels$"``.
        mlp_keys (str or None): regex of vector keys; ``None`` (default) takes
            every 1-D candidate not matched by ``audio_keys``.
        audio_keys (str or None): regex of audio keys; ``None`` matches
            nothing. Defaults to ``r"^audio$"``.
        exclude_keys (sequence of str): names never encoded when
            ``obs_keys`` is not given. Defaults to the episode bookkeeping
            entries (``is_init``, ``step_count``, ``done``, ``reward``, ...).
        cnn_depth (int): base channel count of the CNN. Defaults to 32.
        cnn_mults (sequence of int): channel multiplier per stride-2 stage.
            Defaults to ``(2, 3, 4, 4)``.
        cnn_kernel (int): odd convolution kernel size. Defaults to 5.
        cnn_minres (int, optional): smallest side of the CNN's last feature map: the
            stages of ``cnn_mults`` that would go below it are dropped, so with 4 (DreamerV3's
            ``minres``) 64×64 images use all four default stages and 32×32 images the first
            three (a 4×4 map, not 2×2). :attr:`cnn_mults` holds the stages kept, which the
            decoder mirrors. ``None`` (default) uses every stage.
        mlp_layers (int): hidden layers of the vector MLP. Defaults to 2.
        mlp_units (int): width of the vector MLP. Defaults to 256.
        audio_layers (int, optional): hidden layers of the audio MLP.
            Defaults to ``mlp_layers``.
        audio_units (int, optional): width of the audio MLP. Defaults to
            ``mlp_units``.
        set_keys (str or None): regex of set keys ``[K, F]``; ``None`` (default) takes
            every 2-D candidate.
        set_masks (mapping, optional): set key name -> its mask key name. Unlisted set
            keys use the sibling ``<name>_mask`` when the spec has it, else every slot
            counts as present.
        set_discrete (mapping, optional): ``{column: cardinality}`` of the integer-valued
            columns of every set key (embedded, not symlog'd).
        set_units (int): width of a set embedding. Defaults to 128.
        set_layers (int): Transformer layers across the slots. Defaults to 2.
        set_heads (int): attention heads. Defaults to 4.
        set_slot_ids (bool): the slots are identities (an entity keeps its slot): add a
            slot-index embedding (:class:`~torchrl_vta.modules.sets.SetEncoder`'s
            ``slot_ids``), so that the decoder can reconstruct each slot. Defaults to
            ``False`` (an embedding invariant to the slots' order).
        device (torch.device, optional): device of the parameters.

    Attributes:
        in_keys (list of NestedKey): observation keys in ``forward`` order
            (``cnn_in_keys + mlp_in_keys + audio_in_keys``).
        cnn_in_keys, mlp_in_keys, audio_in_keys, set_in_keys (list of NestedKey): keys
            per path; ``in_keys`` ends with the set keys' masks (``set_mask_keys``).
        set_mask_keys (dict): set key -> its mask key, or ``None`` (every slot present).
        routing (dict): observation key -> ``"cnn" | "mlp" | "audio"``.
        key_shapes (dict): observation key -> event shape (``torch.Size``).
        out_features (int): embedding size.
        path_slices (dict): path -> ``slice`` of its columns in the embedding.

    Examples:
        >>> import torch
        >>> from torchrl.data import Composite, Unbounded
        >>> spec = Composite(
        ...     pixels=Unbounded((3, 16, 16), dtype=torch.uint8),
        ...     position=Unbounded((4,)),
        ...     audio=Unbounded((8,)),
        ...     step_count=Unbounded((1,), dtype=torch.int64),
        ... )
        >>> encoder = MultiEncoder(spec, cnn_depth=2, cnn_mults=(1, 1), mlp_units=8)
        >>> encoder.routing
        {'pixels': 'cnn', 'position': 'mlp', 'audio': 'audio'}
        >>> pixels = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
        >>> encoder(pixels, torch.randn(5, 4), torch.randn(5, 8)).shape
        torch.Size([5, 48])
        >>> encoder.out_features
        48
    """

    def __init__(
        self,
        obs_spec: Composite,
        *,
        obs_keys: Sequence[NestedKey] | None = None,
        cnn_keys: str | None = r"^pixels$",
        mlp_keys: str | None = None,
        audio_keys: str | None = r"^audio$",
        exclude_keys: Sequence[str] = _DEFAULT_EXCLUDE,
        cnn_depth: int = 32,
        cnn_mults: Sequence[int] = (2, 3, 4, 4),
        cnn_kernel: int = 5,
        cnn_minres: int | None = None,
        mlp_layers: int = 2,
        mlp_units: int = 256,
        audio_layers: int | None = None,
        audio_units: int | None = None,
        set_keys: str | None = None,
        set_masks: Mapping[str, str] | None = None,
        set_discrete: Mapping[int, int] | None = None,
        set_units: int = 128,
        set_layers: int = 2,
        set_heads: int = 4,
        set_slot_ids: bool = False,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        if not isinstance(obs_spec, Composite):
            raise ValueError(
                f"obs_spec must be a torchrl Composite spec, got {type(obs_spec).__name__}."
            )
        self.cnn_depth = _positive_int("cnn_depth", cnn_depth)
        self.cnn_mults = tuple(_positive_int("cnn_mults", m) for m in cnn_mults)
        if not self.cnn_mults:
            raise ValueError("cnn_mults must name at least one stage, got ().")
        self.cnn_kernel = _positive_int("cnn_kernel", cnn_kernel)
        if cnn_kernel % 2 == 0:
            raise ValueError(f"cnn_kernel must be odd, got {cnn_kernel}.")
        self.cnn_minres = None if cnn_minres is None else _positive_int("cnn_minres", cnn_minres)
        self.mlp_layers = _positive_int("mlp_layers", mlp_layers)
        self.mlp_units = _positive_int("mlp_units", mlp_units)
        self.audio_layers = _positive_int(
            "audio_layers", mlp_layers if audio_layers is None else audio_layers
        )
        self.audio_units = _positive_int(
            "audio_units", mlp_units if audio_units is None else audio_units
        )

        shapes = candidate_shapes(obs_spec, obs_keys, exclude_keys)
        routing = route(
            shapes,
            cnn=_compile("cnn_keys", cnn_keys),
            mlp=_compile("mlp_keys", mlp_keys),
            audio=_compile("audio_keys", audio_keys),
            set=_compile("set_keys", set_keys),
        )
        self.cnn_in_keys = [k for k, p in routing.items() if p == "cnn"]
        self.mlp_in_keys = [k for k, p in routing.items() if p == "mlp"]
        self.audio_in_keys = [k for k, p in routing.items() if p == "audio"]
        self.set_in_keys = [k for k, p in routing.items() if p == "set"]
        encoded = self.cnn_in_keys + self.mlp_in_keys + self.audio_in_keys + self.set_in_keys
        self.routing = {k: routing[k] for k in encoded}
        self.key_shapes = {k: shapes[k] for k in encoded}
        self.set_mask_keys = find_set_masks(obs_spec, self.set_in_keys, self.key_shapes, set_masks)
        self.in_keys = encoded + [m for m in self.set_mask_keys.values() if m is not None]
        self.set_units = _positive_int("set_units", set_units)
        self.set_layers = _positive_int("set_layers", set_layers)
        self.set_heads = _positive_int("set_heads", set_heads)
        self.set_slot_ids = bool(set_slot_ids)
        self.set_discrete = {}
        if self.set_in_keys:
            widths = {self.key_shapes[k][1] for k in self.set_in_keys}
            self.set_discrete = check_discrete_columns(min(widths), set_discrete)

        self.cnn = self.mlp = self.audio = None
        path_features = {}
        if self.cnn_in_keys:
            sizes = {tuple(self.key_shapes[k][1:]) for k in self.cnn_in_keys}
            if len(sizes) > 1:
                listing = ", ".join(
                    f"{key_name(k)}: {tuple(self.key_shapes[k])}" for k in self.cnn_in_keys
                )
                raise ValueError(
                    f"Image keys share one CNN and must have the same height and width, "
                    f"got {listing}. Resize them or drop some via cnn_keys."
                )
            channels = sum(self.key_shapes[k][0] for k in self.cnn_in_keys)
            if self.cnn_minres is not None:
                side = min(self.key_shapes[self.cnn_in_keys[0]][1:])
                self.cnn_mults = self.cnn_mults[:_stages_above(side, self.cnn_minres,
                                                               len(self.cnn_mults))]
            self.cnn = DreamerV3ImageEncoder(
                channels, self.cnn_depth, self.cnn_mults, self.cnn_kernel, device=device
            )
            path_features["cnn"] = self.cnn.output_features(
                (channels, *self.key_shapes[self.cnn_in_keys[0]][1:])
            )
        if self.mlp_in_keys:
            self.mlp = DreamerV3MLP(
                self._width(self.mlp_in_keys),
                None,
                depth=self.mlp_layers,
                num_cells=self.mlp_units,
                device=device,
            )
            path_features["mlp"] = self.mlp_units
        if self.audio_in_keys:
            self.audio = DreamerV3MLP(
                self._width(self.audio_in_keys),
                None,
                depth=self.audio_layers,
                num_cells=self.audio_units,
                device=device,
            )
            path_features["audio"] = self.audio_units
        self.sets = nn.ModuleList(
            SetEncoder(self.key_shapes[k][1], discrete=self.set_discrete, units=self.set_units,
                       layers=self.set_layers, heads=self.set_heads,
                       slot_ids=self.key_shapes[k][0] if self.set_slot_ids else None,
                       device=device)
            for k in self.set_in_keys
        )
        if self.set_in_keys:
            path_features["set"] = self.set_units * len(self.set_in_keys)
        self.path_slices = {}
        start = 0
        for path, size in path_features.items():
            self.path_slices[path] = slice(start, start + size)
            start += size
        self.out_features = start

    def _width(self, keys: list) -> int:
        return sum(self.key_shapes[k][0] for k in keys)

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        """Embed observations given in :attr:`in_keys` order; returns ``[*B, out_features]``."""
        if len(observations) != len(self.in_keys):
            raise ValueError(
                f"MultiEncoder expects {len(self.in_keys)} tensors in the order "
                f"{[key_name(k) for k in self.in_keys]}, got {len(observations)}."
            )
        by_key = dict(zip(self.in_keys, observations))
        for key, shape in self.key_shapes.items():
            value = by_key[key]
            if value.shape[value.ndim - len(shape) :] != shape:
                raise ValueError(
                    f"Observation {key_name(key)!r} must end with shape {tuple(shape)}, "
                    f"got {tuple(value.shape)}."
                )
        outputs = []
        if self.cnn is not None:
            # Scale each key to [0, 1] first: the TorchRL encoder only rescales a
            # whole uint8 tensor, and keys may mix uint8 and float images.
            images = [by_key[k] for k in self.cnn_in_keys]
            images = [to_unit(x) for x in images]
            outputs.append(self.cnn(torch.cat(images, -3) if len(images) > 1 else images[0]))
        if self.mlp is not None:
            outputs.append(self.mlp(*(symlog(_as_float(by_key[k])) for k in self.mlp_in_keys)))
        if self.audio is not None:
            outputs.append(self.audio(*(_as_float(by_key[k]) for k in self.audio_in_keys)))
        for key, encoder in zip(self.set_in_keys, self.sets):
            mask = self.set_mask_keys[key]
            outputs.append(encoder(by_key[key], None if mask is None else by_key[mask]))
        return torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]


def make_encoder_module(
    encoder: MultiEncoder,
    *,
    key_prefix: NestedKey | None = None,
    in_keys: Mapping[NestedKey, NestedKey] | None = None,
    out_key: NestedKey = "embed",
) -> TensorDictModule:
    """Wrap ``encoder`` in a :class:`~tensordict.nn.TensorDictModule`.

    The module reads each observation key of ``encoder.in_keys`` (renamed by
    ``in_keys`` when listed there) and writes the embedding to ``out_key``.
    ``key_prefix`` is prepended to every key read and written, so
    ``key_prefix="next"`` encodes ``("next", "pixels")`` into ``("next", "embed")``
    as the world model needs. To read and write unrelated places, leave
    ``key_prefix=None`` and give full keys.

    Args:
        encoder (MultiEncoder): the tensor-level encoder.

    Keyword Args:
        key_prefix (NestedKey, optional): prefix of all keys. Defaults to ``None``.
        in_keys (mapping, optional): observation key -> tensordict key, for keys
            stored under another name. Unlisted keys keep their name.
        out_key (NestedKey): embedding key. Defaults to ``"embed"``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Composite, Unbounded
        >>> spec = Composite(position=Unbounded((4,)))
        >>> encoder = MultiEncoder(spec, mlp_units=8)
        >>> module = make_encoder_module(encoder, key_prefix="next")
        >>> module.in_keys, module.out_keys
        ([('next', 'position')], [('next', 'embed')])
        >>> td = TensorDict({("next", "position"): torch.randn(2, 3, 4)}, [2, 3])
        >>> module(td)["next", "embed"].shape
        torch.Size([2, 3, 8])
    """
    if not isinstance(encoder, MultiEncoder):
        raise ValueError(f"encoder must be a MultiEncoder, got {type(encoder).__name__}.")
    renames = {unravel_key(k): unravel_key(v) for k, v in (in_keys or {}).items()}
    unknown = [key_name(k) for k in renames if k not in encoder.in_keys]
    if unknown:
        raise ValueError(
            f"in_keys renames {unknown}, which the encoder does not read; its keys are "
            f"{[key_name(k) for k in encoder.in_keys]}."
        )
    read = [prefix_key(key_prefix, renames.get(k, k)) for k in encoder.in_keys]
    return TensorDictModule(encoder, in_keys=read, out_keys=[prefix_key(key_prefix, out_key)])
