"""An index database's failures in words: what went wrong, which file, and the fix.

:func:`database_errors` wraps every piece of work on an index (the
:class:`~lookalike.index.index.Index` methods) and turns a :class:`sqlite3.Error` or an
:class:`OSError` into one :class:`~lookalike.errors.IndexFolderError` line:

* a full disk (``SQLITE_FULL``, ``ENOSPC``): free space and run the same command again — every
  committed batch is kept;
* a damaged file (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``, a stored vector of the wrong size):
  rebuild it from the images with :func:`rebuild_command`
  (``lookalike index DIR --index IDX --rebuild``);
* a file that cannot be opened or written (permissions), a lock held too long, a disk I/O
  error.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.errors import IndexFolderError

__all__ = ["database_error", "database_errors", "rebuild_command"]

_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
# SQLite's primary result codes (``sqlite3.SQLITE_*`` only exist from Python 3.11)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _FULL, _CANTOPEN = 3, 5, 6, 8, 10, 13, 14


def rebuild_command(folder: Path, root: Path | str | None = None) -> str:
    """The command that recreates an index from its images (``DIR`` when the root is unknown)."""
    return f"lookalike index {root if root is not None else 'DIR'} --index {folder} --rebuild"


def database_error(
    db: Path, exc: sqlite3.Error | OSError, root: Path | str | None = None
) -> IndexFolderError:
    """One line for a failure of an index database: what it is, which file, and the fix.

    Args:
        db: The database file.
        exc: What SQLite (or the operating system) raised.
        root: The indexed folder, when known (named in the rebuild command).

    Returns:
        The error to raise: a full disk (free space and run again), a damaged file (rebuild
        it with :func:`rebuild_command`), a read-only or unreadable file (permissions), or a
        database another process keeps locked.
    """
    folder = db.parent
    rebuild = rebuild_command(folder, root)
    detail = str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)
    if isinstance(exc, OSError):
        if exc.errno in _FULL_ERRNOS:
            return IndexFolderError(
                f"the disk holding the index {db} is full ({detail}): free some space and run "
                f"the same command again (finished batches are kept); if the index is then "
                f"reported damaged, rebuild it: {rebuild}"
            )
        where = exc.filename if exc.filename else folder
        return IndexFolderError(f"cannot use the index in {folder}: {detail} ({where})")
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; else the words decide
    code = None if code is None else code & 0xFF  # extended codes carry the primary one
    text = detail.lower()
    if code == _FULL or "disk is full" in text:
        return IndexFolderError(
            f"the disk holding the index {db} is full ({detail}): free some space and run the "
            f"same command again (finished batches are kept); if the index is then reported "
            f"damaged, rebuild it: {rebuild}"
        )
    if code in (_READONLY, _PERM, _CANTOPEN) or ("readonly" in text or "unable to open" in text):
        return IndexFolderError(
            f"cannot open or write the index database {db} ({detail}): check that its folder "
            "exists and that you may read and write it"
        )
    if code in (_BUSY, _LOCKED) or "locked" in text:
        return IndexFolderError(
            f"the index database {db} stayed locked by another process ({detail}); wait for it "
            "to finish and try again"
        )
    if code == _IOERR or "disk i/o" in text:
        return IndexFolderError(
            f"cannot read or write the index database {db} ({detail}): check the disk; if the "
            f"index is then reported damaged, rebuild it: {rebuild}"
        )
    return IndexFolderError(
        f"the index database {db} is damaged ({detail}); rebuild it from the images: {rebuild}"
    )


@contextmanager
def database_errors(db: Path, root: Path | str | None = None) -> Iterator[None]:
    """Turn SQLite errors and file-system errors inside into :func:`database_error`'s one line.

    Args:
        db: The database file.
        root: The indexed folder (or URI), when known.

    Raises:
        IndexFolderError: Instead of :class:`sqlite3.Error` or :class:`OSError`.
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise database_error(db, exc, root) from exc
    except OSError as exc:
        raise database_error(db, exc, root) from exc
