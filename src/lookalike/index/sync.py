"""Keeping an index's FAISS structure in step with its SQLite database, and the writer lock.

SQLite (:mod:`lookalike.index.store`) is the source of truth. :class:`SyncedVectors` holds the
FAISS structure (:mod:`lookalike.index.faiss_structures`) in memory together with the database
*generation* it reflects:

* :meth:`SyncedVectors.commit` applies a batch of changes to SQLite in one transaction (which
  gives the database a new generation) and then to the structure in memory;
* :meth:`SyncedVectors.finish` rebuilds the structure if it no longer suits the collection,
  writes it to a file named after its generation, and deletes older and temporary files;
* :meth:`SyncedVectors.current` returns the structure for the committed generation: the one in
  memory, else an intact file written for that generation, else one rebuilt from SQLite
  (streamed in blocks: a million 1,280-dimensional vectors are never all in memory as float32).

A process killed at any point therefore leaves either a file for the current generation or
none that matches, and the next :meth:`~SyncedVectors.current` rebuilds.

:class:`SyncedVectors` is the FAISS :class:`~lookalike.index.backend.VectorBackend` (search,
the self-join of :func:`~lookalike.index.self_join.all_pairs`); :func:`apply_batch` is the
SQLite half of a commit that every backend shares.

Only one process may change an index at a time: :func:`flock` takes an advisory ``flock`` on
``INDEX_DIR/lock`` without waiting, which the operating system releases when the process dies.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import IndexFolderError
from lookalike.index import faiss_structures as vi
from lookalike.index import self_join
from lookalike.index.backend import Pairs
from lookalike.index.store import FileRow, Store
from lookalike.index.update import Changes

__all__ = ["LOCK_NAME", "SyncedVectors", "WriterLock", "apply_batch", "flock", "locked"]

LOCK_NAME = "lock"


class WriterLock:
    """The writer lock of an index folder, re-entrant within one object (a mixin).

    Attributes:
        folder: The index folder.
    """

    folder: Path
    _lock_depth: int = 0

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the index's writer lock (re-entrant within this object).

        Raises:
            IndexFolderError: If another process (or another object) holds it.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with flock(self.folder):
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0


class SyncedVectors(WriterLock):
    """The FAISS structure of one index, in step with its database (a
    :class:`~lookalike.index.backend.VectorBackend`).

    Args:
        folder: The index folder.
        store: Its database.
        dim: Embedding size D.
        config: How the structure is chosen and searched.
    """

    def __init__(self, folder: Path, store: Store, dim: int, config: vi.VectorIndexConfig):
        self.folder = folder
        self.store = store
        self.dim = dim
        self.config = config
        self.structure: Any = None
        self._generation: str | None = None  # what ``structure`` reflects; None: nothing
        self._file: Path | None = None  # the file holding the current structure
        self._dirty = False  # changes could not be applied in place: rebuild in finish()
        self._lock_depth = 0

    def forget(self) -> None:
        """Drop the structure from memory."""
        self.structure, self._generation = None, None

    @property
    def kind(self) -> str:
        """The FAISS structure in use now: ``"flat"``, ``"ivf"``, ``"ivf_sq8"`` or ``"hnsw"``."""
        return vi.kind_of(self.current())

    def begin(self) -> None:
        """Load (or rebuild) the structure before a batch of changes (lock held)."""
        self.current()

    def search(
        self, queries: npt.NDArray[np.float32], k: int, nprobe: int | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` best stored vectors of each unit row of ``queries`` (Q, D).

        Returns:
            ``(scores (Q, k), ids (Q, k))``, ``-1`` ids as padding.
        """
        config = self.config if nprobe is None else replace(self.config, nprobe=nprobe)
        scores, ids = vi.search(self.current(), queries, k, config)
        return scores, ids

    def pairs(self, threshold: float, nprobe: int | None) -> Pairs:
        """Every stored pair with cosine at least ``threshold`` (:func:`self_join.all_pairs`)."""
        return self_join.all_pairs(self.current(), threshold, nprobe=nprobe or self.config.nprobe)

    def ids(self) -> npt.NDArray[np.int64]:
        """The ids of every stored vector (N,), sorted."""
        return np.sort(self_join.stored_ids(self.current()))

    def current(self) -> Any:
        """The FAISS structure for the committed generation: in memory, from file, or rebuilt.

        A reader whose structure is older than the database while another process is
        updating keeps using it rather than rebuilding for every committed batch; hits on files
        removed since are dropped by the search (their ids are gone from the database), files
        added since are found once the update is over.

        Returns:
            The structure.
        """
        generation = self.store.generation
        if self.structure is not None and self._generation == generation:
            if self._lock_depth and not vi.is_file_of(self._file, generation):
                self._write(generation)
            return self.structure
        if self.structure is not None and not self._lock_depth and locked(self.folder):
            return self.structure
        found = vi.read_file(self.folder, generation)
        if found is not None and int(found[0].ntotal) == self.store.count():
            self.structure, self._file = found
            self._generation, self._dirty = generation, False
            return self.structure
        self.structure, generation = self._rebuild()
        self._generation, self._dirty, self._file = generation, False, None
        try:
            with self.writer():
                if self.store.generation == generation:
                    self._write(generation)
        except IndexFolderError:
            pass  # another process is updating, or the folder is read-only
        return self.structure

    def _rebuild(self, seed: int = 0) -> tuple[Any, str]:
        """Build the structure from SQLite, streaming: never all vectors in memory at once.

        One read transaction, two passes over the vectors in id order: the first keeps the
        training sample (the rows :func:`lookalike.index.faiss_structures.build` would draw), the
        second adds every vector. Memory: the structure, the sample and one block.

        Returns:
            The structure and the generation it reflects.
        """
        with self.store.reading() as generation:
            n = self.store.count()
            size = vi.training_size(n, self.config)
            sample = None
            if size:
                pick = np.arange(n)
                if size < n:
                    pick = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
                sample = np.zeros((size, self.dim), np.float32)
                done = start = 0
                for _, vectors in self.store.vector_blocks(self.dim):
                    stop = start + len(vectors)
                    take = pick[done : np.searchsorted(pick, stop)]
                    sample[done : done + len(take)] = vectors[take - start]
                    done, start = done + len(take), stop
            structure = vi.create(n, self.dim, self.config, sample)
            del sample
            for ids, vectors in self.store.vector_blocks(self.dim):
                vi.add(structure, ids, vectors)
        return structure, generation

    def commit(self, batch: Changes, rows: dict[str, FileRow]) -> None:
        """Apply a batch to SQLite in one transaction, then to the structure in memory.

        Call with the writer lock held, after :meth:`current`.

        Args:
            batch: The changes.
            rows: The indexed files by relative path; updated to match.
        """
        if not (batch.upserts or batch.touched or batch.deletes):
            return
        self._generation = None  # until the structure matches the new generation
        removed, added = apply_batch(self.store, batch, rows)
        if not self._dirty and not vi.remove(self.structure, np.asarray(removed, np.int64)):
            self._dirty = True  # HNSW cannot remove: rebuilt by finish()
        if added and not self._dirty:
            ids = np.asarray([i for i, _ in added], dtype=np.int64)
            vi.add(self.structure, ids, np.stack([batch.vectors[d] for _, d in added]))
        self._generation = None if self._dirty else self.store.generation

    def finish(self) -> None:
        """Prune the embedding cache; rebuild the structure if it no longer fits; write it.

        Call with the writer lock held.
        """
        with self.store.transaction():
            self.store.prune_cache()
        stale = self._dirty or self._generation is None
        if stale or not vi.fits(self.structure, self.store.count(), self.config):
            self.forget()
        self.current()
        if self._file is not None:  # older files, temporary leftovers
            vi.remove_files(self.folder, self._file)

    def _write(self, generation: str) -> None:
        """Write the structure for ``generation`` and delete older files (lock held).

        The file only saves the next process a rebuild from SQLite, so a write that fails (a
        full disk: FAISS reports the callback's ``OSError`` as a ``RuntimeError``) leaves no
        file and is not an error; the database stays the source of truth.
        """
        try:
            self._file = vi.write_file(self.structure, self.folder, generation)
        except (OSError, RuntimeError):
            self._file = None
            return
        vi.remove_files(self.folder, self._file)


def apply_batch(
    store: Store, batch: Changes, rows: dict[str, FileRow]
) -> tuple[list[int], list[tuple[int, str]]]:
    """Apply a batch of changes to SQLite in one transaction (a new generation when the set
    of vectors changes), and update ``rows`` to match.

    Args:
        store: The database.
        batch: The changes.
        rows: The indexed files by relative path; updated to match.

    Returns:
        ``(removed, added)``: the ids whose vector left the index (deleted files, and files
        whose content changed), and ``(id, content hash)`` of each vector to add.
    """
    removed: list[int] = []
    added: list[tuple[int, str]] = []
    new_rows: dict[str, FileRow] = {}
    with store.transaction():
        for digest, vector in batch.vectors.items():
            store.put_vector(digest, vector, replace=digest in batch.replace)
        for rel, size, mtime, digest in batch.touched:
            store.update_file(rows[rel].id, size, mtime, digest)
            new_rows[rel] = FileRow(rows[rel].id, size, mtime, digest)
        for rel, size, mtime, digest in batch.upserts:
            if rel in rows:
                file_id = rows[rel].id
                store.update_file(file_id, size, mtime, digest)
                removed.append(file_id)
            else:
                file_id = store.insert_file(rel, size, mtime, digest)
            added.append((file_id, digest))
            new_rows[rel] = FileRow(file_id, size, mtime, digest)
        gone = [rows[rel].id for rel in batch.deletes if rel in rows]
        store.delete_files(gone)
        removed += gone
        if added or removed:
            store.bump_generation()
    for rel in batch.deletes:
        rows.pop(rel, None)
    rows.update(new_rows)
    return removed, added


@contextmanager
def flock(folder: Path) -> Iterator[IO[str]]:
    """Take an index folder's exclusive writer lock without waiting (POSIX; none on Windows).

    Args:
        folder: The index folder.

    Yields:
        The open lock file (closing it releases the lock).

    Raises:
        IndexFolderError: If another process holds it, or the lock file cannot be opened.
    """
    try:
        fp = (folder / LOCK_NAME).open("a+")
    except OSError as exc:
        raise IndexFolderError(
            f"cannot lock the index in {folder} for writing: {exc.strerror or exc}"
        ) from exc
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fp.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IndexFolderError(
                    f"another process is updating the index in {folder}; wait for it to finish"
                ) from exc
        yield fp
    finally:
        fp.close()


def locked(folder: Path) -> bool:
    """Whether someone else holds an index folder's writer lock (or it cannot be taken)."""
    try:
        with flock(folder):
            return False
    except IndexFolderError:
        return True
