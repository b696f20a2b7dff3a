"""Numeric pixels (16-bit, 32-bit integer, float, bool) to 8 bits, a block of rows at a time.

The whole-image way (``np.asarray(img).astype(np.float64)``, then ``nan_to_num``, scale, clip,
round) held five full-size float64 copies of a float TIFF at once: 1.7 GB for an 8000 × 8000
image of 256 MB. Here the source is read in blocks of about :data:`BLOCK_BYTES`, so the peak
is the decoded image, the 8-bit result and one block, whatever the image's size.

The rules (unchanged from the whole-image way):

* ``uint8`` is copied; ``bool`` becomes 0/255; ``uint16`` is scaled (``round(v / 257)``);
* other integers: kept when the maximum is at most 255, scaled as 16-bit when at most 65535
  (negative values become 0 in both cases), min-max scaled to 0..255 otherwise;
* floats: NaN becomes 0; values all within [0, 1] are multiplied by 255, others are clipped
  to [0, 255]; the result is rounded half up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK_BYTES", "RowReader", "equal_mask", "row_blocks", "to_u8"]

BLOCK_BYTES = 4 * 2**20
"""Float64 working memory per block of rows."""

RowReader = Callable[[int, int], npt.NDArray[Any]]
"""Rows ``[start, stop)`` of the source as an array ``(rows, W)`` or ``(rows, W, C)``."""


def row_blocks(height: int, row_values: int) -> Iterator[tuple[int, int]]:
    """Row ranges covering ``height`` rows, each about :data:`BLOCK_BYTES` of float64."""
    step = max(1, BLOCK_BYTES // max(1, row_values * 8))
    for start in range(0, height, step):
        yield start, min(height, start + step)


def _u16(values: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    wide = values.astype(np.uint32)
    return ((wide + 128) // 257).astype(np.uint8)


def _float_clean(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)


def _extremes(read: RowReader, height: int, row_values: int, kind: str) -> tuple[float, float]:
    """The minimum and maximum over all rows (after NaN → 0 for floats)."""
    low, high = np.inf, -np.inf
    for start, stop in row_blocks(height, row_values):
        block = read(start, stop)
        if kind == "f":
            block = _float_clean(block)
        low = min(low, float(block.min()))
        high = max(high, float(block.max()))
    return low, high


def _convert_block(
    block: npt.NDArray[Any], kind: str, itemsize: int, low: float, high: float
) -> npt.NDArray[np.uint8]:
    """One block by the rules in the module docstring, given the global extremes."""
    if kind == "b":
        return np.where(block, np.uint8(255), np.uint8(0))
    if kind == "u" and itemsize == 1:
        return block.astype(np.uint8)
    if kind == "u" and itemsize == 2:
        return _u16(block)
    if kind == "f":
        work = _float_clean(block)
        if low >= 0.0 and high <= 1.0:
            work *= 255.0
        return np.floor(np.clip(work, 0.0, 255.0) + 0.5).astype(np.uint8)
    wide = block.astype(np.int64)
    if high <= 255:
        return np.clip(wide, 0, 255).astype(np.uint8)
    if high <= 65535:
        return _u16(np.clip(wide, 0, 65535))
    scaled = (wide - int(low)).astype(np.float64) * (255.0 / (high - low))
    return np.floor(scaled + 0.5).astype(np.uint8)


def to_u8(read: RowReader, shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[np.uint8]:
    """Convert numeric pixels to 8 bits, a block of rows at a time.

    Args:
        read: Reads rows of the source (see :data:`RowReader`).
        shape: The source's shape, ``(H, W)`` or ``(H, W, C)``; not empty.
        dtype: The source's dtype: bool, an integer or a float type.

    Returns:
        A new ``uint8`` array of ``shape``.
    """
    height = shape[0]
    row_values = int(np.prod(shape[1:]))
    kind, itemsize = dtype.kind, dtype.itemsize
    needs_range = kind == "f" or (kind in "iu" and not (kind == "u" and itemsize <= 2))
    low, high = _extremes(read, height, row_values, kind) if needs_range else (0.0, 0.0)
    out = np.empty(shape, dtype=np.uint8)
    for start, stop in row_blocks(height, row_values):
        out[start:stop] = _convert_block(read(start, stop), kind, itemsize, low, high)
    return out


def equal_mask(read: RowReader, shape: tuple[int, ...], value: int) -> npt.NDArray[np.uint8]:
    """An alpha mask: 0 where the source equals ``value`` (a tRNS colour), else 255.

    Args:
        read: Reads rows of a single-band source.
        shape: ``(H, W)``.
        value: The transparent value.

    Returns:
        ``uint8`` array of ``shape``.
    """
    out = np.empty(shape, dtype=np.uint8)
    for start, stop in row_blocks(shape[0], int(np.prod(shape[1:]))):
        out[start:stop] = np.where(read(start, stop) == value, np.uint8(0), np.uint8(255))
    return out
