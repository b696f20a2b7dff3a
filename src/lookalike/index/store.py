"""The SQLite database behind :class:`lookalike.index.index.Index`: the index's source of truth.

Tables:

* ``meta(key, value)`` — format, model key, embedding size, FAISS settings, root, patterns and
  the *generation*: a token that changes in every transaction that changes which vectors the
  index holds (a counter plus random letters, so a generation lost to a power cut is never
  reused by later transactions).
* ``embeddings(hash, vector)`` — the embedding cache: one float32 vector (a BLOB of ``4·D``
  bytes) per content hash, so moved or copied files are never embedded twice.
* ``files(id, path, size, mtime_ns, content_hash, label)`` — one row per indexed file; ``path``
  is relative to the indexed root with ``/`` separators; ``id`` is the FAISS id and never reused
  (``AUTOINCREMENT``).

The database runs in WAL mode; every change happens inside one ``BEGIN IMMEDIATE`` transaction,
so a process killed at any point leaves the last committed state.

**File names.** Paths are Python's file-system strings: a name that is not valid UTF-8 holds
its undecodable bytes as lone surrogates (``surrogateescape``), which SQLite cannot store as
text. Such a path is stored as a BLOB of its bytes (:func:`os.fsencode`), every other path as
text, so each name has exactly one stored form and the ``UNIQUE`` column still holds.

**Errors.** Its callers wrap their work in :func:`lookalike.index.failures.database_errors`,
which turns every SQLite failure (a damaged file, a full disk, a read-only folder, a lock held
too long) into one :class:`~lookalike.errors.IndexFolderError` naming the database and the fix.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import IndexFolderError
from lookalike.index.failures import rebuild_command

__all__ = ["FORMAT", "SCHEMA_VERSION", "FileRow", "Snapshot", "Store"]

FORMAT = "lookalike-index"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE embeddings (hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL REFERENCES embeddings(hash),
    label TEXT
);
CREATE INDEX files_by_hash ON files(content_hash);
"""


@dataclass(frozen=True)
class FileRow:
    """One indexed file.

    Attributes:
        id: Its FAISS id.
        size: File size in bytes when indexed.
        mtime_ns: Modification time in nanoseconds when indexed.
        content_hash: Hex digest of its bytes.
    """

    id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class Snapshot:
    """Every indexed vector at one generation, ordered by id.

    Attributes:
        generation: The generation they reflect.
        ids: FAISS ids (N,), int64.
        paths: Relative paths (N).
        labels: Labels (N), ``None`` where unset.
        vectors: Unit rows (N, D), float32.
    """

    generation: str
    ids: npt.NDArray[np.int64]
    paths: list[str]
    labels: list[str | None]
    vectors: npt.NDArray[np.float32]


class Store:
    """A connection to an index database.

    Args:
        path: The database file.
        create: Create the schema and ``meta`` in a new, empty file.
        meta: The initial ``meta`` values when creating.

    Raises:
        IndexFolderError: If the file is not a complete lookalike index (when opening).
        sqlite3.Error: If it cannot be opened (damaged, unreadable): callers wrap their
            work in :func:`lookalike.index.failures.database_errors`, which knows the
            indexed folder.
    """

    def __init__(
        self, path: Path, *, create: bool = False, meta: dict[str, Any] | None = None
    ) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if create:
                self._create(meta or {})
            elif self.meta("format") != FORMAT:
                raise IndexFolderError(
                    f"{path.parent} is not a complete lookalike index (its creation was "
                    "interrupted, or it is another program's file); create the index again: "
                    f"{rebuild_command(path.parent)}"
                )
        except BaseException:
            self.conn.close()
            raise

    @staticmethod
    def probe(path: Path) -> str:
        """What a database file holds, without changing it.

        Args:
            path: The database file.

        Returns:
            ``"absent"`` (no file), ``"empty"`` (no tables: a creation killed before it
            committed), ``"index"`` (a lookalike index) or ``"foreign"`` (anything else,
            including a damaged file).
        """
        if not path.exists():
            return "absent"
        try:
            conn = sqlite3.connect(path, timeout=30.0)
            try:
                names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if not names:
                    return "empty"
                if "meta" in names:
                    row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                    if row is not None and json.loads(row[0]) == FORMAT:
                        return "index"
            finally:
                conn.close()
        except (sqlite3.Error, ValueError):
            pass
        return "foreign"

    def _create(self, meta: dict[str, Any]) -> None:
        """Create the schema and the meta rows in one transaction."""
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            values = {"format": FORMAT, "schema": SCHEMA_VERSION, "generation": "0", **meta}
            for key, value in values.items():
                self.set_meta(key, value)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self._rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()  # SQLite keeps a transaction whose COMMIT failed open
            raise

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (it does on a full disk)."""
        if self.conn.in_transaction:
            with suppress(sqlite3.Error):  # the original error is the one worth reporting
                self.conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ meta

    def meta(self, key: str) -> Any:
        """A meta value decoded from JSON, ``None`` when absent (or no meta table)."""
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Set a meta value (JSON-encoded); call inside a transaction."""
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    @property
    def generation(self) -> str:
        """The committed generation."""
        return str(self.meta("generation"))

    def bump_generation(self) -> str:
        """Give the current transaction a new generation and return it."""
        counter = int(str(self.meta("generation")).split("g")[0])
        generation = f"{counter + 1}g{secrets.token_hex(4)}"
        self.set_meta("generation", generation)
        return generation

    # ------------------------------------------------------------------ reading

    def rows(self) -> dict[str, FileRow]:
        """Every indexed file, by relative path."""
        cursor = self.conn.execute("SELECT path, id, size, mtime_ns, content_hash FROM files")
        return {_name(path): FileRow(i, size, mtime, h) for path, i, size, mtime, h in cursor}

    def has(self, path: str) -> bool:
        """Whether a relative path is indexed."""
        row = self.conn.execute("SELECT 1 FROM files WHERE path = ?", (_stored(path),)).fetchone()
        return row is not None

    def count(self) -> int:
        """Number of indexed files."""
        return int(self.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def cached(self, hashes: Iterable[str], dim: int) -> dict[str, npt.NDArray[np.float32]]:
        """The cached vectors of those content hashes that have one."""
        wanted = list(hashes)
        found: dict[str, npt.NDArray[np.float32]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for h, blob in self.conn.execute(
                f"SELECT hash, vector FROM embeddings WHERE hash IN ({marks})", chunk
            ):
                found[h] = _vector(blob, dim)
        return found

    def snapshot(self, dim: int, paths: Sequence[str] | None = None) -> Snapshot:
        """Every indexed vector (or those of ``paths``) and the generation, read consistently."""
        self.conn.execute("BEGIN")
        try:
            generation = self.generation
            sql = (
                "SELECT f.id, f.path, f.label, e.vector FROM files f "
                "JOIN embeddings e ON e.hash = f.content_hash"
            )
            if paths is None:
                rows = self.conn.execute(sql + " ORDER BY f.id").fetchall()
            else:
                rows = []
                for start in range(0, len(paths), 500):
                    chunk = [_stored(p) for p in paths[start : start + 500]]
                    marks = ",".join("?" * len(chunk))
                    rows += self.conn.execute(sql + f" WHERE f.path IN ({marks})", chunk)
                rows.sort()
        finally:
            self.conn.execute("COMMIT")
        vectors = np.zeros((len(rows), dim), np.float32)
        for i, row in enumerate(rows):
            vectors[i] = _vector(row[3], dim)
        return Snapshot(
            generation,
            np.asarray([r[0] for r in rows], dtype=np.int64),
            [_name(r[1]) for r in rows],
            [_label(r[2]) for r in rows],
            vectors,
        )

    @contextmanager
    def reading(self) -> Iterator[str]:
        """A read transaction: what is read inside it is one generation's state.

        Yields:
            That generation.
        """
        self.conn.execute("BEGIN")
        try:
            yield self.generation
        finally:
            self.conn.execute("COMMIT")

    def vector_blocks(
        self, dim: int, block: int = 20_000
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Every indexed file's id and vector, in id order, ``block`` rows at a time.

        Memory holds one block (``block × D × 4`` bytes, twice while decoding), never all of
        them. Call inside :meth:`reading` for a consistent view across blocks and passes.

        Args:
            dim: Embedding size D.
            block: Rows per block.

        Yields:
            ``(ids (B,), vectors (B, D) float32)``.
        """
        sql = (
            "SELECT f.id, e.vector FROM files f JOIN embeddings e ON e.hash = f.content_hash "
            "WHERE f.id > ? ORDER BY f.id LIMIT ?"
        )
        last = -1
        while True:
            rows = self.conn.execute(sql, (last, block)).fetchall()
            if not rows:
                return
            vectors = np.zeros((len(rows), dim), np.float32)
            for i, row in enumerate(rows):
                vectors[i] = _vector(row[1], dim)
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            last = int(ids[-1])
            del rows
            yield ids, vectors

    def id_hashes(self) -> dict[int, str]:
        """``{id: content hash}`` of every indexed file."""
        cursor = self.conn.execute("SELECT id, content_hash FROM files")
        return {int(i): str(h) for i, h in cursor}

    def vectors_by_id(
        self, ids: Iterable[int], dim: int
    ) -> tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.float32]]:
        """The ids, content hashes and vectors (N, D) float32 of those ids that exist, by id."""
        wanted = sorted({int(i) for i in ids})
        rows: list[tuple[int, str, bytes]] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.conn.execute(
                "SELECT f.id, f.content_hash, e.vector FROM files f JOIN embeddings e "
                f"ON e.hash = f.content_hash WHERE f.id IN ({marks}) ORDER BY f.id",
                chunk,
            ).fetchall()
        vectors = np.zeros((len(rows), dim), np.float32)
        for k, row in enumerate(rows):
            vectors[k] = _vector(row[2], dim)
        return np.asarray([r[0] for r in rows], np.int64), [str(r[1]) for r in rows], vectors

    def ids(self) -> npt.NDArray[np.int64]:
        """Every indexed file's id (N,), sorted."""
        rows = self.conn.execute("SELECT id FROM files ORDER BY id").fetchall()
        return np.asarray([r[0] for r in rows], np.int64)

    def lookup(self, ids: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        """``{id: (path, label)}`` for those ids that exist."""
        wanted = sorted({int(i) for i in ids})
        found: dict[int, tuple[str, str | None]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for i, path, label in self.conn.execute(
                f"SELECT id, path, label FROM files WHERE id IN ({marks})", chunk
            ):
                found[int(i)] = (_name(path), _label(label))
        return found

    # ------------------------------------------------------------------ writing (in a transaction)

    def put_vector(
        self, content_hash: str, vector: npt.NDArray[np.float32], *, replace: bool = False
    ) -> None:
        """Cache a vector under its content hash (kept if already there, unless ``replace``)."""
        self.conn.execute(
            f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO embeddings(hash, vector) "
            "VALUES (?, ?)",
            (content_hash, np.ascontiguousarray(vector, dtype="<f4").tobytes()),
        )

    def insert_file(self, path: str, size: int, mtime_ns: int, content_hash: str) -> int:
        """Add a file row and return its new id."""
        cursor = self.conn.execute(
            "INSERT INTO files(path, size, mtime_ns, content_hash) VALUES (?, ?, ?, ?)",
            (_stored(path), size, mtime_ns, content_hash),
        )
        return int(cursor.lastrowid or 0)

    def update_file(self, file_id: int, size: int, mtime_ns: int, content_hash: str) -> None:
        """Change a file row's size, time and content."""
        self.conn.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, content_hash = ? WHERE id = ?",
            (size, mtime_ns, content_hash, file_id),
        )

    def delete_files(self, ids: Iterable[int]) -> None:
        """Delete file rows by id."""
        self.conn.executemany("DELETE FROM files WHERE id = ?", [(int(i),) for i in ids])

    def set_labels(self, labels: dict[str, str | None]) -> int:
        """Set labels by relative path; returns how many rows changed."""
        changed = 0
        for path, label in labels.items():
            cursor = self.conn.execute(
                "UPDATE files SET label = ? WHERE path = ?",
                (None if label is None else _stored(label), _stored(path)),
            )
            changed += cursor.rowcount
        return changed

    def prune_cache(self) -> int:
        """Drop cached vectors no file refers to; returns how many."""
        cursor = self.conn.execute(
            "DELETE FROM embeddings WHERE hash NOT IN (SELECT content_hash FROM files)"
        )
        return cursor.rowcount


def _vector(blob: bytes, dim: int) -> npt.NDArray[np.float32]:
    """Decode a stored vector, checking its length."""
    if len(blob) != 4 * dim:
        raise sqlite3.DatabaseError(f"a stored embedding has {len(blob) // 4} values, not {dim}")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _stored(name: str) -> str | bytes:
    """A path (or label) as stored: text when it is valid UTF-8, else its bytes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _name(value: str | bytes) -> str:
    """A stored path back as Python's file-system string."""
    return value if isinstance(value, str) else os.fsdecode(value)


def _label(value: str | bytes | None) -> str | None:
    """A stored label (``None``: unset)."""
    return None if value is None else _name(value)
