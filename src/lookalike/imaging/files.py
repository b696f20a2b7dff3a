"""Listing image files without decoding them: what the index and the data loaders walk.

:func:`iter_image_files` lists the image files of a folder in a deterministic order (by
path relative to the root, compared name by name), with include/exclude glob patterns;
a file is an image when its suffix is in :data:`IMAGE_EXTENSIONS`. :func:`image_folder`
is the one check that a root is an existing folder, shared by :func:`iter_image_files`
and :meth:`lookalike.data.LabelledImages.from_folder`. Nothing here opens a file: decode
with :func:`lookalike.imaging.images.load_image`.

File names are Python's file-system strings: on POSIX a name that is not valid UTF-8 keeps
its undecodable bytes as lone surrogates (``surrogateescape``), so the path still opens the
file; :func:`shown_path` is the form safe to print or put in JSON.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lookalike.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "OnError", "image_folder", "iter_image_files", "shown_path"]

OnError = Callable[[Path, str], None]
"""Told about a file or folder that cannot be examined: its path and the reason in words."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

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
    on_error: OnError | None = None,
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
        on_error: Called with the path and the reason for each sub-folder that cannot be
            listed and each entry whose type cannot be read (permission denied, a symbolic
            link loop), which are then skipped. ``None``: such a sub-folder raises
            :class:`DataError` and such an entry is skipped silently. The root itself
            always raises.

    Returns:
        An iterator over the image files, each ``root`` joined with its path
        relative to ``root``.

    Raises:
        DataError: If ``root`` does not exist or is not a folder (at once), or it (or,
            without ``on_error``, a folder under it) cannot be listed (while iterating).
    """
    base, include, exclude = image_folder(root, include, exclude)
    return _walk(base, (), recursive, include, exclude, set(), on_error)


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as it is safe to print or put in JSON: valid Unicode, on one line.

    Bytes of a name that are not valid UTF-8 (kept by Python as lone surrogates) are written
    as ``\\xNN``, and control characters (a newline in a name) as ``\\xNN`` too; every
    other path comes back unchanged.

    Args:
        path: A file-system path or name.

    Returns:
        The printable form.
    """
    text = os.fspath(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate not from surrogateescape (Windows names)
        raw = text.encode("utf-8", "surrogatepass")
    shown = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown)


def _walk(
    folder: Path,
    parts: tuple[str, ...],
    recursive: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    seen: set[tuple[int, int]],
    on_error: OnError | None,
) -> Iterator[Path]:
    """Yield the image files of one folder and, if asked, of its sub-folders.

    Args:
        folder: The folder, as ``root`` joined with ``parts``.
        parts: Its path relative to the root, as names.
        recursive: Whether to descend.
        include: Patterns a file must match one of (when not empty).
        exclude: Patterns a file must match none of.
        seen: ``(device, inode)`` of the folders entered so far; updated.
        on_error: See :func:`iter_image_files`.

    Yields:
        Paths to image files.

    Raises:
        DataError: If the folder cannot be listed (a sub-folder: only without ``on_error``).
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
        reason = f"cannot list folder: {exc.strerror or exc}"
        if on_error is None or not parts:
            raise DataError(f"cannot list image folder {shown_path(folder)}: {reason}") from exc
        on_error(folder, reason)
        return
    for entry_name, entry in entries:
        if entry_name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as exc:
            if on_error is not None:
                on_error(folder / entry_name, f"cannot examine: {exc.strerror or exc}")
            continue
        if is_dir:
            if recursive:
                yield from _walk(
                    folder / entry_name,
                    (*parts, entry_name),
                    recursive,
                    include,
                    exclude,
                    seen,
                    on_error,
                )
        elif is_file and Path(entry_name).suffix.lower() in IMAGE_EXTENSIONS:
            relative = "/".join((*parts, entry_name))
            if include and not any(fnmatch.fnmatchcase(relative, p) for p in include):
                continue
            if any(fnmatch.fnmatchcase(relative, p) for p in exclude):
                continue
            yield folder / entry_name
