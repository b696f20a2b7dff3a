"""Batched data augmentation on uint8 image tensors, on whatever device they are on.

:func:`augment_batch` turns a uint8 batch into float pixels in [0, 1] with a random
resized crop, a small rotation and a horizontal flip (one affine transform per image, applied with
``grid_sample`` to the whole batch at once), then colour jitter: brightness, contrast
and, for colour images, saturation. Every random number comes from the generator
passed in, so the same generator state gives the same batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "augment_batch"]

_GRAY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Augment:
    """Augmentation settings.

    Attributes:
        crop_scale: Range of the crop's area as a fraction of the image, within (0, 1].
        crop_ratio: Range of the crop's aspect ratio (width / height), drawn log-uniformly.
        flip: Flip horizontally with probability 0.5 (wrong for text, digits and glyphs,
            where a mirror image is another identity: see :meth:`for_channels`).
        rotate: Rotate by an angle drawn uniformly from [-rotate, rotate] degrees.
        brightness: Brightness factor drawn from [max(0, 1 - b), 1 + b]; 0 disables it.
        contrast: Contrast factor drawn likewise; 0 disables it.
        saturation: Saturation factor drawn likewise (colour images only); 0 disables it.
        enabled: ``False`` turns every augmentation off (pixels are only scaled).
    """

    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    rotate: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    enabled: bool = True

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        low, high = self.crop_ratio
        if not 0.0 < low <= high:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        if not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"rotate must be in [0, 180] degrees, got {self.rotate}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")

    @classmethod
    def off(cls) -> Augment:
        """Return settings that do no augmentation."""
        return cls(enabled=False)

    @classmethod
    def for_channels(cls, channels: int) -> Augment:
        """The default for images with ``channels`` channels.

        Grayscale inputs (digits, characters, sketches, documents) are usually shapes whose
        mirror image is another identity (b/d, 2/S), so they get no flip and a small
        rotation instead; colour photos get the flip.
        """
        if channels == 1:
            return cls(flip=False, rotate=10.0, crop_scale=(0.8, 1.0))
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        data = asdict(self)
        data["crop_scale"] = list(self.crop_scale)
        data["crop_ratio"] = list(self.crop_ratio)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Augment:
        """Build from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ValueError: An unknown key or an invalid value.
        """
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown augmentation settings: {sorted(unknown)}")
        values = dict(data)
        for key in ("crop_scale", "crop_ratio"):
            if key in values:
                low, high = values[key]
                values[key] = (float(low), float(high))
        return cls(**values)


def augment_batch(pixels: Tensor, aug: Augment, generator: torch.Generator) -> Tensor:
    """Augment a batch of images.

    Args:
        pixels: uint8 tensor of shape (B, C, H, W), C 1 or 3, on any device.
        aug: The settings.
        generator: Source of every random number; it may live on the CPU or on the
            batch's device. The same state gives the same output.

    Returns:
        float32 tensor of shape (B, C, H, W), values in [0, 1], on ``pixels``' device.

    Raises:
        ValueError: ``pixels`` is not a 4-D uint8 tensor.
    """
    if pixels.ndim != 4 or pixels.dtype != torch.uint8:
        raise ValueError(
            f"pixels must be a uint8 tensor (B, C, H, W), got {pixels.dtype} {tuple(pixels.shape)}"
        )
    x = pixels.float() / 255.0
    if not aug.enabled or x.shape[0] == 0:
        return x
    batch, channels, height, width = x.shape
    u = torch.rand((batch, 9), generator=generator, device=generator.device).to(x.device)

    # Random resized crop + flip as one affine map from output to input coordinates.
    scale = aug.crop_scale[0] + u[:, 0] * (aug.crop_scale[1] - aug.crop_scale[0])
    log_lo, log_hi = math.log(aug.crop_ratio[0]), math.log(aug.crop_ratio[1])
    ratio = torch.exp(log_lo + u[:, 1] * (log_hi - log_lo))
    crop_w = torch.sqrt(scale * ratio * height / width).clamp(max=1.0)  # fraction of width
    crop_h = torch.sqrt(scale / ratio * width / height).clamp(max=1.0)  # fraction of height
    centre_x = (2 * u[:, 2] - 1) * (1 - crop_w)
    centre_y = (2 * u[:, 3] - 1) * (1 - crop_h)
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if aug.flip else torch.ones_like(crop_w)
    theta = torch.zeros((batch, 2, 3), device=x.device)
    theta[:, 0, 0] = crop_w * sign
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = crop_h
    theta[:, 1, 2] = centre_y
    if aug.rotate > 0:  # rotate the sampling grid about the crop's centre
        angle = (2 * u[:, 8] - 1) * math.radians(aug.rotate)
        cos, sin = torch.cos(angle), torch.sin(angle)
        linear = theta[:, :, :2].clone()
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        theta[:, :, :2] = linear @ rotation
    grid = F.affine_grid(theta, [batch, channels, height, width], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Colour jitter, per image: brightness, contrast, saturation (fixed order).
    def factor(amount: float, draw: Tensor) -> Tensor:
        low = max(0.0, 1.0 - amount)
        return (low + draw * (1.0 + amount - low)).view(-1, 1, 1, 1)

    if aug.brightness > 0:
        x = (x * factor(aug.brightness, u[:, 5])).clamp(0.0, 1.0)
    if aug.contrast > 0:
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor(aug.contrast, u[:, 6]) + mean).clamp(0.0, 1.0)
    if aug.saturation > 0 and channels == 3:
        gray = _gray(x)
        x = ((x - gray) * factor(aug.saturation, u[:, 7]) + gray).clamp(0.0, 1.0)
    return x


def _gray(x: Tensor) -> Tensor:
    """Luma of a batch.

    Args:
        x: float tensor (B, C, H, W), C 1 or 3.

    Returns:
        float tensor (B, 1, H, W).
    """
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)
