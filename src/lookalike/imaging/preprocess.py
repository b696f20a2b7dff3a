"""Preprocessing: images to normalised float arrays, derived from the backbone's config.

Torch-free on purpose: the ONNX Runtime inference path uses it without importing torch.
The configuration travels with the backbone (and with every saved model folder), so
transforms are never written twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

from lookalike.imaging.images import ImageSource, load_image
from lookalike.imaging.limits import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

MAX_INPUT_SIDE = 2048
"""Largest input height or width, in pixels, a stored preprocessing record may name."""

ResizeMode = Literal["squash", "center_crop"]
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input.

    Attributes:
        input_size: Model input as (height, width) in pixels.
        mean: Per-channel mean subtracted after scaling pixels to [0, 1]; one value per channel.
        std: Per-channel standard deviation divided by; one value per channel.
        channels: 3 for RGB input, 1 for grayscale.
        resize: ``"squash"`` resizes the whole image to ``input_size`` (keeps all content,
            changes the aspect ratio); ``"center_crop"`` keeps the aspect ratio and crops the
            centre (``crop_fraction`` of the shorter side) before resizing.
        crop_fraction: Fraction of the image kept by ``center_crop`` (timm's ``crop_pct``).
        interpolation: ``"bilinear"`` or ``"bicubic"``.
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    resize: ResizeMode = "squash"
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (height, width) ≥ 1, got {self.input_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean and std need one value per channel ({self.channels}), "
                f"got mean={self.mean} std={self.std}"
            )
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError(f"mean and std must be finite, got mean={self.mean} std={self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")
        if self.resize not in ("squash", "center_crop"):
            raise ValueError(f"resize must be 'squash' or 'center_crop', got {self.resize!r}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}")

    def with_input_size(self, size: int | tuple[int, int]) -> Preprocess:
        """Return a copy with another input size (an int means a square)."""
        hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return replace(self, input_size=hw)

    def with_channels(self, channels: int) -> Preprocess:
        """Return a copy for 1- or 3-channel input; means/stds are averaged or repeated."""
        if channels == self.channels:
            return self
        if channels == 1:
            mean: tuple[float, ...] = (float(np.mean(self.mean)),)
            std: tuple[float, ...] = (float(np.mean(self.std)),)
        else:
            mean, std = self.mean * 3, self.std * 3
        return replace(self, channels=channels, mean=mean, std=std)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        data = asdict(self)
        data.pop("extra")
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Preprocess:
        """Build from :meth:`to_dict` output (JSON), strictly.

        Exact JSON types (no ``"28"`` for 28, no ``28.5``), finite numbers, and an input size
        of 1 to :data:`MAX_INPUT_SIDE` pixels a side, so a damaged record cannot make the model
        allocate an enormous input.

        Raises:
            TypeError, KeyError, ValueError: Not such a record; the message says why.
        """
        if not isinstance(data, dict):
            raise TypeError("not an object")
        size, channels = data["input_size"], data["channels"]
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(_is_int(v) and 1 <= v <= MAX_INPUT_SIDE for v in size)
        ):
            raise ValueError(f"input_size must be [height, width], each 1 to {MAX_INPUT_SIDE}")
        if not _is_int(channels) or channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        mean, std = data["mean"], data["std"]
        for label, values in (("mean", mean), ("std", std)):
            if not isinstance(values, list) or len(values) != channels:
                raise ValueError(f"{label} must be a list of {channels} numbers")
            if not all(_is_finite(v) for v in values):
                raise ValueError(f"{label} values must be finite numbers, |v| ≤ 1e6")
        crop = data.get("crop_fraction", 1.0)
        resize, interpolation = data.get("resize", "squash"), data.get("interpolation", "bilinear")
        if not _is_finite(crop):
            raise ValueError("crop_fraction must be a number in (0, 1]")
        if not isinstance(resize, str) or not isinstance(interpolation, str):
            raise ValueError("resize and interpolation must be strings")
        return cls(
            input_size=(int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            channels=int(channels),
            resize=resize,  # type: ignore[arg-type]  # checked by __post_init__
            crop_fraction=float(crop),
            interpolation=interpolation,
        )

    # -- the work -----------------------------------------------------------------------------

    def resize_image(self, image: Image.Image) -> Image.Image:
        """Resize (or centre-crop and resize) a decoded image to ``input_size``."""
        height, width = self.input_size
        if self.resize == "center_crop":
            # Crop the largest centred box with the target aspect, scaled by crop_fraction,
            # then resize: never builds a huge intermediate for extreme aspect ratios.
            target_aspect = width / height
            w, h = image.size
            crop_w, crop_h = (
                (w, w / target_aspect) if w / h < target_aspect else (h * target_aspect, h)
            )
            crop_w, crop_h = crop_w * self.crop_fraction, crop_h * self.crop_fraction
            left, top = (w - crop_w) / 2, (h - crop_h) / 2
            box = (left, top, left + crop_w, top + crop_h)
            return image.resize((width, height), _RESAMPLE[self.interpolation], box=box)
        return image.resize((width, height), _RESAMPLE[self.interpolation])

    def image_to_array(self, image: Image.Image) -> np.ndarray:
        """Turn one decoded image into a normalised array.

        Args:
            image: An RGB or L image (as returned by :func:`lookalike.imaging.images.load_image`).

        Returns:
            float32 array of shape (channels, height, width).
        """
        mode = "L" if self.channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        pixels = np.asarray(self.resize_image(image))  # uint8 (H, W) or (H, W, C)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        # (p / 255 − mean) / std as one multiply-add on the CHW copy: ~20× faster than
        # the three float passes over HWC, equal to within 1e-6.
        std = np.asarray(self.std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
        offset = (-np.asarray(self.mean, dtype=np.float64) / std).astype(np.float32)[:, None, None]
        out = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
        out *= scale
        out += offset
        return out

    def load(
        self,
        source: ImageSource,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_aspect: float | None = DEFAULT_MAX_ASPECT,
        max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
    ) -> np.ndarray:
        """Open an image safely and preprocess it.

        Args:
            source: A path, bytes, PIL image or numpy array.
            max_pixels: Decompression-bomb guard passed to :func:`load_image`.
            max_aspect: Aspect-ratio limit passed to :func:`load_image`.
            max_decoded_bytes: Decoded-size limit passed to :func:`load_image` (a JPEG is
                decoded at about the input size, so only its reduced size counts).

        Returns:
            float32 array of shape (channels, height, width).

        Raises:
            ImageTooLargeError: The image exceeds a limit (checked from its header).
            ImageError: The image cannot be read.
        """
        mode: Literal["RGB", "L"] = "L" if self.channels == 1 else "RGB"
        height, width = self.input_size
        image = load_image(
            source,
            max_pixels=max_pixels,
            max_aspect=max_aspect,
            max_decoded_bytes=max_decoded_bytes,
            mode=mode,
            draft_size=(width, height),
        )
        return self.image_to_array(image)

    def batch(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """Preprocess several images into one batch.

        Returns:
            float32 array of shape (N, channels, height, width).

        Raises:
            ImageError: Any image cannot be read (the error names it).
        """
        height, width = self.input_size
        out = np.empty((len(sources), self.channels, height, width), dtype=np.float32)
        for i, source in enumerate(sources):
            out[i] = self.load(source)
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A JSON number within ±1e6 (so also finite; a 400-digit integer is not a float)."""
    return (_is_int(value) or isinstance(value, float)) and abs(value) <= 1e6
