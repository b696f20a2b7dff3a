"""Listing image files without decoding them: what the index and the data loaders walk.

:func:`iter_image_files` lists the image files of a folder in a deterministic order (by
path relative to the root, compared name by name), with include/exclude glob patterns;
a file is an image when its suffix is in :data:`IMAGE_EXTENSIONS`. :func:`image_folder`
is the one check that a root is an existing folder, shared by :func:`iter_image_files`
and :meth:`lookalike.data.LabelledImages.from_folder`. Nothing here opens a file: decode
with :func:`lookalike.imaging.images.load_image`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from lookalike.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "image_folder", "iter_image_files"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jfif",
        ".png",
        ".bmp",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
    }
)
"""File suffixes (lower case, with the dot) that :func:`iter_image_files` yields."""


def image_folder(
    root: str | os.PathLike[str], include: str | Sequence[str], exclude: str | Sequence[str]
) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """Check that ``root`` is an existing folder; return it and the patterns as tuples.

    Raises:
        DataError: ``root`` does not exist or is not a folder.
    """
    include = (include,) if isinstance(include, str) else tuple(include)
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    base = Path(root)
    if not base.exists():
        raise DataError(f"image folder {base} does not exist")
    if not base.is_dir():
        raise DataError(f"image folder {base} is not a folder")
    return base, include, exclude


def iter_image_files(
    root: str | os.PathLike[str],
    *,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[Path]:
    """List the image files under a folder, in a deterministic order.

    The folder is checked at once; its files are then listed lazily. A file is listed
    when its suffix, in lower case, is in :data:`IMAGE_EXTENSIONS`.
    Files and folders whose name starts with ``"."`` are skipped. Files are ordered
    by their path relative to ``root``, compared folder by folder and name by name
    (code-point order, case-sensitive), so the order does not depend on the file
    system. Symbolic links are followed; a folder already visited is not entered
    again.

    Args:
        root: The folder to list.
        recursive: Whether to descend into sub-folders.
        include: Glob patterns (:func:`fnmatch.fnmatchcase`: case-sensitive, and
            ``*`` also matches ``/``) matched against the path relative to ``root``
            in POSIX form, e.g. ``"cats/*.jpg"``; when given, a file must match at
            least one.
        exclude: Glob patterns as for ``include``; a file matching any is skipped.

    Returns:
        An iterator over the image files, each ``root`` joined with its path
        relative to ``root``.

    Raises:
        DataError: If ``root`` does not exist or is not a folder (at once), or a
            folder under it cannot be listed (while iterating).
    """
    base, include, exclude = image_folder(root, include, exclude)
    return _walk(base, (), recursive, include, exclude, set())


def _walk(
    folder: Path,
    parts: tuple[str, ...],
    recursive: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    seen: set[tuple[int, int]],
) -> Iterator[Path]:
    """Yield the image files of one folder and, if asked, of its sub-folders.

    Args:
        folder: The folder, as ``root`` joined with ``parts``.
        parts: Its path relative to the root, as names.
        recursive: Whether to descend.
        include: Patterns a file must match one of (when not empty).
        exclude: Patterns a file must match none of.
        seen: ``(device, inode)`` of the folders entered so far; updated.

    Yields:
        Paths to image files.

    Raises:
        DataError: If the folder cannot be listed.
    """
    try:
        st = folder.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        with os.scandir(folder) as scan:
            entries = sorted((entry.name, entry) for entry in scan)
    except OSError as exc:
        raise DataError(f"cannot list image folder {folder}: {exc.strerror or exc}") from exc
    for entry_name, entry in entries:
        if entry_name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError:
            continue
        if is_dir:
            if recursive:
                yield from _walk(
                    folder / entry_name, (*parts, entry_name), recursive, include, exclude, seen
                )
        elif is_file and Path(entry_name).suffix.lower() in IMAGE_EXTENSIONS:
            relative = "/".join((*parts, entry_name))
            if include and not any(fnmatch.fnmatchcase(relative, p) for p in include):
                continue
            if any(fnmatch.fnmatchcase(relative, p) for p in exclude):
                continue
            yield folder / entry_name
