"""An index's vectors in a Milvus collection (milvus-lite or a server), in step with SQLite.

SQLite stays the source of truth (meta, file rows, the content-hash embedding cache);
:class:`MilvusVectors` keeps one Milvus collection in step with it, and is the index's
:class:`~lookalike.index.backend.VectorBackend`:

* **Collection.** Primary key ``id`` (INT64) = the file's id in SQLite (``AUTOINCREMENT``, never
  reused), ``content_hash`` (VARCHAR(32)), ``vector`` (FLOAT_VECTOR, dim D), metric IP on unit
  rows (= cosine), consistency ``Strong`` (a search sees every acknowledged write).
* **Writes.** Each batch commits to SQLite first (one transaction, a new generation); then its
  new and changed files are *upserted* and its deleted ones deleted by id; only once Milvus
  acknowledged both is the generation the collection reflects recorded in SQLite meta
  (``store_generation``).
* **Crash consistency.** A process killed between the SQLite commit and the Milvus writes
  leaves ``store_generation`` behind the database's generation. The next writer
  (:meth:`MilvusVectors.begin`, under the writer lock) then *reconciles*: it reads
  ``(id, content_hash)`` of the whole collection with a query iterator, compares it with
  SQLite's, deletes the extra rows and upserts the missing or changed ones from SQLite's
  cached vectors, a block at a time. A reader of a stale collection still searches: hits
  whose ids are gone from SQLite are dropped by :meth:`~lookalike.index.index.Index.search`.
* **Index types.** ``--kind`` maps to Milvus's: flat → ``FLAT`` (exact, the same results as
  FAISS flat), ivf → ``IVF_FLAT``, ivf_sq8 → ``IVF_SQ8``, hnsw → ``HNSW``; ``auto`` is ``FLAT``
  on milvus-lite and ``HNSW`` on a server (what Milvus's ``AUTOINDEX`` builds there); the
  choice is recorded. IVF collections have :data:`NLIST` lists, fixed when the collection is
  made (Milvus builds the index per segment); a search scans ``nprobe`` of them (``None``: an
  eighth, at least 8, as FAISS's ``ivf`` default); for HNSW ``nprobe`` is the search breadth
  ``ef`` (``None``: the index's ``ef_search``, raised to ``k``).
* **Dedup.** :meth:`MilvusVectors.pairs` range-searches the stored vectors (read from SQLite
  :data:`QUERIES_PER_REQUEST` at a time) with ``radius`` just below the threshold and
  ``range_filter`` just above 1, at most :data:`TOPK_MAX` hits per query (Milvus's cap; a query
  that fills it warns that groups may be incomplete): never an N×N matrix.

**milvus-lite.** pymilvus runs milvus-lite inside this process (a gRPC server on a thread)
over a data folder whose name ends in ``.db``; only one process may open that folder at a time,
so a server and an ``index`` update cannot use one milvus-lite store at once. The folder is
released when the last index using it in this process closes.

**Servers.** The token (``user:password`` or an API key) comes from
:data:`~lookalike.index.backend.TOKEN_ENV`, never from the index; a server that does not
answer within :data:`CONNECT_TIMEOUT` seconds is one :class:`~lookalike.errors.IndexFolderError`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from lookalike.errors import IndexFolderError, first_line
from lookalike.index import faiss_structures as vi
from lookalike.index.backend import TOKEN_ENV, Pairs, StoreSpec, blocks
from lookalike.index.store import FileRow, Store
from lookalike.index.sync import WriterLock, apply_batch
from lookalike.index.update import Changes

__all__ = [
    "CONNECT_TIMEOUT",
    "NLIST",
    "QUERIES_PER_REQUEST",
    "TOPK_MAX",
    "MilvusVectors",
    "index_type_for",
    "recorded_spec",
    "store_record",
]

CONNECT_TIMEOUT = 10.0
"""Seconds a Milvus server has to answer before opening the index fails."""
NLIST = 1024
"""IVF lists of an ``IVF_FLAT`` / ``IVF_SQ8`` collection."""
TOPK_MAX = 16384
"""Milvus's largest ``limit`` per query."""
QUERIES_PER_REQUEST = 256
"""Query vectors per search request."""
UPSERT_ROWS = 2000
"""Rows per upsert request (2,000 × 1,280 float32 = 10 MB)."""

_KINDS = {"flat": "FLAT", "ivf": "IVF_FLAT", "ivf_sq8": "IVF_SQ8", "hnsw": "HNSW"}
_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
_P = ParamSpec("_P")
_R = TypeVar("_R")


def index_type_for(spec: StoreSpec, kind: str) -> str:
    """The Milvus index type for a ``--kind`` (``auto``: FLAT on milvus-lite, HNSW on a server)."""
    if kind == "auto":
        return "FLAT" if spec.kind == "milvus-lite" else "HNSW"
    return _KINDS[kind]


def store_record(folder: Path, spec: StoreSpec, index_type: str) -> dict[str, Any]:
    """What the index meta records of its store (a milvus-lite path also relative to ``folder``)."""
    record: dict[str, Any] = {"kind": spec.kind, "index_type": index_type, "nlist": NLIST}
    if spec.kind == "milvus-lite":
        path = str(spec.path)
        try:
            relative = Path(os.path.relpath(path, folder.absolute())).as_posix()
        except ValueError:  # another drive on Windows
            relative = path
        record |= {"path": relative, "path_absolute": path}
        # named after the index folder: rebuilding it (or making it again after deleting it)
        # replaces its own collection instead of leaving an orphan in the milvus-lite folder
        where = str(folder.absolute()).encode("utf-8", "surrogateescape")
        record["collection"] = f"lookalike_{hashlib.blake2b(where, digest_size=6).hexdigest()}"
        record["generated"] = True
    else:
        record |= {"uri": spec.uri, "collection": spec.collection}
    return record


def recorded_spec(folder: Path, record: dict[str, Any]) -> StoreSpec:
    """The store an index recorded: a milvus-lite path relative to the index folder if it
    exists there (the two moved together), else the absolute one."""
    if record.get("kind") == "milvus-lite":
        relative = (folder.absolute() / str(record["path"])).resolve()
        absolute = Path(str(record["path_absolute"]))
        path = relative if relative.exists() or not absolute.exists() else absolute
        return StoreSpec("milvus-lite", path=str(path), collection=str(record["collection"]))
    if record.get("kind") == "milvus":
        return StoreSpec("milvus", uri=str(record["uri"]), collection=str(record["collection"]))
    return StoreSpec()


def _translated(
    method: Callable[Concatenate[MilvusVectors, _P], _R],
) -> Callable[Concatenate[MilvusVectors, _P], _R]:
    """Run a method with a Milvus failure turned into one :class:`IndexFolderError`."""

    @functools.wraps(method)
    def run(self: MilvusVectors, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        from pymilvus.exceptions import MilvusException

        try:
            return method(self, *args, **kwargs)
        except MilvusException as exc:
            raise IndexFolderError(
                f"Milvus at {self.spec.describe()} failed: {first_line(exc)}; the index "
                "database is intact: run `lookalike index` again once Milvus works to bring "
                "the collection up to date"
            ) from exc

    return run


class MilvusVectors(WriterLock):
    """An index's vectors in a Milvus collection, in step with its database.

    Connects at once (failing fast with the URI and what to check). Creates the collection
    when it is missing (its rows then come from SQLite at the next :meth:`begin`).

    Args:
        folder: The index folder.
        store: Its database.
        dim: Embedding size D.
        config: The index's search settings (``nprobe``, ``ef_search``).
        record: The store record of the index meta (:func:`store_record`).
        new: The index is being created: a collection of the same name that holds rows is
            refused, unless its name was generated for this index folder (then it is the
            collection of an earlier index in the same folder, and is replaced).
        overwrite: Drop a collection of the same name first (a rebuilt index).

    Raises:
        IndexFolderError: If Milvus cannot be reached or opened, or (when creating) the
            collection already holds rows that are not this index's.
    """

    def __init__(
        self,
        folder: Path,
        store: Store,
        dim: int,
        config: vi.VectorIndexConfig,
        record: dict[str, Any],
        *,
        new: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.folder = folder
        self.store = store
        self.dim = dim
        self.config = config
        self.spec = recorded_spec(folder, record)
        self.collection = str(record["collection"])
        self.index_type = str(record["index_type"])
        self.generated = bool(record.get("generated"))
        self.nlist = int(record.get("nlist", NLIST))
        self._lock_depth = 0
        self._client: Any = None
        self._warned = False
        self._connect()
        self._prepare(new=new, overwrite=overwrite)

    # ------------------------------------------------------------------ connection

    def _connect(self) -> None:
        """Open the client (milvus-lite: start its in-process server for the folder)."""
        from pymilvus import MilvusClient

        spec = self.spec
        try:
            if spec.kind == "milvus-lite":
                path = str(spec.path)
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                with _LITE_LOCK:
                    _LITE_USERS[path] = _LITE_USERS.get(path, 0) + 1
                try:
                    with _quiet("milvus_lite.server_manager"):  # a traceback; ours says it
                        self._client = MilvusClient(uri=path)
                except BaseException:
                    self._release_lite()
                    raise
            else:
                token = os.environ.get(TOKEN_ENV, "")
                self._client = MilvusClient(uri=spec.uri, token=token, timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # pymilvus raises several kinds, all meaning "not reachable"
            if spec.kind == "milvus-lite":
                check = (
                    "check that the folder is writable and that no other process has it "
                    "open (milvus-lite allows one process at a time)"
                )
            else:
                check = (
                    "check that the server is running and reachable from here, and "
                    f"${TOKEN_ENV} if it needs a token"
                )
            raise IndexFolderError(
                f"cannot open the Milvus store {spec.describe()}: {first_line(exc)}; {check}"
            ) from exc

    def _release_lite(self) -> None:
        """Stop milvus-lite's server for the folder once no index of this process uses it."""
        path = str(self.spec.path)
        with _LITE_LOCK:
            left = _LITE_USERS.get(path, 1) - 1
            if left > 0:
                _LITE_USERS[path] = left
                return
            _LITE_USERS.pop(path, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)

    def forget(self) -> None:
        """Close the client (and milvus-lite's server when this was its last user)."""
        if self._client is None:
            return
        client, self._client = self._client, None
        try:
            client.close()
        finally:
            if self.spec.kind == "milvus-lite":
                self._release_lite()

    @property
    def client(self) -> Any:
        """The open pymilvus ``MilvusClient`` (reconnected after :meth:`forget`)."""
        if self._client is None:
            self._connect()
        return self._client

    @_translated
    def _prepare(self, *, new: bool, overwrite: bool) -> None:
        """Create the collection if missing; drop it first with ``overwrite``."""
        exists = bool(self.client.has_collection(self.collection))
        if exists and (overwrite or (new and self.generated)):  # generated: this folder's own
            self.client.drop_collection(self.collection)
            exists = False
        elif exists and new:
            rows = int(self.client.get_collection_stats(self.collection).get("row_count", 0))
            if rows:
                raise IndexFolderError(
                    f"the Milvus collection {self.spec.describe()} already holds {rows} "
                    "vectors; name another collection, or rebuild (--rebuild) to replace it"
                )
        if not exists:
            self._create_collection()
        self.client.load_collection(self.collection)  # a reopened collection starts released

    def _create_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=32)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        build: dict[str, Any] = {}
        if self.index_type.startswith("IVF"):
            build = {"nlist": self.nlist}
        elif self.index_type == "HNSW":
            build = {"M": self.config.hnsw_m, "efConstruction": 200}
        params.add_index(
            field_name="vector", index_type=self.index_type, metric_type="IP", params=build
        )
        with _quiet("grpc._server"):  # milvus-lite lacks AllocTimestamp; pymilvus copes
            self.client.create_collection(
                self.collection, schema=schema, index_params=params, consistency_level="Strong"
            )

    # ------------------------------------------------------------------ the backend

    @property
    def kind(self) -> str:
        """``"milvus-lite FLAT"``, ``"milvus HNSW"``, …"""
        return f"{self.spec.kind} {self.index_type}"

    @_translated
    def begin(self) -> None:
        """Reconcile the collection with SQLite if it is stale (writer lock held)."""
        synced = self.store.meta("store_generation")
        if synced != self.store.generation or not self.client.has_collection(self.collection):
            self.reconcile()

    @_translated
    def reconcile(self) -> tuple[int, int]:
        """Make the collection hold exactly SQLite's ``(id, content_hash, vector)`` rows.

        Reads the collection's ``(id, content_hash)`` with a query iterator, deletes the ids
        SQLite does not have (or has with another content) and upserts what is missing or
        changed from SQLite's cached vectors, :data:`UPSERT_ROWS` at a time. Memory: the two
        id → hash maps, and one block of vectors.

        Returns:
            ``(deleted, upserted)`` row counts.
        """
        if not self.client.has_collection(self.collection):
            self._create_collection()
        with self.store.reading() as generation:
            want = self.store.id_hashes()
            have = dict(self._stored_hashes())
            stale = [i for i, h in have.items() if want.get(i) != h]
            missing = sorted(i for i, h in want.items() if have.get(i) != h)
            gone = [i for i in stale if i not in want]
            for part in blocks(len(gone), 10_000):
                self.client.delete(self.collection, ids=gone[part])
            for part in blocks(len(missing), UPSERT_ROWS):
                ids, hashes, vectors = self.store.vectors_by_id(missing[part], self.dim)
                self._upsert(ids.tolist(), hashes, vectors)
        self._flush()
        self._synced(generation)
        return len(gone), len(missing)

    def _stored_hashes(self) -> Iterator[tuple[int, str]]:
        """``(id, content_hash)`` of every row of the collection."""
        with _quiet("pymilvus"):  # "failed to get mvccTs" from milvus-lite: harmless
            iterator = self.client.query_iterator(
                self.collection, batch_size=10_000, output_fields=["id", "content_hash"]
            )
            try:
                while rows := iterator.next():
                    for row in rows:
                        yield int(row["id"]), str(row["content_hash"])
            finally:
                iterator.close()

    @_translated
    def commit(self, batch: Changes, rows: dict[str, FileRow]) -> None:
        """Apply a batch to SQLite in one transaction, then upsert and delete in Milvus, then
        record the generation the collection reflects (writer lock held, after :meth:`begin`)."""
        if not (batch.upserts or batch.touched or batch.deletes):
            return
        removed, added = apply_batch(self.store, batch, rows)
        if not (removed or added):
            return
        kept = {i for i, _ in added}
        gone = [i for i in removed if i not in kept]
        if gone:
            self.client.delete(self.collection, ids=gone)
        for part in blocks(len(added), UPSERT_ROWS):
            chunk = added[part]
            vectors = np.stack([batch.vectors[d] for _, d in chunk]).astype(np.float32)
            self._upsert([i for i, _ in chunk], [d for _, d in chunk], vectors)
        self._synced(self.store.generation)

    def _upsert(self, ids: list[int], hashes: list[str], vectors: FloatArray) -> None:
        rows = [
            {"id": i, "content_hash": h, "vector": v}
            for i, h, v in zip(ids, hashes, vectors.tolist(), strict=True)
        ]
        if rows:
            self.client.upsert(self.collection, rows)

    def _synced(self, generation: str) -> None:
        """Record that the collection reflects ``generation`` (after Milvus acknowledged)."""
        with self.store.transaction():
            self.store.set_meta("store_generation", generation)

    def _flush(self) -> None:
        """milvus-lite: seal what was written, so the index type's index is built for it (a
        server seals segments itself; its ``flush`` is rate-limited and not needed for
        durability)."""
        if self.spec.kind == "milvus-lite":
            self.client.flush(self.collection)

    @_translated
    def finish(self) -> None:
        """Prune the embedding cache and seal the writes (writer lock held)."""
        with self.store.transaction():
            self.store.prune_cache()
        self._flush()

    @_translated
    def search(self, queries: FloatArray, k: int, nprobe: int | None) -> tuple[FloatArray, IdArray]:
        """The ``k`` best stored vectors of each unit row of ``queries`` (Q, D).

        At most :data:`TOPK_MAX` hits per query (Milvus's cap). Queries go
        :data:`QUERIES_PER_REQUEST` to a request.

        Returns:
            ``(scores (Q, k'), ids (Q, k'))`` with ``k' = min(k, TOPK_MAX)``, best first,
            ``-inf`` / ``-1`` as padding.
        """
        limit = min(k, TOPK_MAX)
        scores = np.full((len(queries), limit), -np.inf, np.float32)
        ids = np.full((len(queries), limit), -1, np.int64)
        params = {"metric_type": "IP", "params": self._search_params(nprobe, limit)}
        for part in blocks(len(queries), QUERIES_PER_REQUEST):
            found = self.client.search(
                self.collection,
                data=queries[part].tolist(),
                limit=limit,
                output_fields=["id"],
                search_params=params,
            )
            for row, hits in enumerate(found, start=part.start):
                for col, hit in enumerate(hits):
                    scores[row, col] = hit["distance"]
                    ids[row, col] = hit["id"]
        return scores, ids

    def _search_params(self, nprobe: int | None, k: int) -> dict[str, Any]:
        """``nprobe`` for IVF (``None``: an eighth of the lists, at least 8); ``ef`` for HNSW."""
        if self.index_type.startswith("IVF"):
            chosen = nprobe or self.config.nprobe or vi.default_nprobe(self.nlist, "ivf")
            return {"nprobe": min(chosen, self.nlist)}
        if self.index_type == "HNSW":
            return {"ef": max(k, nprobe or self.config.ef_search)}
        return {}

    @_translated
    def pairs(self, threshold: float, nprobe: int | None) -> Pairs:
        """Every stored pair with cosine at least ``threshold``, by range search.

        The stored vectors are read from SQLite :data:`QUERIES_PER_REQUEST` at a time and
        range-searched with ``radius`` just below ``threshold`` and ``range_filter`` just above
        1 (a self-match may score 1.0000001), at most :data:`TOPK_MAX` hits per query; a query
        that fills that limit is warned about once on stderr (its group may be incomplete).
        A pair found from either side is reported once.

        Returns:
            ``(a, b, score)``, each (E,): ids with ``a < b``, sorted by ``(a, b)``.
        """
        n = self.store.count()
        limit = max(1, min(TOPK_MAX, n))
        search = self._search_params(nprobe, limit)
        search |= {"radius": float(threshold) - 1e-6, "range_filter": 1.0 + 1e-3}
        params = {"metric_type": "IP", "params": search}
        a_parts: list[IdArray] = []
        b_parts: list[IdArray] = []
        s_parts: list[FloatArray] = []
        with self.store.reading():
            for ids, vectors in self.store.vector_blocks(self.dim, block=QUERIES_PER_REQUEST):
                found = self.client.search(
                    self.collection,
                    data=vectors.tolist(),
                    limit=limit,
                    output_fields=["id"],
                    search_params=params,
                )
                for query, hits in zip(ids.tolist(), found, strict=True):
                    if len(hits) >= limit and limit < n:
                        self._warn_full(limit)
                    other = np.asarray([h["id"] for h in hits], np.int64)
                    score = np.asarray([h["distance"] for h in hits], np.float32)
                    keep = (other != query) & (score >= threshold)
                    other, score = other[keep], score[keep]
                    a_parts.append(np.minimum(other, query))
                    b_parts.append(np.maximum(other, query))
                    s_parts.append(score)
        if not a_parts or not sum(len(p) for p in a_parts):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        a, b, s = np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(s_parts)
        order = np.lexsort((-s, b, a))
        a, b, s = a[order], b[order], s[order]
        first = np.ones(len(a), bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        return a[first], b[first], s[first]

    def _warn_full(self, limit: int) -> None:
        if not self._warned:
            self._warned = True
            print(
                f"warning: an image has {limit} or more near duplicates, Milvus's limit per "
                "query; its group may be incomplete (raise the threshold)",
                file=sys.stderr,
            )

    def ids(self) -> IdArray:
        """The ids of every indexed file (N,), sorted (SQLite's: the collection mirrors them)."""
        return self.store.ids()


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Hide a logger's messages below ERROR (``pymilvus``) or CRITICAL (the others) meanwhile."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR if name == "pymilvus" else logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
