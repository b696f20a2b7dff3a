"""Opening images safely.

:func:`load_image` is the one way lookalike turns a path, encoded bytes, a PIL image
or a numpy array into a fully decoded 8-bit ``"RGB"`` or ``"L"`` PIL image. It

* reports every failure as :class:`~lookalike.errors.ImageError`, naming the image
  and the cause in words;
* decodes only the formats of :data:`lookalike.imaging.limits.ALLOWED_FORMATS` (never
  Ghostscript's EPS/PS/PDF, nor Pillow's rarely used parsers);
* refuses, from the image header and before any pixel is decoded, images with too many
  pixels (decompression bombs), too extreme an aspect ratio or too many decoded bytes
  (:mod:`lookalike.imaging.limits`), as :class:`~lookalike.errors.ImageTooLargeError`;
* applies the EXIF orientation and takes the first frame of animations;
* converts every pixel mode correctly: 16-bit and float images are scaled rather
  than clipped (a block of rows at a time, :mod:`lookalike.imaging._scale`), and
  transparent pixels are composited on white.

Peak memory while decoding is bounded by the limits: about the decoded size (see
:func:`~lookalike.imaging.limits.decoded_bytes`) plus the 8-bit result.

Listing the image files of a folder, without decoding them, is
:mod:`lookalike.imaging.files`.

Nothing here changes global state: Pillow's ``Image.MAX_IMAGE_PIXELS`` and
``ImageFile.LOAD_TRUNCATED_IMAGES`` are left as the program set them.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, Union

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import ImageError, ImageTooLargeError
from lookalike.imaging import _scale
from lookalike.imaging.limits import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
    check_limit_options,
    check_size,
    pillow_formats,
)

__all__ = [
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_DECODED_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageSource",
    "image_name",
    "load_image",
]

ImageSource = Union[  # noqa: UP007 - a runtime alias; ``X | Y`` fails for os.PathLike[str]
    str, os.PathLike[str], bytes, bytearray, memoryview, Image.Image, npt.NDArray[Any]
]
"""Anything :func:`load_image` accepts."""

_MODES = ("RGB", "L")
_ORIENTATION_TAG = 0x0112

# File signatures, to tell a truncated file of a known format from a non-image.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def image_name(source: ImageSource) -> str:
    """Return the printable name of an image source, as used in error messages.

    Args:
        source: Anything :func:`load_image` accepts.

    Returns:
        The path for a path; ``"<bytes>"``, ``"<PIL image>"`` or ``"<array>"`` for
        in-memory input; ``"<TYPE>"`` for an unsupported type.
    """
    if isinstance(source, str):
        return source
    if isinstance(source, os.PathLike):
        return os.fsdecode(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mode: Literal["RGB", "L"] = "RGB",
    draft_size: tuple[int, int] | None = None,
    max_aspect: float | None = DEFAULT_MAX_ASPECT,
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
) -> Image.Image:
    """Open, fully decode and convert an image.

    Args:
        source: A path to an image file; the encoded bytes of an image file
            (``bytes``, ``bytearray`` or ``memoryview``); a PIL image (its current
            frame is used; its pixels and metadata are left unchanged); or a numpy
            array of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or
            ``(H, W, 4)`` (RGBA) with dtype ``uint8``, ``uint16`` (scaled to 8
            bits), ``bool`` or float (values within [0, 1] are scaled by 255,
            others clipped to [0, 255], NaN becomes 0). Other integer dtypes are
            scaled like Pillow mode ``"I"``: kept when at most 255, scaled as
            16-bit when at most 65535, min-max scaled otherwise.
        max_pixels: Largest width × height accepted, checked from the image header
            before decoding (decompression-bomb guard). ``None`` disables this
            check; Pillow's own, larger limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``)
            still applies to encoded images.
        mode: ``"RGB"`` (8-bit colour) or ``"L"`` (8-bit grayscale).
        draft_size: For JPEG input only, a ``(width, height)`` the image is needed
            at: the decoder then downsamples by a power of two (up to 8) while
            keeping the image at least this large, which is much faster. The size
            refers to the image after its EXIF orientation is applied. Ignored for
            other formats.
        max_aspect: Largest ratio of the longest side to the shortest, checked from the
            header; ``None`` disables it.
        max_decoded_bytes: Largest decoded size (width × height × bands × bytes per
            sample, :func:`~lookalike.imaging.limits.decoded_bytes`), checked from the
            header (for a JPEG, at the scale ``draft_size`` decodes it); ``None`` disables it.

    Returns:
        A fully loaded PIL image in ``mode``, with the EXIF orientation applied,
        the first frame of an animation, and any transparency composited on white.

    Raises:
        ImageTooLargeError: If the image exceeds ``max_pixels``, ``max_aspect`` or
            ``max_decoded_bytes`` (an :class:`ImageError`; its ``limit`` says which).
        ImageError: If the image cannot be read: a missing, empty or unreadable
            file, a non-image or a format not allowed, truncated or corrupt data, an
            unsupported pixel mode, or an invalid array.
        ValueError: If a limit, ``mode`` or ``draft_size`` is invalid.
    """
    _check_options(mode, draft_size)
    check_limit_options(max_pixels, max_aspect, max_decoded_bytes)
    limits = _Limits(max_pixels, max_aspect, max_decoded_bytes)
    name = image_name(source)
    if isinstance(source, Image.Image):
        return _from_pil(source, name, limits=limits, mode=mode)
    if isinstance(source, np.ndarray):
        return _from_array(source, name, limits=limits, mode=mode)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError(name, "data is empty")
        return _decode(io.BytesIO(data), name, limits=limits, mode=mode, draft_size=draft_size)
    if isinstance(source, (str, os.PathLike)):
        path = Path(name)
        with _open_file(path, name) as fp:
            return _decode(fp, name, limits=limits, mode=mode, draft_size=draft_size)
    raise ImageError(
        name,
        f"unsupported source type {type(source).__name__}; expected a path, bytes, "
        "a PIL image or a numpy array",
    )


# --------------------------------------------------------------------------- options


class _Limits(NamedTuple):
    """The three size limits of :func:`load_image` (``None``: off)."""

    pixels: int | None
    aspect: float | None
    decoded_bytes: int | None

    def check(self, name: str, width: int, height: int, mode: str) -> None:
        """Refuse an image whose header exceeds a limit (see :func:`check_size`)."""
        check_size(
            name,
            width,
            height,
            mode,
            max_pixels=self.pixels,
            max_aspect=self.aspect,
            max_decoded_bytes=self.decoded_bytes,
        )


def _check_options(mode: str, draft_size: tuple[int, int] | None) -> None:
    """Validate the non-limit keyword arguments of :func:`load_image`.

    Args:
        mode: As for :func:`load_image`.
        draft_size: As for :func:`load_image`.

    Raises:
        ValueError: If one is invalid.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    if draft_size is not None and (
        not isinstance(draft_size, tuple)
        or len(draft_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in draft_size)
    ):
        raise ValueError(
            f"draft_size must be None or a (width, height) of positive integers, not {draft_size!r}"
        )


# --------------------------------------------------------------------------- files


def _open_file(path: Path, name: str) -> IO[bytes]:
    """Open an image file for reading, with the failures named in words.

    Args:
        path: The file.
        name: Its printable name.

    Returns:
        The open binary file.

    Raises:
        ImageError: If the file is missing, a folder, not a regular file, empty
            or cannot be opened.
    """
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ImageError(name, "file not found") from exc
    except PermissionError as exc:
        raise ImageError(name, "permission denied") from exc
    except OSError as exc:
        raise ImageError(name, f"cannot access file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(name, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(name, "is not a regular file")
    if st.st_size == 0:
        raise ImageError(name, "file is empty")
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise ImageError(name, "file not found") from exc
    except PermissionError as exc:
        raise ImageError(name, "permission denied") from exc
    except OSError as exc:
        raise ImageError(name, f"cannot open file: {exc.strerror or exc}") from exc


def _sniff_format(fp: IO[bytes]) -> str | None:
    """Guess the format of data Pillow could not identify from its first bytes.

    Args:
        fp: The data, seekable.

    Returns:
        The format name when the data starts like (or is a cut-off start of) a
        known signature, else ``None``.
    """
    try:
        fp.seek(0)
        head = fp.read(16)
    except (OSError, ValueError):
        return None
    if not head:
        return None
    if head[:4] == b"RIFF" and (len(head) < 12 or head[8:12] == b"WEBP"):
        return "WebP"
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature) or signature.startswith(head):
            return fmt
    return None


# --------------------------------------------------------------------------- decoding


def _pillow_bomb(name: str, exc: Exception, max_pixels: int | None) -> ImageTooLargeError:
    """Pillow's own refusal of a decompression bomb, as :class:`ImageTooLargeError`.

    Pillow refuses more than ``2 * PIL.Image.MAX_IMAGE_PIXELS`` while reading the header,
    before our own check can run; the message names the limit that matters to the caller.

    Args:
        name: The image's printable name.
        exc: Pillow's ``DecompressionBombError``.
        max_pixels: The caller's limit.

    Returns:
        The error, with how to allow the image.
    """
    match = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(match.group(1)) if match else None
    size = f"{pixels} pixels" if pixels is not None else "too many pixels"
    if max_pixels is not None and pixels is not None and pixels > max_pixels:
        cause = (
            f"image has {size}, more than the limit of {max_pixels} "
            "(decompression-bomb guard); pass a larger max_pixels to allow it"
        )
    else:
        limit = Image.MAX_IMAGE_PIXELS
        pil_limit = f"{2 * limit}" if limit is not None else "its limit"
        cause = (
            f"image has {size}, more than Pillow's own limit of {pil_limit} "
            "(decompression-bomb guard); to allow it, raise PIL.Image.MAX_IMAGE_PIXELS "
            "in your program and pass a larger max_pixels (or None)"
        )
    return ImageTooLargeError(name, cause, limit="pixels")


def _decode(
    fp: IO[bytes],
    name: str,
    *,
    limits: _Limits,
    mode: str,
    draft_size: tuple[int, int] | None,
) -> Image.Image:
    """Decode an encoded image: identify, check the size, load, orient and convert.

    Args:
        fp: The encoded image, seekable, kept open by the caller until this returns.
        name: The image's printable name.
        limits: As for :func:`load_image`.
        mode: As for :func:`load_image`.
        draft_size: As for :func:`load_image`.

    Returns:
        The decoded image in ``mode``.

    Raises:
        ImageTooLargeError: If the header exceeds a limit.
        ImageError: If the image cannot be decoded or its format is not allowed.
    """
    with warnings.catch_warnings():
        # Our own check below replaces Pillow's warning; its hard error is caught.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img: Image.Image = Image.open(fp, formats=pillow_formats())
        except Image.DecompressionBombError as exc:
            raise _pillow_bomb(name, exc, limits.pixels) from exc
        except UnidentifiedImageError as exc:
            fmt = _sniff_format(fp)
            if fmt is not None:
                cause = (
                    f"truncated or corrupt image data: starts like a {fmt} file but its "
                    "header cannot be read"
                )
                raise ImageError(name, cause) from exc
            raise ImageError(name, _NOT_ALLOWED) from exc
        except Exception as exc:  # Pillow raises many types on malformed headers.
            raise ImageError(name, f"truncated or corrupt image data: {_describe(exc)}") from exc

        width, height = img.size
        limits._replace(decoded_bytes=None).check(name, width, height, img.mode)
        if draft_size is not None and img.format in ("JPEG", "MPO"):
            orientation = _orientation(img)
            w, h = draft_size
            if orientation in (5, 6, 7, 8):  # stored transposed: swap the request
                w, h = h, w
            img.draft(mode, (w, h))
        limits.check(name, *img.size, img.mode)  # a JPEG's decoded size is known after draft

        try:
            img.load()
            orientation = _orientation(img)
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                img = ImageOps.exif_transpose(img)
        except Image.DecompressionBombError as exc:
            raise _pillow_bomb(name, exc, limits.pixels) from exc
        except MemoryError as exc:
            raise ImageError(name, "not enough memory to decode the image") from exc
        except Exception as exc:  # Pillow raises many types on malformed data.
            raise ImageError(name, f"truncated or corrupt image data: {_describe(exc)}") from exc
    return _convert(img, mode, name)


_NOT_ALLOWED = (
    "not a recognised image format (lookalike reads JPEG, PNG, GIF, WebP, BMP, TIFF, "
    "PPM/PGM/PBM and AVIF)"
)


def _describe(exc: BaseException) -> str:
    """Return an exception's message, or its type name when it has none.

    Args:
        exc: The exception.

    Returns:
        A short description.
    """
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _orientation(img: Image.Image) -> int:
    """Return an image's EXIF orientation, 1 when absent or unreadable.

    Args:
        img: The image; for formats that keep EXIF after the pixel data (PNG) it
            must already be loaded.

    Returns:
        The orientation, 1 to 8.
    """
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # Broken EXIF must not make an otherwise good image unreadable.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _from_pil(source: Image.Image, name: str, *, limits: _Limits, mode: str) -> Image.Image:
    """Convert a PIL image supplied by the caller, without modifying it.

    Args:
        source: The image (its current frame is used).
        name: Its printable name.
        limits: As for :func:`load_image`.
        mode: As for :func:`load_image`.

    Returns:
        A new image in ``mode``.

    Raises:
        ImageTooLargeError: If the image exceeds a limit.
        ImageError: If the image cannot be loaded or has an unsupported mode.
    """
    limits.check(name, *source.size, source.mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            source.load()
            img = source
            if _orientation(img) in (2, 3, 4, 5, 6, 7, 8):
                img = ImageOps.exif_transpose(img)
        except Image.DecompressionBombError as exc:
            raise _pillow_bomb(name, exc, limits.pixels) from exc
        except Exception as exc:
            raise ImageError(name, f"cannot read the pixel data: {_describe(exc)}") from exc
    result = _convert(img, mode, name)
    return result.copy() if result is source else result


# --------------------------------------------------------------------------- modes


def _has_alpha(img: Image.Image) -> bool:
    """Whether an image carries transparency (alpha band, palette alpha or tRNS).

    Args:
        img: The image.

    Returns:
        True when some pixels may be transparent.
    """
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info:
        return True
    return img.mode == "P" and img.palette is not None and img.palette.mode.endswith("A")


def _convert(img: Image.Image, mode: str, name: str) -> Image.Image:
    """Convert a loaded image to 8-bit ``mode``, compositing transparency on white.

    Args:
        img: The loaded image.
        mode: ``"RGB"`` or ``"L"``.
        name: Its printable name.

    Returns:
        The image in ``mode`` (``img`` itself when already so).

    Raises:
        ImageError: If the pixel mode is not supported.
    """
    if img.mode == mode and not _has_alpha(img):
        return img
    try:
        flat = _to_8bit(img)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(name, f"cannot convert pixel mode {img.mode!r}: {_describe(exc)}") from exc
    if flat is None:
        raise ImageError(name, f"unsupported pixel mode {img.mode!r}")
    return _finish(flat, mode)


def _to_8bit(img: Image.Image) -> Image.Image | None:
    """Convert any pixel mode to one of ``"L"``, ``"LA"``, ``"RGB"``, ``"RGBA"``.

    Args:
        img: The loaded image.

    Returns:
        The converted image, or ``None`` for an unsupported mode.
    """
    src = img.mode
    alpha = _has_alpha(img)
    if src in ("LA", "RGBA") and "transparency" not in img.info:
        return img  # already there: no full-size copy
    if src in ("1", "L"):
        return img.convert("LA" if alpha else "L")
    if src in ("P", "PA", "RGB", "RGBA", "RGBa"):
        return img.convert("RGBA" if alpha else "RGB")
    if src in ("LA", "La"):
        return img.convert("LA")
    if src in ("RGBX", "CMYK", "YCbCr", "HSV"):
        return img.convert("RGB")
    if src == "LAB":
        return _lab_to_rgb(img)
    if src == "I" or src.startswith("I;16") or src == "F":
        return _numeric_to_8bit(img)
    return None


def _numeric_to_8bit(img: Image.Image) -> Image.Image:
    """Scale a loaded ``"I"``, ``"I;16*"`` or ``"F"`` image to ``"L"`` (``"LA"`` with a tRNS value).

    The pixels are read a block of rows at a time (:mod:`lookalike.imaging._scale`), never
    copied whole.

    Args:
        img: The image.

    Returns:
        The 8-bit image.
    """
    width, height = img.size

    def rows(start: int, stop: int) -> npt.NDArray[Any]:
        return np.asarray(img.crop((0, start, width, stop)))

    dtype = rows(0, 1).dtype
    out = Image.fromarray(_scale.to_u8(rows, (height, width), dtype))
    transparency = img.info.get("transparency")
    if isinstance(transparency, int) and not isinstance(transparency, bool):
        out.putalpha(Image.fromarray(_scale.equal_mask(rows, (height, width), transparency)))
    return out


def _lab_to_rgb(img: Image.Image) -> Image.Image | None:
    """Convert a CIE L*a*b* image to sRGB with Pillow's colour management.

    Args:
        img: An image in mode ``"LAB"``.

    Returns:
        The RGB image, or ``None`` when Pillow was built without LittleCMS.
    """
    try:
        from PIL import ImageCms
    except ImportError:
        return None
    transform = ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    return ImageCms.applyTransform(img, transform)


def _finish(img: Image.Image, mode: str) -> Image.Image:
    """Composite an ``L``/``LA``/``RGB``/``RGBA`` image on white and convert to ``mode``.

    Args:
        img: The 8-bit image.
        mode: ``"RGB"`` or ``"L"``.

    Returns:
        The image in ``mode``.
    """
    if img.mode in ("LA", "RGBA"):
        img = _over_white(img)
    return img if img.mode == mode else img.convert(mode)


def _over_white(img: Image.Image) -> Image.Image:
    """Composite an ``LA`` or ``RGBA`` image on white, a block of rows at a time.

    Args:
        img: The image.

    Returns:
        The ``L`` or ``RGB`` image; the only full-size allocation is the result (Pillow's
        masked paste, block by block, so the pixels are those of one whole-image paste).
    """
    base = img.mode[:-1]
    width, height = img.size
    flat = Image.new(base, img.size, 255 if base == "L" else (255, 255, 255))
    for start, stop in _scale.row_blocks(height, width * len(img.mode)):
        box = (0, start, width, stop)
        block = img.crop(box)
        flat.paste(block.convert(base), box, mask=block.getchannel("A"))
    return flat


# --------------------------------------------------------------------------- numpy


def _from_array(
    array: npt.NDArray[np.generic], name: str, *, limits: _Limits, mode: str
) -> Image.Image:
    """Build an image from a numpy array (the array is copied, never shared).

    Args:
        array: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.
        name: Its printable name.
        limits: As for :func:`load_image` (the decoded size is the array's).
        mode: As for :func:`load_image`.

    Returns:
        The image in ``mode``.

    Raises:
        ImageTooLargeError: For an array exceeding a limit.
        ImageError: For an unsupported shape or dtype, or an empty array.
    """
    shape = array.shape
    if array.ndim not in (2, 3) or (array.ndim == 3 and shape[2] not in (1, 3, 4)):
        raise ImageError(
            name,
            f"unsupported array shape {shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)",
        )
    if array.size == 0:
        raise ImageError(name, f"array is empty (shape {shape})")
    kind = array.dtype.kind
    if kind not in "buif" or array.dtype.hasobject:
        raise ImageError(
            name,
            f"unsupported array dtype {array.dtype}; expected uint8, uint16, bool, "
            "another integer type or float",
        )
    height, width = int(shape[0]), int(shape[1])
    bands = shape[2] if array.ndim == 3 else 1
    limits.check(name, width, height, f"array:{bands}:{array.dtype.str}")
    data = _scale.to_u8(lambda start, stop: array[start:stop], shape, array.dtype)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    img = Image.fromarray(np.ascontiguousarray(data))
    return _finish(img, mode)
