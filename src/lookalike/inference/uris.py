"""Image files named by local paths or by URIs (``s3://bucket/prefix``, ``file:///abs``).

URIs are listed and read through fsspec (with pyarrow's filesystems behind it where fsspec
uses them), so ``lookalike embed`` reads an object store the same way on one machine and in
Ray tasks (:mod:`lookalike.inference.ray_data`). Local paths are read as everywhere else.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Protocol

import numpy as np

from lookalike.errors import DataError, ImageError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference.pipeline import load_array

__all__ = ["FileReader", "RecordingReader", "is_uri", "list_images", "read_bytes"]


def is_uri(name: str) -> bool:
    """Whether ``name`` is a URI (``scheme://…``) rather than a local path."""
    head, sep, _ = name.partition("://")
    return bool(sep) and head.replace("+", "").isalnum() and len(head) > 1


def list_images(uri: str) -> list[str]:
    """The image files under an fsspec URI (a folder or prefix, walked), sorted, as URIs.

    Args:
        uri: ``file:///abs/folder``, ``s3://bucket/prefix``, … (a single file is listed alone).

    Returns:
        Full URIs of the files whose extension is an image's.

    Raises:
        DataError: fsspec is missing, the scheme is unknown, or the location cannot be listed.
    """
    from lookalike.imaging.files import IMAGE_EXTENSIONS

    try:
        import fsspec
    except ImportError as exc:
        raise DataError(f"{uri}: reading URIs needs fsspec: pip install fsspec") from exc
    try:
        fs, root = fsspec.core.url_to_fs(uri)
        names = [root] if fs.isfile(root) else sorted(fs.find(root))
    except (ImportError, ValueError, OSError) as exc:
        raise DataError(f"cannot list {uri}: {exc}") from exc
    wanted = [n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS]
    return [str(fs.unstrip_protocol(n)) for n in wanted]


def read_bytes(name: str) -> bytes:
    """A file's bytes: a local path, or an fsspec URI.

    Raises:
        ImageError: It cannot be read.
    """
    try:
        if is_uri(name):
            import fsspec

            with fsspec.open(name, "rb") as fp:
                return bytes(fp.read())
        return Path(name).read_bytes()
    except (OSError, ValueError, ImportError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ImageError(name, f"cannot read file: {reason}") from exc


class RecordingReader(Protocol):
    """Opens one file as the model's input (C, H, W) and may record ``{name: (hash, size)}``."""

    read: dict[str, tuple[str, int]]

    def __call__(self, name: str) -> np.ndarray: ...


class FileReader:
    """A :class:`RecordingReader` for local paths and URIs that records nothing (``embed``).

    Args:
        preprocess: The model's preprocessing.
    """

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess
        self.read: dict[str, tuple[str, int]] = {}

    def __call__(self, name: str) -> np.ndarray:
        """float32 (C, H, W); raises :class:`~lookalike.errors.ImageError`."""
        if not is_uri(name):
            return load_array(self.preprocess, name)
        try:
            return self.preprocess.load(read_bytes(name))
        except ImageError as exc:
            raise ImageError(name, exc.cause) from exc
