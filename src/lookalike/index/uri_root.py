"""An index whose root is a URI: an object-store prefix or folder read through fsspec.

``Index.create("idx", "s3://bucket/photos", ...)`` indexes the objects under a prefix as
:mod:`lookalike.index.update` indexes the files under a folder; ``gs://…``, ``file:///abs``
and any other fsspec URI work the same way, ``memory://`` too (one process only: Ray workers
cannot see it). What changes from a local folder, and nothing else does:

* **Listing** (:func:`scan`): ``fs.find(prefix, detail=True)``, one call that succeeds or
  fails whole (no per-folder ``skipped`` entries as on a local disk), then the rules of
  :func:`~lookalike.imaging.files.iter_image_files`: an image extension, no name starting with
  ``.`` on the way, the include/exclude patterns on the relative path.
* **"Has it changed?"** (:func:`stamp`): the object's size, and in the modification-time
  column a stamp: a stable integer derived from the object's content tag when the listing
  gives one (S3 ``ETag``, GCS ``generation``, a version id, an MD5), since a tag changes
  whenever the object is rewritten; else its modification time in ns (with the same
  "racily recent" rule as local files); else ``-1``, so the object is hashed again at every
  update (downloaded again, but embedded again only if its content changed).
* **Reading**: :func:`~lookalike.index.reader.hash_or_reason` streams an object to hash it
  (:data:`~lookalike.index.update.URI_HASH_THREADS` at a time in one process, in Ray tasks
  with Ray); :class:`~lookalike.index.reader.VerifiedReader` reads it once and hashes and
  decodes those same bytes, as for a local file (an object over 256 MiB is skipped). As for
  a local file, a new object is read twice: hashed (to find its content in the cache), then
  read to be embedded.
* **The record**: the index stores the URI itself as its root (no relative form).

Nothing here reaches the network until :func:`scan` or :func:`exists` is called: opening an
index with a URI root reads only its database.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from lookalike.errors import DataError, IndexFolderError
from lookalike.imaging.files import IMAGE_EXTENSIONS
from lookalike.index.update import RACY_SECONDS, Found
from lookalike.inference.uris import check_for_ray, filesystem, is_uri, modified_ns

__all__ = ["TAGS", "check", "exists", "is_uri", "normalise", "scan", "stamp"]

TAGS = ("ETag", "etag", "generation", "VersionId", "version_id", "md5Hash", "content_md5")
"""Listing keys whose value changes whenever an object's content is rewritten."""
_STAMP_MASK = (1 << 62) - 1


def normalise(uri: str) -> str:
    """The URI as an index records it: no trailing ``/`` (``s3://b/p/`` → ``s3://b/p``)."""
    head, _, path = uri.partition("://")
    stripped = path.rstrip("/")
    return f"{head}://{stripped if stripped or not path else '/'}"


def check(uri: str, *, ray: bool = False) -> None:
    """Refuse, before any work, a URI root that cannot be used (no network is used).

    Args:
        uri: The root.
        ray: Whether it is to be read by Ray workers.

    Raises:
        DataError: The scheme's fsspec package is missing (named), or ``memory://`` with Ray.
    """
    filesystem(uri)
    if ray:
        check_for_ray(uri)


def exists(uri: str) -> bool:
    """Whether the URI is a folder or prefix holding objects (this reaches the store).

    Raises:
        DataError: The store cannot be reached or refuses the request (one line).
    """
    fs, path = filesystem(uri)
    try:
        return bool(fs.isdir(path))
    except Exception as exc:  # s3fs/gcsfs raise their clients' own errors, not only OSError
        raise DataError(f"cannot reach {uri}: {_reason(exc)}") from exc


def stamp(info: dict[str, Any], racy_ns: int) -> int:
    """What the index compares, with the size, to tell whether an object changed.

    Args:
        info: The object's listing entry (``fs.find(..., detail=True)``).
        racy_ns: Modification times from this one (ns) are too recent to trust.

    Returns:
        A non-negative integer from the object's content tag (:data:`TAGS`), else its
        modification time in ns, else ``-1`` (too recent, or unknown: hash it every time).
    """
    for key in TAGS:
        value = info.get(key)
        if value not in (None, ""):
            digest = hashlib.blake2b(f"{key}={value}".encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") & _STAMP_MASK
    mtime = modified_ns(info)
    return mtime if mtime is not None and mtime < racy_ns else -1


def scan(uri: str, include: Sequence[str], exclude: Sequence[str]) -> Found:
    """List the image objects under a URI root with their size and stamp.

    The counterpart of :func:`lookalike.index.update.scan` for a URI root (see the module
    notes).

    Args:
        uri: The root (normalised).
        include: Glob patterns on the relative path, one of which must match (if any).
        exclude: Glob patterns none of which may match.

    Returns:
        ``{relative path: (size in bytes, stamp)}``.

    Raises:
        IndexFolderError: The root holds no objects (a missing prefix or bucket: the index is
            left as it is rather than emptied).
        DataError: The store cannot be reached or listed.
    """
    racy = time.time_ns() - int(RACY_SECONDS * 1e9)
    fs, base = filesystem(uri)
    if not exists(uri):
        raise IndexFolderError(
            f"the indexed location {uri} does not exist (or holds no objects); if the images "
            "moved, open the index with root=THEIR_NEW_LOCATION"
        )
    try:
        listing: dict[str, dict[str, Any]] = fs.find(base, detail=True)
    except Exception as exc:  # the store's client errors, not only OSError
        raise DataError(f"cannot list {uri}: {_reason(exc)}") from exc
    prefix = base.rstrip("/") + "/"
    found: Found = {}
    for name, info in listing.items():
        name = str(name)
        if info.get("type", "file") != "file" or not name.startswith(prefix):
            continue
        rel = name[len(prefix) :]
        parts = rel.split("/")
        if any(part.startswith(".") or not part for part in parts):
            continue
        if PurePosixPath(rel).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if include and not any(fnmatch.fnmatchcase(rel, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(rel, p) for p in exclude):
            continue
        found[rel] = (int(info.get("size") or 0), stamp(info, racy))
    return found


def _reason(exc: BaseException) -> str:
    """An exception in words (its ``strerror`` when it has one)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
