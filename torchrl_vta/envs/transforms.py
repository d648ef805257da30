"""Observation transforms used by the env builders: image resize, audio conversion, audio injection.

All three are plain TorchRL :class:`~torchrl.envs.Transform` subclasses: they work inside a
:class:`~torchrl.envs.TransformedEnv` (reset and step) and update the observation spec,
so :func:`~torchrl.envs.utils.check_env_specs` passes on the wrapped env.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Bounded, Composite, TensorSpec, Unbounded
from torchrl.envs import ObservationTransform, Transform

__all__ = ["AudioInjection", "CenterAudio", "ResizeImage", "check_audio_args"]


def check_audio_args(audio_dim: int, noise_std: float) -> None:
    """Raise ``ValueError`` naming the bad argument if the audio-injection settings are invalid.

    Example:
        >>> check_audio_args(16, 0.1)
        >>> check_audio_args(-1, 0.1)
        Traceback (most recent call last):
        ...
        ValueError: audio_dim must be an integer >= 0, got -1
    """
    if isinstance(audio_dim, bool) or not isinstance(audio_dim, int) or audio_dim < 0:
        raise ValueError(f"audio_dim must be an integer >= 0, got {audio_dim!r}")
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std >= 0:
        # `not >=` also rejects NaN.
        raise ValueError(f"audio_noise_std / noise_std must be a number >= 0, got {noise_std!r}")


class ResizeImage(ObservationTransform):
    """Resize channels-first images ``[..., C, H, W]`` to ``[..., C, height, width]``, no torchvision.

    Bilinear interpolation with antialiasing (``torch.nn.functional.interpolate``). uint8
    images are resized in float and rounded back to uint8, so the dtype (and replay-buffer
    memory) is unchanged.

    Args:
        size: output ``(height, width)``, or one int for a square image.
        in_keys: image entries to resize (default ``["pixels"]``).
        out_keys: where to write the results (default: ``in_keys``).

    Example:
        >>> from tensordict import TensorDict
        >>> t = ResizeImage(64)
        >>> td = TensorDict(pixels=torch.zeros(2, 3, 210, 160, dtype=torch.uint8), batch_size=[2])
        >>> t(td)["pixels"].shape, t(td)["pixels"].dtype
        (torch.Size([2, 3, 64, 64]), torch.uint8)
    """

    def __init__(
        self,
        size: int | Sequence[int],
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ):
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive, got {size!r}")
        in_keys = ["pixels"] if in_keys is None else list(in_keys)
        out_keys = list(in_keys) if out_keys is None else list(out_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)
        self.height, self.width = int(height), int(width)

    def _apply_transform(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] == (self.height, self.width):
            return image
        lead = image.shape[:-3]
        flat = image.reshape(-1, *image.shape[-3:])
        out = F.interpolate(
            flat.float(),
            size=(self.height, self.width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        if not image.dtype.is_floating_point:
            info = torch.iinfo(image.dtype)
            out = out.round_().clamp_(info.min, info.max)
        return out.to(image.dtype).reshape(*lead, *out.shape[-3:])

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def _resize_spec(self, spec: TensorSpec) -> TensorSpec:
        shape = (*spec.shape[:-2], self.height, self.width)
        if isinstance(spec, Bounded):
            return Bounded(
                low=self._apply_transform(spec.space.low),
                high=self._apply_transform(spec.space.high),
                shape=shape,
                dtype=spec.dtype,
                device=spec.device,
            )
        return Unbounded(shape=shape, dtype=spec.dtype, device=spec.device)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            observation_spec[out_key] = self._resize_spec(observation_spec[in_key])
        return observation_spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size=({self.height}, {self.width}), in_keys={self.in_keys})"


class CenterAudio(ObservationTransform):
    """Convert unsigned 8-bit audio samples to centred float32: ``(x - 128) / 128``.

    ALE's ``sound_obs`` gives uint8 samples with silence at 128; the output lies in
    ``[-1, 127/128]`` with silence at exactly 0.

    Args:
        in_keys: audio entries (default ``["audio"]``).
        out_keys: where to write the results (default: ``in_keys``).

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict(audio=torch.tensor([0, 128, 255], dtype=torch.uint8))
        >>> CenterAudio()(td)["audio"]
        tensor([-1.0000,  0.0000,  0.9922])
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ):
        in_keys = ["audio"] if in_keys is None else list(in_keys)
        out_keys = list(in_keys) if out_keys is None else list(out_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)

    def _apply_transform(self, audio: torch.Tensor) -> torch.Tensor:
        return (audio.to(torch.float32) - 128.0) / 128.0

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            spec = observation_spec[in_key]
            observation_spec[out_key] = Bounded(
                low=-1.0, high=127.0 / 128.0, shape=spec.shape, dtype=torch.float32, device=spec.device
            )
        return observation_spec


class AudioInjection(Transform):
    """Add a synthetic audio observation: zeros plus Gaussian noise, at reset and every step.

    Gives envs without sound an ``audio`` entry of the same kind as Atari's, so the same
    agent (with its audio encoder path) runs on every env; with ``noise_std > 0`` the
    channel carries no information about the task, only noise to be ignored.

    Args:
        audio_dim: length of the audio vector (>= 0).
        noise_std: standard deviation of the noise (>= 0; 0 gives silence).
        out_key: observation key to write (default ``"audio"``); must not exist in the env.
        seed: seeds the transform's own generator so the noise is reproducible.

    Example:
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl.envs.libs.gym import GymEnv
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), AudioInjection(8, noise_std=0.1, seed=0))
        >>> env.reset()["audio"].shape
        torch.Size([8])
    """

    def __init__(
        self,
        audio_dim: int,
        noise_std: float = 0.1,
        out_key: NestedKey = "audio",
        seed: int | None = None,
    ):
        check_audio_args(audio_dim, noise_std)
        super().__init__(in_keys=[], out_keys=[out_key])
        self.audio_dim = audio_dim
        self.noise_std = float(noise_std)
        self.out_key = out_key
        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)

    def _noise(self, reference: TensorDictBase) -> torch.Tensor:
        # Sampled on CPU from the transform's own generator so the stream does not depend
        # on the env device or on the global RNG used by policies.
        shape = (*reference.batch_size, self.audio_dim)
        if self.noise_std == 0.0:
            audio = torch.zeros(shape)
        else:
            audio = torch.randn(shape, generator=self._generator).mul_(self.noise_std)
        return audio.to(reference.device) if reference.device is not None else audio

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return next_tensordict.set(self.out_key, self._noise(next_tensordict))

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        if self.out_key in observation_spec.keys(True):
            raise ValueError(
                f"AudioInjection: the env already has an observation {self.out_key!r}; "
                "inject audio only into envs without native audio (or pick another out_key)."
            )
        observation_spec[self.out_key] = Unbounded(
            shape=(*observation_spec.shape, self.audio_dim),
            dtype=torch.float32,
            device=observation_spec.device,
        )
        return observation_spec

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(audio_dim={self.audio_dim}, "
            f"noise_std={self.noise_std}, out_key={self.out_key!r})"
        )
