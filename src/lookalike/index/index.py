"""A persistent, incrementally updated embedding index of a folder of images.

An index lives in its own folder::

    INDEX_DIR/
      index.sqlite       metadata, file rows and the embedding cache (the source of truth; WAL)
      vectors-<generation>-<digest>.faiss   the FAISS structure (derived; rebuilt when needed)
      lock               taken by the one process allowed to change the index at a time

or, with a Milvus store (``create(..., store="milvus-lite:PATH.db")`` or
``store="milvus://HOST:PORT/COLLECTION"``), ``index.sqlite`` and ``lock`` alone, the vectors
being searched in a Milvus collection that the database records and keeps in step
(:mod:`lookalike.index.milvus_store`); SQLite stays the source of truth either way. The search
structure is the index's *vector backend* (:class:`~lookalike.index.backend.VectorBackend`).

:meth:`Index.update` makes the index mirror the image files under its *root* folder: files are
found with ``iter_image_files`` (include/exclude glob patterns on the path
relative to the root), compared with the index by size and modification time, and only the
changed ones are hashed (BLAKE2b-128 of their bytes). A content hash already in the embedding
cache is reused, so a moved, renamed or copied file is never embedded twice; only new content
is embedded, in batches, and each batch is committed in its own transaction.

**Crash safety.** SQLite holds everything needed to rebuild the index, including every vector.
Each batch commits its cached vectors, its file rows and a new *generation* token atomically,
so a killed run keeps every finished batch and loses only the batch in flight; the next run
sees those files as new and does them again, and the ``UNIQUE`` path column means a file is
never indexed twice. The FAISS file is written after the database commits, atomically (temporary
file, ``fsync``, ``os.replace``), named after the generation it reflects and a digest of its
bytes. On loading, a file for another generation (a run killed before it wrote the file), a
damaged file, or none at all is ignored and the FAISS structure is rebuilt from SQLite; a
leftover temporary file is deleted by the next writer. The writer lock is an advisory
``flock``, which the operating system releases when its process dies. After a power cut SQLite
(``synchronous=NORMAL``) may lose its last transactions, but never its consistency, and a
generation token has random letters, so a later generation never matches an older file.

The parts: :mod:`lookalike.index.store` (SQLite), :mod:`lookalike.index.update` (what changed,
embedding), :mod:`lookalike.index.reader` (content hashes; decoding the bytes hashed),
:mod:`lookalike.index.failures` (database errors in words), :mod:`lookalike.index.sync` (FAISS
in step with SQLite, the lock) and :mod:`lookalike.index.faiss_structures` (the FAISS kinds:
flat; IVF — the default for large mutable collections, since it supports removal — and
IVF-SQ8, one byte per dimension, from 200,000 images; and HNSW, which cannot remove and is
rebuilt on change).

**Errors and repair.** A damaged database, a full disk or an unreadable index file is one
:class:`~lookalike.errors.IndexFolderError` naming the file and the fix
(:func:`lookalike.index.failures.database_error`), never a raw ``sqlite3`` error. A damaged index
is recreated from its images with ``create(..., overwrite=True)`` (``lookalike index DIR
--index IDX --rebuild``); ``update(verify=True)`` (``--verify``) hashes and embeds every file
again and repairs stale rows and wrong cached vectors in place.

**Root.** File paths are stored relative to the root. The root itself is stored twice:
relative to the index folder and absolute. :meth:`Index.open` tries the relative location first
(so a collection moved or copied together with its index keeps working), then the absolute one
(so an index folder moved on its own keeps working); ``root=`` overrides both, and the next
:meth:`Index.update` stores the new root. A milvus-lite store's folder is recorded the same
way.

The root may also be an fsspec URI (``s3://bucket/prefix``, ``gs://…``, ``file:///abs``,
``memory://…``): it is then recorded as the URI itself, :attr:`Index.root` is that URI (a
``str``, where a local root is a :class:`~pathlib.Path`), and the objects under it are listed
and read through fsspec (:mod:`lookalike.index.uri_root`); opening such an index reads only
its database.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from lookalike.errors import IndexFolderError, LookalikeError
from lookalike.index import faiss_structures as vi
from lookalike.index import update as iu
from lookalike.index import uri_root
from lookalike.index.backend import StoreSpec, VectorBackend, parse_store
from lookalike.index.failures import database_errors
from lookalike.index.milvus_store import MilvusVectors, index_type_for, recorded_spec, store_record
from lookalike.index.store import SCHEMA_VERSION, Snapshot, Store
from lookalike.index.sync import SyncedVectors, flock
from lookalike.index.update import Changes, UpdateReport
from lookalike.inference.embedder import Embedder
from lookalike.inference.source import ModelSource
from lookalike.metrics.distances import unit_rows

__all__ = ["DB_NAME", "Hit", "Index", "Snapshot", "UpdateReport"]

DB_NAME = "index.sqlite"

FloatArray = npt.NDArray[np.float32]
Root = Path | str
"""An index root: a local folder (absolute), or an fsspec URI (see the module notes)."""
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(method: Callable[Concatenate[Index, _P], _R]) -> Callable[Concatenate[Index, _P], _R]:
    """Run an :class:`Index` method with its database errors turned into one line."""

    @functools.wraps(method)
    def run(self: Index, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with database_errors(self.folder / DB_NAME, self.root):
            return method(self, *args, **kwargs)

    return run


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        path: The file's path relative to the index root, with ``/`` separators.
        score: Cosine similarity to the query, in [-1, 1].
        id: The file's id in the index.
        label: The file's label, if one was set.
    """

    path: str
    score: float
    id: int
    label: str | None = None


class Index:
    """A persistent embedding index of the image files under a root folder.

    Build one with :meth:`create` (or :meth:`open_or_create`), reopen it with :meth:`open`.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, folder: Path, store: Store, root: Root, *, new: bool = False, overwrite: bool = False
    ) -> None:
        self.folder = folder
        self.root: Root = root
        self._store = store
        self.model_key: str = str(store.meta("model_key"))
        source = store.meta("model_source")
        self.model_source: ModelSource | None = ModelSource.from_dict(source) if source else None
        self.dim: int = int(store.meta("dim"))
        self.config = vi.VectorIndexConfig.from_dict(store.meta("config"))
        record = store.meta("store")
        self._sync: VectorBackend = SyncedVectors(folder, store, self.dim, self.config)
        if record and record.get("kind", "faiss") != "faiss":  # pymilvus imported only now
            self._sync = MilvusVectors(
                folder, store, self.dim, self.config, record, new=new, overwrite=overwrite
            )

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        index_dir: str | os.PathLike[str],
        root: str | os.PathLike[str],
        *,
        model_key: str,
        dim: int,
        model_source: ModelSource | None = None,
        kind: str = "auto",
        ivf_threshold: int = vi.DEFAULT_IVF_THRESHOLD,
        sq8_threshold: int = vi.DEFAULT_SQ8_THRESHOLD,
        nprobe: int | None = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        overwrite: bool = False,
        store: str | StoreSpec | None = None,
    ) -> Index:
        """Create an empty index of ``root`` in ``index_dir``.

        Args:
            index_dir: The index folder (created if needed; ``root/.lookalike-index`` keeps
                it out of the listing, since hidden folders are skipped).
            root: The folder of images to index, or an fsspec URI (``s3://bucket/prefix``;
                see the module notes).
            model_key: Identity of the embedding model (e.g. its name and weights hash);
                opening with another key is refused.
            dim: Embedding size D.
            model_source: Where the model comes from; recorded (inside the writer lock) so
                that ``search``, ``dedup`` and ``serve`` find the same model again, and named
                in words when another model is refused.
            kind: FAISS structure: ``"auto"``, ``"flat"``, ``"ivf"``, ``"ivf_sq8"`` or
                ``"hnsw"`` (see :mod:`lookalike.index.faiss_structures`).
            ivf_threshold: Vector count from which ``"auto"`` uses IVF.
            sq8_threshold: Vector count from which ``"auto"`` uses IVF-SQ8.
            nprobe: IVF lists scanned per query (``None``:
                :func:`lookalike.index.faiss_structures.default_nprobe`).
            include: Default include patterns for :meth:`update`.
            exclude: Default exclude patterns for :meth:`update`.
            overwrite: Replace an index already in ``index_dir``.
            store: Where the vectors are searched: ``"faiss"`` (``None``, the default), a
                ``"milvus-lite:PATH.db"`` or ``"milvus://HOST:PORT/COLLECTION"`` spec, or a
                parsed :class:`~lookalike.index.backend.StoreSpec`; recorded, so
                :meth:`open` finds it (:mod:`lookalike.index.milvus_store`: ``kind`` maps to
                a Milvus index type, ``auto`` being FLAT on milvus-lite).

        Returns:
            The open, empty index.

        Raises:
            IndexFolderError: If ``index_dir`` already holds an index and not ``overwrite``,
                or another process is updating it.
            ValueError: If ``dim``, ``kind`` or another setting is invalid.
            StoreSpecError: If ``store`` is not a store spec.
        """
        spec = parse_store(store) if isinstance(store, str) else (store or StoreSpec())
        if dim < 1:
            raise ValueError(f"dim must be positive, not {dim}")
        config = vi.VectorIndexConfig(
            kind=kind, ivf_threshold=ivf_threshold, sq8_threshold=sq8_threshold, nprobe=nprobe
        )
        folder = Path(index_dir)
        root_path = _root_of(root)
        with database_errors(folder / DB_NAME, root_path):
            folder.mkdir(parents=True, exist_ok=True)
            return cls._create(
                folder,
                root_path,
                config,
                overwrite,
                meta={
                    "model_key": model_key,
                    "model_source": model_source.to_dict() if model_source else None,
                    "dim": int(dim),
                    "config": config.to_dict(),
                    "include": list(include),
                    "exclude": list(exclude),
                    **_root_meta(folder, root_path),
                    **_store_meta(folder, spec, kind),
                },
            )

    @classmethod
    def _create(
        cls,
        folder: Path,
        root_path: Root,
        config: vi.VectorIndexConfig,
        overwrite: bool,
        meta: dict[str, Any],
    ) -> Index:
        """:meth:`create` once its arguments are checked (errors not yet translated)."""
        with flock(folder):
            db = folder / DB_NAME
            state = Store.probe(db)
            if state == "index" and not overwrite:
                raise IndexFolderError(
                    f"{folder} already holds an index; open it, or pass overwrite=True to "
                    "replace it"
                )
            if state == "foreign" and not overwrite:
                raise IndexFolderError(
                    f"{db} is not a lookalike index (another program's file, or damaged); "
                    "pass overwrite=True to replace it"
                )
            if state != "absent":
                _remove_database(db)
                vi.remove_files(folder, None)
            store = Store(db, create=True, meta=meta)
            try:
                return cls._opened(folder, store, root_path, new=True, overwrite=overwrite)
            except IndexFolderError:  # a Milvus store that cannot be reached or used:
                _remove_database(db)  # no half-made index is left behind
                raise

    @classmethod
    def _opened(cls, folder: Path, store: Store, root: Root, **backend: bool) -> Index:
        """The index over an open store (closed again if its meta or store cannot be read)."""
        try:
            return cls(folder, store, root, **backend)
        except BaseException:
            store.close()
            raise

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        model_key: str | None = None,
        model_source: ModelSource | None = None,
        store: str | StoreSpec | None = None,
    ) -> Index:
        """Open an existing index.

        Args:
            index_dir: The index folder.
            root: Where the indexed images are now, a folder or a URI (``None``: the stored
                root; see the module docstring).
            model_key: The model about to be used with it; refused when it is not the one the
                index was built with.
            model_source: Where that model comes from (named in the refusal).
            store: The store expected (``None``: the one recorded); another one is refused.

        Returns:
            The open index.

        Raises:
            IndexFolderError: If there is no complete index in ``index_dir``, it was made by a
                newer lookalike, with another model or another store, or its Milvus store
                cannot be reached.
        """
        expected = parse_store(store) if isinstance(store, str) else store
        folder = Path(index_dir)
        db = folder / DB_NAME
        given = _root_of(root) if root is not None else None
        with database_errors(db, given):
            return cls._open(folder, given, model_key, model_source, expected)

    @classmethod
    def _open(
        cls,
        folder: Path,
        root: Root | None,
        model_key: str | None,
        model_source: ModelSource | None,
        expected: StoreSpec | None = None,
    ) -> Index:
        """:meth:`open` with its database errors not yet translated."""
        db = folder / DB_NAME
        if not db.is_file():
            raise IndexFolderError(f"no index in {folder} (no {DB_NAME}); create one first")
        store = Store(db)
        try:
            schema = int(store.meta("schema") or 0)
            if schema > SCHEMA_VERSION:
                raise IndexFolderError(
                    f"{folder} was written by a newer lookalike (index schema {schema}); "
                    "upgrade lookalike"
                )
            stored_key = store.meta("model_key")
            if model_key is not None and model_key != stored_key:
                built = _source_words(store.meta("model_source"), stored_key)
                given = model_source.describe() if model_source else f"model {model_key!r}"
                raise IndexFolderError(
                    f"{folder} was built with {built}, not {given}: use that model, or "
                    "rebuild the index for this one (a new index folder, or create with "
                    "overwrite=True)"
                )
            _check_store(folder, store, expected)
            where = root if root is not None else _stored_root(folder, store)
        except BaseException:
            store.close()
            raise
        return cls._opened(folder, store, where)

    @staticmethod
    def recorded_source(
        index_dir: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
    ) -> ModelSource | None:
        """The model source an index recorded, without opening it (``None``: none recorded).

        Args:
            index_dir: The index folder.
            root: The indexed folder, if known (named in the fix for a damaged database).

        Raises:
            IndexFolderError: No index in ``index_dir``, or a damaged one.
        """
        db = Path(index_dir) / DB_NAME
        if Store.probe(db) in ("absent", "empty"):
            raise IndexFolderError(f"no index in {index_dir} (no {DB_NAME}); create one first")
        with database_errors(db, None if root is None else _root_of(root)):
            store = Store(db)
            try:
                source = store.meta("model_source")
            finally:
                store.close()
        return ModelSource.from_dict(source) if source else None

    @staticmethod
    def recorded_store(index_dir: str | os.PathLike[str]) -> str | None:
        """The store spec an index recorded (``"faiss"`` for one without a record), without
        connecting to it; ``None`` when there is no readable index in ``index_dir``."""
        folder = Path(index_dir)
        db = folder / DB_NAME
        if Store.probe(db) != "index":
            return None
        store = Store(db)
        try:
            return _recorded_spec(folder, store).describe()
        finally:
            store.close()

    @classmethod
    def open_or_create(
        cls,
        index_dir: str | os.PathLike[str],
        root: str | os.PathLike[str],
        *,
        model_key: str,
        dim: int,
        model_source: ModelSource | None = None,
        store: str | StoreSpec | None = None,
        **settings: Any,
    ) -> Index:
        """Open the index in ``index_dir`` for ``root`` and ``model_key``, creating it if absent.

        Args:
            index_dir: The index folder.
            root: The folder of images.
            model_key: The model's identity (checked when opening).
            dim: Embedding size (checked when opening).
            model_source: Where the model comes from (recorded; see :meth:`create`).
            store: The store (see :meth:`create`); when opening, ``None`` takes the recorded
                one and another one is refused.
            **settings: Keyword arguments of :meth:`create`, used when creating.

        Returns:
            The open index.

        Raises:
            IndexFolderError: As for :meth:`open` and :meth:`create`, or a ``dim`` mismatch.
        """
        if Store.probe(Path(index_dir) / DB_NAME) in ("absent", "empty"):  # never raises
            return cls.create(
                index_dir,
                root,
                model_key=model_key,
                dim=dim,
                model_source=model_source,
                store=store,
                **settings,
            )
        index = cls.open(
            index_dir, root=root, model_key=model_key, model_source=model_source, store=store
        )
        if index.dim != dim:
            index.close()
            raise IndexFolderError(
                f"{index_dir} holds {index.dim}-dimensional embeddings, not {dim}; rebuild it"
            )
        return index

    def close(self) -> None:
        """Close the database and release the vector backend (FAISS structure, Milvus client)."""
        self._sync.forget()
        self._store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ inspecting

    @_guarded
    def __len__(self) -> int:
        return self._store.count()

    @_guarded
    def __contains__(self, path: object) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False
        return self._store.has(self._relative(path))

    @property
    @_guarded
    def generation(self) -> str:
        """The database generation (changes whenever the set of vectors changes)."""
        return self._store.generation

    @property
    @_guarded
    def kind(self) -> str:
        """What searches now: the FAISS structure (``"flat"``, ``"ivf"``, ``"ivf_sq8"``,
        ``"hnsw"``) or the Milvus store and index type (``"milvus-lite FLAT"``)."""
        return self._sync.kind

    @property
    @_guarded
    def engines(self) -> list[str]:
        """The inference engines that wrote the stored vectors, in the order first used
        (``"onnx"``, ``"torch"``, ``"onnx-int8"``; empty for an index older than this record).

        float32 ONNX and torch vectors agree to about 1e-4 (the export is checked); int8
        vectors differ more (their export records the agreement measured), so an index that
        mixes ``"onnx-int8"`` with another engine holds vectors of two precisions.
        """
        return [str(e) for e in self._store.meta("engines") or []]

    @property
    def store(self) -> str:
        """The store spec, as a user writes it (``"faiss"``, ``"milvus-lite:/abs/v.db"``, …)."""
        return _recorded_spec(self.folder, self._store).describe()

    @property
    def backend(self) -> VectorBackend:
        """The vector backend (:class:`~lookalike.index.backend.VectorBackend`), for
        reading: search and :meth:`~lookalike.index.backend.VectorBackend.pairs`."""
        return self._sync

    @_guarded
    def paths(self) -> list[str]:
        """Every indexed relative path, sorted."""
        return sorted(self._store.rows())

    @_guarded
    def vectors(
        self, paths: Sequence[str] | None = None, *, ids: Sequence[int] | None = None
    ) -> Snapshot:
        """Indexed vectors with their ids, paths and labels, ordered by id.

        All of them are read into memory as float32 (N × D × 4 bytes: 5.1 GB for a million
        1,280-dimensional vectors); for large indexes ask for the ``paths`` or ``ids`` needed.

        Args:
            paths: Only these relative paths (absent ones are left out).
            ids: Only these file ids (absent ones are left out).

        Returns:
            The vectors (N, D), float32 unit rows, and what belongs to them.

        Raises:
            ValueError: If both ``paths`` and ``ids`` are given.
        """
        if paths is not None and ids is not None:
            raise ValueError("give paths or ids, not both")
        chosen = None if paths is None else [self._relative(p) for p in paths]
        if ids is not None:
            chosen = [path for path, _ in self._store.lookup(ids).values()]
        return self._store.snapshot(self.dim, chosen)

    @_guarded
    def structure(self) -> Any:
        """The FAISS structure of the committed generation (``faiss_structures``).

        The one in memory, else the intact file for this generation, else one rebuilt from
        the database. For reading (search, :func:`lookalike.index.self_join.all_pairs`) only:
        change the index with :meth:`update` and :meth:`remove`.

        Raises:
            IndexFolderError: If the index keeps its vectors in Milvus (use :attr:`backend`).
        """
        if not isinstance(self._sync, SyncedVectors):
            raise IndexFolderError(f"{self.folder} keeps its vectors in {self.store}, not FAISS")
        return self._sync.current()

    def resolve(self, path: str) -> Root:
        """Where an indexed relative path is: a :class:`~pathlib.Path` under a local root, a
        URI (``str``) under a URI root (read it with
        :func:`lookalike.inference.uris.read_bytes`)."""
        return iu.resolve(self.root, path)

    @_guarded
    def set_labels(self, labels: Mapping[str, str | None]) -> int:
        """Set (or clear, with ``None``) the label of indexed files.

        Args:
            labels: ``{relative path: label}``.

        Returns:
            How many indexed files were labelled.
        """
        with self._store.transaction():
            return self._store.set_labels({self._relative(p): v for p, v in labels.items()})

    # ------------------------------------------------------------------ searching

    @_guarded
    def search(
        self, vectors: npt.ArrayLike, k: int = 10, *, nprobe: int | None = None
    ) -> list[list[Hit]]:
        """The ``k`` most similar indexed images of each query vector.

        Args:
            vectors: Query embeddings (Q, D) or one (D,); rows are L2-normalised here.
            k: Results per query. With ``k`` at least ``len(index)`` every item is returned
                (on Milvus, at most 16,384: its limit per query).
            nprobe: IVF lists to scan (``None``: the index's setting).

        Returns:
            One list per query of hits, best first; never a placeholder. Empty lists when the
            index is empty.

        Raises:
            ValueError: If ``k < 1`` or the queries do not have D columns.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        queries = _query_rows(np.asarray(vectors, dtype=np.float32), self.dim)
        scores, ids = self._sync.search(queries, k, nprobe)
        info = self._store.lookup(ids[ids >= 0].tolist())
        results: list[list[Hit]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = []
            for score, i in zip(row_scores.tolist(), row_ids.tolist(), strict=True):
                if i >= 0 and i in info:
                    path, label = info[i]
                    hits.append(Hit(path, float(score), int(i), label))
            results.append(hits)
        return results

    def search_images(
        self, images: Sequence[Any], embedder: Embedder, k: int = 10, *, batch_size: int = 32
    ) -> list[list[Hit]]:
        """Embed query images with ``embedder`` and :meth:`search` with them.

        Args:
            images: Paths, PIL images, arrays — whatever ``embedder.embed`` accepts.
            embedder: The model the index was built with.
            k: Results per query.
            batch_size: Images per forward pass.

        Returns:
            As for :meth:`search`.
        """
        queries = embedder.embed(list(images), batch_size=batch_size)
        return self.search(queries, k)

    # ------------------------------------------------------------------ changing

    @_guarded
    def update(
        self,
        embedder: Embedder,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        batch_size: int = 64,
        progress: bool = True,
        verify: bool = False,
        ray: iu.RayOptions | None = None,
    ) -> UpdateReport:
        """Make the index mirror the image files under the root.

        New content is embedded with :func:`lookalike.inference.pipeline.iter_embed_files`
        (decoding in threads while the model computes; unreadable files are reported in
        ``skipped``). Indexing a folder from Python::

            embedder = load_embedder(source)
            with Index.open_or_create(
                "idx", "photos", model_key=embedder.key or embedder.name,
                dim=embedder.embedding_dim, model_source=source,
            ) as index:
                report = index.update(embedder)

        Args:
            embedder: The model the index was built with: any
                :class:`~lookalike.inference.embedder.Embedder` (an ONNX or torch engine, a
                ``SiameseModel``).
            include: Glob patterns on the relative path a file must match one of (``None``:
                those stored; given ones are stored for later updates).
            exclude: Glob patterns a file must match none of (as for ``include``).
            batch_size: Images per forward pass, and per committed transaction.
            progress: Show a progress bar while embedding (on stderr, when it is a terminal).
            verify: Also hash every file again whatever its size and time say, and embed
                every distinct content again, repairing stale rows and cached vectors that
                do not match their content (:mod:`lookalike.index.update`); as slow as
                embedding the whole collection, but ids and labels are kept.
            ray: Hash and embed on Ray (:mod:`lookalike.inference.ray_data`): the files are
                read, hashed and decoded in Ray tasks and embedded by an actor pool that
                loads ``ray.model`` once per actor; each batch is still committed here.
                ``None``: in this process (Ray is never imported).

        Returns:
            What changed (with ``verified`` and ``repaired`` when verifying). Files and
            sub-folders that cannot be read are reported in ``skipped`` and left out.

        Raises:
            IndexFolderError: If the root folder is missing, another process is updating the
                index, the model returns vectors of the wrong size, or the database is
                damaged or its disk full (the message names the fix).
            DataError: If the root folder itself cannot be listed; for a URI root, if its
                fsspec package is missing, its store cannot be reached, or it is
                ``memory://`` with ``ray`` (Ray workers cannot see this process's memory).
            ValueError: If ``batch_size`` is below 1, or the model returns another number
                of rows than images.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if isinstance(self.root, str):
            uri_root.check(self.root, ray=ray is not None)
        elif not self.root.is_dir():
            raise IndexFolderError(
                f"the indexed folder {self.root} does not exist; if the images moved, open the "
                "index with root=THEIR_NEW_FOLDER"
            )
        with self._sync.writer():
            inc, exc = self._patterns(include, exclude)
            report = UpdateReport()
            found = (
                uri_root.scan(self.root, inc, exc)
                if isinstance(self.root, str)
                else iu.scan(self.root, inc, exc, report)
            )
            rows = self._store.rows()
            self._sync.begin()

            def commit(changes: Changes) -> None:
                self._sync.commit(changes, rows)

            report.removed = sorted(set(rows) - set(found))
            commit(Changes(deletes=report.removed))

            def cached(hashes: set[str]) -> dict[str, FloatArray]:
                return self._store.cached(hashes, self.dim)

            work = None if ray is None else iu.ray_work(embedder, ray)
            todo, recheck = iu.hash_changed(
                self.root,
                found,
                rows,
                report,
                cached,
                commit,
                verify=verify,
                work=work,
                progress=progress,
            )
            iu.embed_missing(
                self.root,
                embedder,
                todo,
                found,
                rows,
                report,
                commit,
                dim=self.dim,
                model_key=self.model_key,
                batch_size=batch_size,
                progress=progress,
                recheck=recheck,
                cached=cached,
                work=work,
            )
            if report.embedded:
                self._record_engine(str(getattr(embedder, "engine", "") or "torch"))
            self._sync.finish()
        return report

    def _record_engine(self, engine: str) -> None:
        """Add ``engine`` to the engines that wrote vectors (writer lock held)."""
        engines = self.engines
        if engine not in engines:
            with self._store.transaction():
                self._store.set_meta("engines", [*engines, engine])

    @_guarded
    def remove(self, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Drop files from the index (their files are left alone).

        A file that still exists under the root comes back at the next :meth:`update` unless
        an exclude pattern matches it.

        Args:
            paths: Relative paths (``/`` or the OS separator), or absolute paths under the root.

        Returns:
            The relative paths that were indexed and are now removed.
        """
        with self._sync.writer():
            rows = self._store.rows()
            self._sync.begin()
            gone = sorted({r for r in (self._relative(p) for p in paths) if r in rows})
            self._sync.commit(Changes(deletes=gone), rows)
            self._sync.finish()
        return gone

    def _patterns(
        self, include: Sequence[str] | None, exclude: Sequence[str] | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Resolve the patterns (stored unless given), store given ones and the root."""
        inc = tuple(self._store.meta("include") if include is None else _as_list(include))
        exc = tuple(self._store.meta("exclude") if exclude is None else _as_list(exclude))
        with self._store.transaction():
            self._store.set_meta("include", list(inc))
            self._store.set_meta("exclude", list(exc))
            for key, value in _root_meta(self.folder, self.root).items():
                self._store.set_meta(key, value)
        return inc, exc

    def _relative(self, path: str | os.PathLike[str]) -> str:
        """A path as stored: relative to the root, with ``/`` separators."""
        if isinstance(self.root, str):  # a URI root: its URIs, or relative paths
            text = os.fspath(path)
            prefix = self.root.rstrip("/") + "/"
            return text[len(prefix) :] if text.startswith(prefix) else text
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.relative_to(self.root)
            except ValueError:
                return p.as_posix()
        return PurePosixPath(*p.parts).as_posix() if p.parts else ""


# --------------------------------------------------------------------------- helpers


def _source_words(source: Any, key: Any) -> str:
    """A recorded model source in words, else its key."""
    if source:
        try:
            return ModelSource.from_dict(source).describe()
        except LookalikeError:
            pass
    return f"model {key!r}"


def _root_of(root: str | os.PathLike[str]) -> Root:
    """A root as the index holds it: an absolute :class:`Path`, or a normalised URI."""
    if isinstance(root, str) and uri_root.is_uri(root):
        return uri_root.normalise(root)
    return Path(root).absolute()


def _root_meta(folder: Path, root: Root) -> dict[str, str]:
    """The root as stored: relative to the index folder (when possible) and absolute; a URI
    as itself, twice."""
    if isinstance(root, str):
        return {"root": root, "root_absolute": root}
    try:
        relative = Path(os.path.relpath(root, folder.absolute())).as_posix()
    except ValueError:  # another drive on Windows
        relative = str(root)
    return {"root": relative, "root_absolute": str(root)}


def _remove_database(db: Path) -> None:
    """Delete an index database and its WAL files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _store_meta(folder: Path, spec: StoreSpec, kind: str) -> dict[str, Any]:
    """The store as the meta records it (nothing for FAISS, the default)."""
    if spec.kind == "faiss":
        return {}
    record = store_record(folder, spec, index_type_for(spec, kind))
    return {"store": record, "store_generation": "0"}


def _recorded_spec(folder: Path, store: Store) -> StoreSpec:
    """The store an index recorded (FAISS when none)."""
    record = store.meta("store")
    if not record or record.get("kind") == "faiss":
        return StoreSpec()
    return recorded_spec(folder, record)


def _check_store(folder: Path, store: Store, expected: StoreSpec | None) -> None:
    """Refuse to open an index with another store than the one it recorded."""
    if expected is None:
        return
    recorded = _recorded_spec(folder, store)
    if not recorded.same_place(expected):
        raise IndexFolderError(
            f"{folder} keeps its vectors in {recorded.describe()}, not {expected.describe()}: "
            "leave the store out to use the recorded one, or rebuild the index there "
            "(--rebuild, or create with overwrite=True)"
        )


def _stored_root(folder: Path, store: Store) -> Root:
    """Where the images are: the stored relative root if it exists, else the absolute one
    (a URI root: the URI)."""
    if uri_root.is_uri(str(store.meta("root_absolute"))):
        return str(store.meta("root_absolute"))
    relative = (folder.absolute() / str(store.meta("root"))).resolve()
    absolute = Path(str(store.meta("root_absolute")))
    return relative if relative.is_dir() or not absolute.is_dir() else absolute


def _as_list(patterns: Sequence[str]) -> list[str]:
    """Patterns as a list (a single string is one pattern)."""
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _query_rows(vectors: FloatArray, dim: int) -> FloatArray:
    """Check query vectors (Q, D) or (D,) and return them as unit rows (Q, D), float32."""
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"query vectors must have shape (Q, {dim}), not {vectors.shape}")
    return unit_rows(vectors)
