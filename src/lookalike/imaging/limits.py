"""What :func:`~lookalike.imaging.images.load_image` agrees to decode: formats and sizes.

Every limit is checked from the image header (or the array's shape), before any pixel is
decoded, and a refusal is an :class:`~lookalike.errors.ImageTooLargeError` naming the limit:

* :data:`DEFAULT_MAX_PIXELS` — width × height (the decompression-bomb guard);
* :data:`DEFAULT_MAX_ASPECT` — longest side ÷ shortest side (a 10000 × 1 strip is tiny
  on disk but makes every layout and heatmap downstream enormous);
* :data:`DEFAULT_MAX_DECODED_BYTES` — the decoded size, width × height × bands × bytes per
  sample (:func:`decoded_bytes`): a float TIFF costs four times an 8-bit grey one.

:data:`ALLOWED_FORMATS` is the decoder allow-list handed to Pillow: the formats people
photograph and download in (JPEG, which includes the multi-picture MPO files of phones,
PNG, GIF, WebP, BMP, TIFF, AVIF when Pillow has it) plus the simple netpbm family. Never
Ghostscript (EPS/PS/PDF) and none of Pillow's rarely used parsers (SPIDER, DDS, FITS, PSD, ...).

Torch-free; nothing here changes Pillow's global state.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageMode

from lookalike.errors import ImageError, ImageTooLargeError

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_DECODED_BYTES",
    "DEFAULT_MAX_PIXELS",
    "check_limit_options",
    "check_size",
    "decoded_bytes",
    "pillow_formats",
]

DEFAULT_MAX_PIXELS: int = 100_000_000
"""Default limit on width × height (about 10000 × 10000)."""

DEFAULT_MAX_ASPECT: float = 50.0
"""Default limit on the longest side divided by the shortest (a 5000 × 100 banner passes)."""

DEFAULT_MAX_DECODED_BYTES: int = 512 * 2**20
"""Default limit on width × height × bands × bytes per sample (512 MiB: every 8-bit RGBA
or 32-bit float image within :data:`DEFAULT_MAX_PIXELS` passes)."""

ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG",
    "PNG",
    "GIF",
    "WEBP",
    "BMP",
    "TIFF",
    "PPM",
    "AVIF",
)
"""Pillow format names :func:`~lookalike.imaging.images.load_image` decodes (AVIF only
where Pillow was built with it; see :func:`pillow_formats`)."""

_WIDEST = 16
_MAX_ASPECT_OPTION = 1e12
"""Bytes per pixel assumed for a mode Pillow does not describe (4 bands × 4 bytes)."""


def pillow_formats() -> tuple[str, ...]:
    """The :data:`ALLOWED_FORMATS` this Pillow can open, for ``Image.open(formats=...)``.

    Loads Pillow's plugins (``Image.init()``, which ``Image.open`` would do anyway); a
    format this Pillow lacks is left out rather than failing every open.
    """
    Image.init()
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def decoded_bytes(mode: str, width: int, height: int) -> int:
    """The decoded size of an image: width × height × bands × bytes per sample.

    Args:
        mode: Pillow mode as read from the header (``"RGB"``, ``"I;16"``, ``"F"``, ...),
            or a numpy dtype string prefixed with ``"array:"`` and the band count, as
            ``"array:3:float64"``.
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        The size in bytes (Pillow pads 3-band images to 4 bytes in memory; this is the
        nominal size, which the measured peak is a small multiple of).
    """
    if mode.startswith("array:"):
        _, bands, dtype = mode.split(":", 2)
        return width * height * int(bands) * np.dtype(dtype).itemsize
    try:
        described = ImageMode.getmode(mode)
        per_pixel = len(described.bands) * np.dtype(described.typestr).itemsize
    except (KeyError, TypeError, ValueError):
        per_pixel = _WIDEST
    return width * height * per_pixel


def check_limit_options(
    max_pixels: int | None, max_aspect: float | None, max_decoded_bytes: int | None
) -> None:
    """Validate the limits a caller passed.

    Raises:
        ValueError: A limit is neither ``None`` nor a positive number (``max_aspect`` ≥ 1).
    """
    for label, value in (("max_pixels", max_pixels), ("max_decoded_bytes", max_decoded_bytes)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{label} must be a positive integer or None, not {value!r}")
    if max_aspect is not None and (
        isinstance(max_aspect, bool)
        or not isinstance(max_aspect, int | float)
        or not 1 <= max_aspect <= _MAX_ASPECT_OPTION
    ):
        raise ValueError(
            f"max_aspect must be a number from 1 to {_MAX_ASPECT_OPTION:g} or None, "
            f"not {max_aspect!r}"
        )


def check_size(
    name: str,
    width: int,
    height: int,
    mode: str,
    *,
    max_pixels: int | None,
    max_aspect: float | None,
    max_decoded_bytes: int | None,
) -> None:
    """Refuse an image whose header promises too much, before anything is decoded.

    Args:
        name: The image's printable name.
        width: Width from the header.
        height: Height from the header.
        mode: Pillow mode from the header (see :func:`decoded_bytes`).
        max_pixels: Limit on width × height, or ``None``.
        max_aspect: Limit on longest ÷ shortest side, or ``None``.
        max_decoded_bytes: Limit on :func:`decoded_bytes`, or ``None``.

    Raises:
        ImageError: A width or height below 1.
        ImageTooLargeError: A limit is exceeded (its ``limit`` says which).
    """
    if width < 1 or height < 1:
        raise ImageError(name, f"image has an invalid size {width}×{height}")
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageTooLargeError(
            name,
            f"image has {width}×{height} = {pixels} pixels, more than the limit of "
            f"{max_pixels} (decompression-bomb guard); pass a larger max_pixels to allow it",
            limit="pixels",
        )
    long, short = max(width, height), min(width, height)
    if max_aspect is not None and long > max_aspect * short:
        raise ImageTooLargeError(
            name,
            f"image is {width}×{height}, an aspect ratio of {long / short:.4g}:1, more than "
            f"the limit of {max_aspect:g}:1; pass a larger max_aspect to allow it",
            limit="aspect",
        )
    size = decoded_bytes(mode, width, height)
    if max_decoded_bytes is not None and size > max_decoded_bytes:
        raise ImageTooLargeError(
            name,
            f"image is {width}×{height} {_mode_words(mode)}, "
            f"{size / 2**20:.4g} MiB decoded, more than the limit of "
            f"{max_decoded_bytes / 2**20:.4g} MiB; pass a larger max_decoded_bytes to allow it",
            limit="bytes",
        )


def _mode_words(mode: str) -> str:
    """``"in mode F"``, or ``"as a 3-band float64 array"`` for an array."""
    if not mode.startswith("array:"):
        return f"in mode {mode}"
    _, bands, dtype = mode.split(":", 2)
    return f"as a {bands}-band {np.dtype(dtype).name} array"
