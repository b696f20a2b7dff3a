"""Where an index's vectors are searched: the one interface, and the store spec that picks it.

SQLite (:mod:`lookalike.index.store`) is the source of truth of every index: its meta, file
rows and the content-hash embedding cache, so incremental updates, resume and the cache work
the same whatever searches the vectors. The *vector search structure* is a backend kept in
step with it, behind :class:`VectorBackend`:

* ``faiss`` (the default): :class:`lookalike.index.sync.SyncedVectors`, a FAISS structure in
  memory and in a file of the index folder;
* ``milvus-lite:PATH`` or ``milvus://HOST:PORT/COLLECTION``:
  :class:`lookalike.index.milvus_store.MilvusVectors`, a Milvus collection (pymilvus is imported
  only when such an index is opened).

:func:`parse_store` reads a ``--store`` spec (:class:`StoreSpec`); the index records it in its
meta, so later commands find the store without being told again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from lookalike.index.store import FileRow
    from lookalike.index.update import Changes

__all__ = [
    "TOKEN_ENV",
    "Pairs",
    "StoreSpec",
    "StoreSpecError",
    "VectorBackend",
    "parse_store",
]

TOKEN_ENV = "LOOKALIKE_MILVUS_TOKEN"
"""The environment variable holding a Milvus server's token (``user:password`` or an API key);
never stored in the index."""

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
Pairs = tuple[IdArray, IdArray, FloatArray]


class StoreSpecError(LookalikeError):
    """A ``--store`` spec that cannot be parsed (the message says the accepted forms)."""


@dataclass(frozen=True)
class StoreSpec:
    """A parsed store spec.

    Attributes:
        kind: ``"faiss"``, ``"milvus-lite"`` or ``"milvus"``.
        path: milvus-lite only: the data folder (absolute; pymilvus wants a name ending in ``.db``).
        uri: milvus only: the server as pymilvus takes it (``http://HOST:PORT`` or ``https://…``).
        collection: milvus only: the collection (milvus-lite: generated when the index is made).
    """

    kind: str = "faiss"
    path: str | None = None
    uri: str | None = None
    collection: str | None = None

    def describe(self) -> str:
        """The spec as a user writes it."""
        if self.kind == "milvus-lite":
            return f"milvus-lite:{self.path}"
        if self.kind == "milvus":
            scheme = "milvus+https" if str(self.uri).startswith("https:") else "milvus"
            return f"{scheme}://{str(self.uri).split('://', 1)[1]}/{self.collection}"
        return "faiss"

    def same_place(self, other: StoreSpec) -> bool:
        """Whether two specs name the same store (a generated collection name is ignored)."""
        if self.kind != other.kind:
            return False
        if self.kind == "milvus-lite":
            return os.path.realpath(str(self.path)) == os.path.realpath(str(other.path))
        return (self.uri, self.collection) == (other.uri, other.collection)


def parse_store(text: str) -> StoreSpec:
    """Parse a ``--store`` spec.

    Args:
        text: ``faiss``, ``milvus-lite:PATH`` (a relative ``PATH`` is resolved against the
            current folder) or ``milvus://HOST:PORT/COLLECTION`` (``milvus+https://`` for TLS).

    Returns:
        The spec.

    Raises:
        StoreSpecError: If ``text`` is none of those (one line naming the accepted forms).
    """
    usage = (
        f"--store {text!r} is not a store: use faiss, milvus-lite:PATH.db or "
        "milvus://HOST:PORT/COLLECTION"
    )
    if text == "faiss":
        return StoreSpec()
    if text.startswith("milvus-lite:"):
        path = text.removeprefix("milvus-lite:")
        if not path or not path.endswith(".db"):
            raise StoreSpecError(f"{usage} (a milvus-lite PATH ends in .db, pymilvus's rule)")
        return StoreSpec("milvus-lite", path=str(Path(path).expanduser().absolute()))
    scheme, _, rest = text.partition("://")
    if scheme in ("milvus", "milvus+https") and rest:
        parts = urlsplit(f"http://{rest}")
        collection = parts.path.strip("/")
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.username or parts.password:
            raise StoreSpecError(f"{usage} (put credentials in ${TOKEN_ENV}, not in the spec)")
        if parts.hostname and port and collection and _collection_name(collection):
            http = "https" if scheme == "milvus+https" else "http"
            return StoreSpec("milvus", uri=f"{http}://{parts.netloc}", collection=collection)
        raise StoreSpecError(
            f"{usage} (HOST, PORT and a COLLECTION of letters, digits and _ are required)"
        )
    raise StoreSpecError(usage)


def _collection_name(name: str) -> bool:
    """Whether ``name`` is a valid Milvus collection name."""
    return (
        0 < len(name) <= 255
        and (name[0].isalpha() or name[0] == "_")
        and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    )


class VectorBackend(Protocol):
    """What :class:`~lookalike.index.index.Index` needs from the structure that searches.

    Every method is called with the index database open; the ones that change the structure
    with the writer lock held (:meth:`writer`).
    """

    @property
    def kind(self) -> str:
        """What searches now, in a few words: ``"flat"``, ``"ivf"``, ``"milvus-lite FLAT"``."""
        ...

    def writer(self) -> AbstractContextManager[None]:
        """Hold the index's writer lock (re-entrant)."""
        ...

    def begin(self) -> None:
        """Make the structure reflect the committed database before changes (lock held)."""
        ...

    def commit(self, batch: Changes, rows: dict[str, FileRow]) -> None:
        """Apply a batch of changes to SQLite in one transaction, then to the structure.

        Args:
            batch: The :class:`~lookalike.index.update.Changes`.
            rows: The indexed files by relative path; updated to match.
        """
        ...

    def finish(self) -> None:
        """After the last batch: prune the embedding cache, settle the structure (lock held)."""
        ...

    def search(self, queries: FloatArray, k: int, nprobe: int | None) -> tuple[FloatArray, IdArray]:
        """The ``k`` best stored vectors of each query.

        Args:
            queries: Unit rows (Q, D), float32.
            k: Results per query.
            nprobe: IVF lists scanned (``None``: the index's setting).

        Returns:
            ``(scores (Q, k) float32, ids (Q, k) int64)``, best first, ``-1`` ids as padding.
        """
        ...

    def pairs(self, threshold: float, nprobe: int | None) -> Pairs:
        """Every stored pair with cosine at least ``threshold``, never as an N×N matrix.

        Returns:
            ``(a, b, score)``, each (E,): ids with ``a < b``, sorted by ``(a, b)``.
        """
        ...

    def ids(self) -> IdArray:
        """The ids of every stored vector (N,), int64, sorted."""
        ...

    def forget(self) -> None:
        """Release what the backend holds (memory, connections); it reopens on demand."""
        ...


def blocks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)``, ``size`` at a time."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
