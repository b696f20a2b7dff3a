"""Labelled image pairs kept on disk, so they survive a restart of ``lookalike serve``.

Layout of the data folder::

    DATA_DIR/
      images/<sha256>.<ext>   every uploaded image once, named by the hash of its bytes
      pairs.sqlite3           one row per labelled pair (SQLite: each write is a transaction)

Images are written through a temporary file and a rename, so a crash never leaves a
half-written image under its final name; SQLite makes each pair insert or delete atomic.
An image file is removed when the last pair that uses it is deleted.

The store is bounded: at most ``max_pairs`` pairs and ``max_bytes`` of images; an add past
either raises :class:`PairStoreFullError` (the API answers 409 with the reason).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike._io import atomic_write_bytes
from lookalike.errors import LookalikeError

Label = Literal["same", "different"]
Side = Literal["a", "b"]

MEDIA_TYPES: dict[str, tuple[str, str]] = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "GIF": ("image/gif", ".gif"),
    "WEBP": ("image/webp", ".webp"),
    "BMP": ("image/bmp", ".bmp"),
    "TIFF": ("image/tiff", ".tif"),
}
"""PIL format name → (media type, file suffix) for the formats browsers can show."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('same', 'different')),
    a_file TEXT NOT NULL,
    b_file TEXT NOT NULL,
    a_name TEXT NOT NULL,
    b_name TEXT NOT NULL
)
"""


class PairStoreFullError(LookalikeError):
    """The pair store holds as many pairs, or as many bytes of images, as it may."""


class DuplicatePairError(LookalikeError):
    """These two images (in either order) are already a labelled pair."""


@dataclass(frozen=True)
class StoredImage:
    """An uploaded image as the store keeps it.

    Attributes:
        data: The encoded bytes, exactly as uploaded.
        name: The file name the client gave (for display only; never used as a path).
        format: The PIL format found by decoding it (``"PNG"``, ``"JPEG"``, ...).
    """

    data: bytes
    name: str
    format: str


@dataclass(frozen=True)
class Pair:
    """One labelled pair.

    Attributes:
        id: Stable identifier (32 hex digits).
        created: Unix time it was added.
        label: ``"same"`` or ``"different"``.
        a_file, b_file: Image file names inside ``DATA_DIR/images``.
        a_name, b_name: The names the client uploaded them under.
    """

    id: str
    created: float
    label: Label
    a_file: str
    b_file: str
    a_name: str
    b_name: str


class PairStore:
    """Labelled pairs and their images in a data folder; safe to use from many threads.

    Args:
        root: The data folder (created when missing).
        max_pairs: Most pairs kept.
        max_bytes: Most bytes of stored images.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_pairs: int = 10_000,
        max_bytes: int = 2 * 2**30,
    ) -> None:
        self.root = Path(root)
        self.images = self.root / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "pairs.sqlite3"
        self.max_pairs = max_pairs
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(_SCHEMA)
        self._bytes = sum(_size(entry) for entry in os.scandir(self.images))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=30.0)
        try:
            with db:  # commits on success, rolls back on an exception
                yield db
        finally:
            db.close()

    @staticmethod
    def _file_name(image: StoredImage) -> str:
        suffix = MEDIA_TYPES.get(image.format, ("", ".img"))[1]
        return hashlib.sha256(image.data).hexdigest() + suffix

    def _write_image(self, image: StoredImage) -> str:
        name = self._file_name(image)
        target = self.images / name
        if not target.exists():
            atomic_write_bytes(target, image.data)
            self._bytes += len(image.data)
        return name

    def _check_new(self, a: StoredImage, b: StoredImage) -> None:
        """Raise :class:`DuplicatePairError` when these images already form a pair."""
        fa, fb = self._file_name(a), self._file_name(b)
        with self._connect() as db:
            row = db.execute(
                "SELECT label, a_name, b_name FROM pairs WHERE (a_file = ? AND b_file = ?) "
                "OR (a_file = ? AND b_file = ?) LIMIT 1",
                (fa, fb, fb, fa),
            ).fetchone()
        if row is not None:
            raise DuplicatePairError(
                f"this pair is already labelled {row[0]!r} (as {row[1]} & {row[2]}, "
                "the same two images in either order); delete it to label it again"
            )

    def _check_room(self, a: StoredImage, b: StoredImage) -> None:
        """Raise :class:`PairStoreFullError` unless one more pair of these images fits."""
        count = len(self)
        if count >= self.max_pairs:
            raise PairStoreFullError(
                f"the pair store is full: it holds {count} pairs, the limit is "
                f"{self.max_pairs} (lookalike serve --max-pairs); delete pairs to add more"
            )
        new = {self._file_name(i): len(i.data) for i in (a, b)}
        added = sum(n for name, n in new.items() if not (self.images / name).exists())
        if self._bytes + added > self.max_bytes:
            raise PairStoreFullError(
                f"the pair store is full: its images take {self._bytes / 2**20:.1f} MB and "
                f"these would add {added / 2**20:.1f} MB, past the limit of "
                f"{self.max_bytes / 2**20:.0f} MB (lookalike serve --max-pair-mb); delete "
                "pairs to add more"
            )

    def add(self, a: StoredImage, b: StoredImage, label: Label) -> Pair:
        """Store both images (once each, by content) and the labelled pair.

        Returns:
            The new pair.

        Raises:
            DuplicatePairError: The same two images (by content, in either order) are
                already a pair.
            PairStoreFullError: ``max_pairs`` pairs are stored, or the images would take the
                store past ``max_bytes``.
        """
        with self._lock:
            self._check_new(a, b)
            self._check_room(a, b)
            pair = Pair(
                id=uuid.uuid4().hex,
                created=time.time(),
                label=label,
                a_file=self._write_image(a),
                b_file=self._write_image(b),
                a_name=_display_name(a.name),
                b_name=_display_name(b.name),
            )
            with self._connect() as db:
                db.execute(
                    "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        pair.id,
                        pair.created,
                        pair.label,
                        pair.a_file,
                        pair.b_file,
                        pair.a_name,
                        pair.b_name,
                    ),
                )
        return pair

    def list(self) -> list[Pair]:
        """Every pair, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, created, label, a_file, b_file, a_name, b_name FROM pairs "
                "ORDER BY created, id"
            ).fetchall()
        return [Pair(*row) for row in rows]

    def get(self, pair_id: str) -> Pair | None:
        """The pair with this id, or ``None``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT id, created, label, a_file, b_file, a_name, b_name FROM pairs WHERE id = ?",
                (pair_id,),
            ).fetchone()
        return None if row is None else Pair(*row)

    def delete(self, pair_id: str) -> bool:
        """Delete a pair, and its images when no other pair uses them.

        Returns:
            Whether the pair existed.
        """
        with self._lock:
            pair = self.get(pair_id)
            if pair is None:
                return False
            with self._connect() as db:
                db.execute("DELETE FROM pairs WHERE id = ?", (pair_id,))
                used = {
                    name
                    for row in db.execute("SELECT a_file, b_file FROM pairs").fetchall()
                    for name in row
                }
            for name in {pair.a_file, pair.b_file} - used:
                path = self.images / name
                self._bytes -= _size(path)
                path.unlink(missing_ok=True)
        return True

    def image_path(self, pair: Pair, side: Side) -> Path:
        """The stored file of one side of a pair."""
        return self.images / (pair.a_file if side == "a" else pair.b_file)

    def __len__(self) -> int:
        with self._connect() as db:
            count: int = db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        return count


def media_type(file_name: str) -> str:
    """The media type of a stored image file, from the suffix the store gave it."""
    suffix = Path(file_name).suffix
    for media, known in MEDIA_TYPES.values():
        if known == suffix:
            return media
    return "application/octet-stream"


def _size(entry: os.DirEntry[str] | Path) -> int:
    """A file's size in bytes, 0 when it is gone."""
    try:
        return entry.stat().st_size
    except OSError:
        return 0


def _display_name(name: str) -> str:
    """Keep the last path component of a client-supplied name, printable and short."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable())
    return cleaned[:120] or "image"
