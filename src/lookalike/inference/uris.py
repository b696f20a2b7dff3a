"""Image files named by local paths or by URIs (``s3://bucket/prefix``, ``file:///abs``).

URIs are listed and read through fsspec (with pyarrow's filesystems behind it where fsspec
uses them), so ``lookalike embed`` reads an object store the same way on one machine and in
Ray tasks (:mod:`lookalike.inference.ray_data`). Local paths are read as everywhere else.
:func:`filesystem` is the one place a URI becomes an fsspec filesystem: a scheme whose
implementation is not installed (``s3://`` without s3fs) is one line naming the package, and
nothing reaches the network until a file is listed or read. :func:`modified_ns` reads an
object's modification time from what a listing says about it (each filesystem names it
differently). An index whose root is a URI is :mod:`lookalike.index.uri_root`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from lookalike.errors import DataError, ImageError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference.pipeline import load_array

__all__ = [
    "FileReader",
    "RecordingReader",
    "check_for_ray",
    "filesystem",
    "is_uri",
    "list_images",
    "modified_ns",
    "read_bytes",
    "scheme",
]

_TIMES = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")
"""Keys under which fsspec filesystems report a modification time (local and SFTP ``mtime``,
s3fs ``LastModified``, gcsfs ``updated``, adlfs ``last_modified``, memory ``created``)."""


def is_uri(name: str) -> bool:
    """Whether ``name`` is a URI (``scheme://…``) rather than a local path."""
    head, sep, _ = name.partition("://")
    return bool(sep) and head.replace("+", "").isalnum() and len(head) > 1


def scheme(uri: str) -> str:
    """The scheme of a URI, lower case (``"s3"`` for ``s3://bucket/key``)."""
    return uri.partition("://")[0].lower()


def filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem of a URI and the URI's path on it (no network is used).

    Args:
        uri: ``s3://bucket/prefix``, ``gs://…``, ``file:///abs``, ``memory://name``, …

    Returns:
        ``(filesystem, path without the scheme)``.

    Raises:
        DataError: fsspec, or the package implementing the scheme (s3fs, gcsfs, adlfs, …),
            is not installed (named, with the pip command), or fsspec does not know the scheme.
    """
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError as exc:
        raise DataError(f"{uri}: reading URIs needs fsspec: pip install fsspec") from exc
    protocol = scheme(uri)
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None)
        implementation = str(known_implementations.get(protocol, {}).get("class", protocol))
        package = str(missing or implementation).split(".")[0]
        raise DataError(
            f"{uri}: reading {protocol}:// URIs needs the {package} package: pip install {package}"
        ) from exc
    except ValueError as exc:
        raise DataError(f"{uri}: fsspec knows no filesystem for {protocol}://") from exc
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError, TypeError, OSError) as exc:
        raise DataError(f"cannot use {uri}: {exc}") from exc
    return fs, str(path)


def modified_ns(info: dict[str, Any]) -> int | None:
    """An object's modification time in ns since the epoch, from an fsspec listing entry.

    Args:
        info: One entry of ``fs.find(..., detail=True)`` or ``fs.info(path)``.

    Returns:
        The time, or ``None`` when the filesystem gives none this function understands
        (seconds as a number, a ``datetime``, or an ISO 8601 string).
    """
    for key in _TIMES:
        value = info.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return round(float(value) * 1e9)
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return round(value.timestamp() * 1e9)
    return None


def check_for_ray(uri: str) -> None:
    """Refuse a URI that Ray workers cannot read, before Ray starts.

    Raises:
        DataError: ``memory://``: it lives inside this process only.
    """
    if scheme(uri) == "memory":
        raise DataError(
            f"{uri}: memory:// lives inside this process and Ray workers cannot read it; "
            "use it without --ray, or use a file:// or object-store URI"
        )


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

    fs, root = filesystem(uri)
    try:
        names = [root] if fs.isfile(root) else sorted(fs.find(root))
    except (ImportError, ValueError, OSError) as exc:
        raise DataError(f"cannot list {uri}: {exc}") from exc
    wanted = [n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS]
    return [str(fs.unstrip_protocol(n)) for n in wanted]


def read_bytes(name: str, limit: int | None = None) -> bytes:
    """A file's bytes: a local path, or an fsspec URI.

    Args:
        name: The path or URI.
        limit: Most bytes accepted (``None``: any size).

    Raises:
        ImageError: It cannot be read, or it is larger than ``limit``.
    """
    try:
        if is_uri(name):
            fs, path = filesystem(name)
            with fs.open(path, "rb") as fp:
                data = bytes(fp.read() if limit is None else fp.read(limit + 1))
        else:
            data = Path(name).read_bytes()
    except DataError as exc:
        raise ImageError(name, str(exc)) from exc
    except (OSError, ValueError, ImportError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ImageError(name, f"cannot read file: {reason}") from exc
    if limit is not None and len(data) > limit:
        raise ImageError(name, f"larger than {limit >> 20} MiB: too large to read from a URI")
    return data


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
