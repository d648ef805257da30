"""Which observation keys an encoder takes and along which path: the candidates of a spec
(float or uint8 leaves, 1-D vectors, 2-D sets, 3-D images, minus the excluded names), their
routing to the ``cnn`` / ``mlp`` / ``audio`` / ``set`` paths by the ``*_keys`` regexes (every
key exactly one path, or an error naming the key and the fix), and each set key's mask.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
from tensordict.utils import NestedKey, unravel_key
from torchrl.data import Composite

__all__ = ["candidate_shapes", "find_set_masks", "key_name", "prefix_key", "route"]


def key_name(key: NestedKey) -> str:
    """Return the dotted name of a (nested) key, the string regexes match.

    Examples:
        >>> key_name(("sensors", "position"))
        'sensors.position'
        >>> key_name("pixels")
        'pixels'
    """
    key = unravel_key(key)
    return ".".join(key) if isinstance(key, tuple) else key


def prefix_key(prefix: NestedKey | None, key: NestedKey) -> NestedKey:
    """Return ``key`` under ``prefix`` (``None``: unchanged), flattened.

    Examples:
        >>> prefix_key("next", ("sensors", "position"))
        ('next', 'sensors', 'position')
        >>> prefix_key(None, "pixels")
        'pixels'
    """
    key = unravel_key(key)
    return key if prefix is None else unravel_key((prefix, key))


def _compile(name: str, pattern: str | None) -> re.Pattern | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ValueError(f"{name} must be a regex string or None, got {pattern!r}.")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{name}={pattern!r} is not a valid regex: {err}.") from err


def candidate_shapes(
    obs_spec: Composite,
    obs_keys: Sequence[NestedKey] | None,
    exclude_keys: Sequence[str],
) -> dict:
    """Return ``{key: event shape}`` of the keys to encode, in spec order."""
    batch_ndim = obs_spec.ndim
    leaves = {unravel_key(k): obs_spec[k] for k in obs_spec.keys(True, True)}

    def encodable(spec) -> bool:
        dtype = getattr(spec, "dtype", None)
        return isinstance(dtype, torch.dtype) and (
            dtype.is_floating_point or dtype == torch.uint8
        )

    if obs_keys is None:
        if isinstance(exclude_keys, str):
            raise ValueError(
                f"exclude_keys must be a sequence of key names, got the string "
                f"{exclude_keys!r}; write ({exclude_keys!r},)."
            )
        excluded = set(exclude_keys)
        shapes = {}
        for key, spec in leaves.items():
            last = key[-1] if isinstance(key, tuple) else key
            shape = spec.shape[batch_ndim:]
            if (
                encodable(spec)
                and len(shape) in (1, 2, 3)
                and key_name(key) not in excluded
                and last not in excluded
            ):
                shapes[key] = shape
        if not shapes:
            raise ValueError(
                f"obs_spec has no encodable key (float or uint8, 1-D to 3-D, not in "
                f"exclude_keys={tuple(exclude_keys)}); its leaves are "
                f"{[key_name(k) for k in leaves]}. Pass obs_keys explicitly."
            )
        return shapes
    if isinstance(obs_keys, str) or not obs_keys:
        raise ValueError(
            f"obs_keys must be a non-empty list of keys, got {obs_keys!r}."
        )
    shapes = {}
    for key in obs_keys:
        key = unravel_key(key)
        if key not in leaves:
            raise ValueError(
                f"obs_keys entry {key_name(key)!r} is not a leaf of obs_spec; "
                f"available: {[key_name(k) for k in leaves]}."
            )
        shape = leaves[key].shape[batch_ndim:]
        if not encodable(leaves[key]) or len(shape) not in (1, 2, 3):
            raise ValueError(
                f"obs_keys entry {key_name(key)!r} has dtype {leaves[key].dtype} and "
                f"event shape {tuple(shape)}; only float/uint8 vectors (1-D), sets "
                f"(2-D, [K, F]) and images (3-D, [C, H, W]) can be encoded."
            )
        shapes[key] = shape
    return shapes

def route(shapes: dict, **regexes: re.Pattern | None) -> dict:
    """Assign each key to exactly one path, or explain why it cannot be."""

    def show(path: str) -> str:
        pattern = regexes[path]
        return f"{path}_keys={None if pattern is None else pattern.pattern!r}"

    routing = {}
    for key, shape in shapes.items():
        name = key_name(key)
        if len(shape) == 2:
            pattern = regexes["set"]
            if pattern is not None and not pattern.search(name):
                raise ValueError(
                    f"Set key {name!r} (shape {tuple(shape)}) is matched by no encoder "
                    f"path: {show('set')} does not match it. Widen set_keys, set it to "
                    f"None to take every 2-D key, or leave the key out with "
                    f"exclude_keys or obs_keys."
                )
            routing[key] = "set"
            continue
        if len(shape) == 3:
            pattern = regexes["cnn"]
            if pattern is None or not pattern.search(name):
                raise ValueError(
                    f"Image key {name!r} (shape {tuple(shape)}) is matched by no "
                    f"encoder path: {show('cnn')} does not match it. Widen cnn_keys "
                    f"(e.g. r'^(pixels|{re.escape(name)})$'), or leave the key out "
                    f"with exclude_keys or obs_keys."
                )
            routing[key] = "cnn"
            continue
        audio = regexes["audio"] is not None and bool(regexes["audio"].search(name))
        mlp_pattern = regexes["mlp"]
        if mlp_pattern is None:
            mlp = not audio
        else:
            mlp = bool(mlp_pattern.search(name))
        if audio and mlp:
            raise ValueError(
                f"Vector key {name!r} is matched by two encoder paths: "
                f"{show('mlp')} and {show('audio')}. Each key needs exactly one "
                f"path: narrow one of the regexes (e.g. mlp_keys="
                f"r'^(?!{re.escape(name)}$)'), or set mlp_keys=None so that the "
                f"vector path takes every key audio_keys does not."
            )
        if not (audio or mlp):
            raise ValueError(
                f"Vector key {name!r} (shape {tuple(shape)}) is matched by no "
                f"encoder path: neither {show('mlp')} nor {show('audio')} matches "
                f"it. Widen one of them, set mlp_keys=None to send every non-audio "
                f"vector to the MLP, or leave the key out with exclude_keys or "
                f"obs_keys."
            )
        routing[key] = "audio" if audio else "mlp"
    return routing

def find_set_masks(obs_spec: Composite, set_keys: list, key_shapes: dict,
              given: Mapping[str, str] | None) -> dict:
    """Each set key's mask key (a boolean ``[K]`` leaf of the spec) or ``None``."""
    leaves = {key_name(unravel_key(k)): unravel_key(k) for k in obs_spec.keys(True, True)}
    given = dict(given or {})
    names = {key_name(k) for k in set_keys}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"set_masks names {unknown}, which are not set keys; the set keys "
                         f"are {sorted(names)}.")
    masks = {}
    for key in set_keys:
        name = key_name(key)
        mask_name = given.get(name, f"{name}_mask")
        if mask_name not in leaves:
            if name in given:
                raise ValueError(f"set_masks[{name!r}]={mask_name!r} is not a key of the "
                                 f"spec; available: {sorted(leaves)}.")
            masks[key] = None
            continue
        spec = obs_spec[leaves[mask_name]]
        slots = key_shapes[key][0]
        if spec.dtype != torch.bool or tuple(spec.shape[obs_spec.ndim:]) != (slots,):
            raise ValueError(
                f"The mask {mask_name!r} of set key {name!r} must be boolean of shape "
                f"({slots},), got {spec.dtype} {tuple(spec.shape[obs_spec.ndim:])}."
            )
        masks[key] = leaves[mask_name]
    return masks
