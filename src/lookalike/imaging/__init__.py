"""Pixels in: opening images safely, listing image folders, turning images into model inputs.

* :mod:`~lookalike.imaging.images` — :func:`load_image`, the one safe door for pixels:
  any path, bytes, PIL image or array becomes a decoded 8-bit ``"RGB"`` or ``"L"`` image
  (EXIF orientation, every Pillow mode, decompression-bomb guard, JPEG draft decoding);
  every failure is an :class:`~lookalike.errors.ImageError`. :data:`ImageSource` is what
  it accepts, :func:`image_name` how a source is named in messages,
  :data:`DEFAULT_MAX_PIXELS` the bomb limit.
* :mod:`~lookalike.imaging.files` — :func:`iter_image_files` lists a folder's image files
  (by :data:`IMAGE_EXTENSIONS`) in a deterministic order with include/exclude patterns,
  without opening them; :func:`image_folder` checks a root folder.
* :mod:`~lookalike.imaging.preprocess` — :class:`Preprocess`: input size, mean/std,
  channels and resize policy of a model; images → normalised float arrays (numpy).
  :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`.

The whole package is torch-free (PIL and numpy only), and names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.imaging.files import IMAGE_EXTENSIONS, image_folder, iter_image_files
    from lookalike.imaging.images import DEFAULT_MAX_PIXELS, ImageSource, image_name, load_image
    from lookalike.imaging.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

_LAZY = {
    "DEFAULT_MAX_PIXELS": "lookalike.imaging.images",
    "ImageSource": "lookalike.imaging.images",
    "image_name": "lookalike.imaging.images",
    "load_image": "lookalike.imaging.images",
    "IMAGE_EXTENSIONS": "lookalike.imaging.files",
    "image_folder": "lookalike.imaging.files",
    "iter_image_files": "lookalike.imaging.files",
    "IMAGENET_MEAN": "lookalike.imaging.preprocess",
    "IMAGENET_STD": "lookalike.imaging.preprocess",
    "Preprocess": "lookalike.imaging.preprocess",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "Preprocess",
    "image_folder",
    "image_name",
    "iter_image_files",
    "load_image",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
