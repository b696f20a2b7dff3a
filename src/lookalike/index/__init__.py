"""A persistent, incrementally updated search index of a folder of images.

Index a folder from Python with the one embedder contract::

    from lookalike.index import Index
    from lookalike.inference import ModelSource, load_embedder

    source = ModelSource()                       # the default pretrained backbone
    embedder = load_embedder(source)             # ONNX Runtime on CPU, torch on CUDA
    with Index.open_or_create(
        "photos/.lookalike-index", "photos", model_key=embedder.key or embedder.name,
        dim=embedder.embedding_dim, model_source=source,
    ) as index:
        report = index.update(embedder)          # embeds only new content; a report of changes
        hits = index.search_images(["query.jpg"], embedder, k=5)[0]

The public surface:

* :class:`Index` — ``create`` / ``open`` / ``open_or_create`` (refuses another model's key;
  ``create(..., overwrite=True)`` rebuilds a damaged index), ``update(embedder)`` (mirror the
  files under the root: content-hash cache, each vector computed from the very bytes hashed,
  crash-safe batches, unreadable files and folders skipped; ``verify=True`` re-hashes and
  re-embeds everything and repairs what is wrong), ``search`` / ``search_images`` →
  :class:`Hit`, ``vectors`` → :class:`Snapshot`, ``remove``, ``set_labels``,
  ``recorded_source``; a damaged database or a full disk is one
  :class:`~lookalike.errors.IndexFolderError` naming the file and the fix. The root is a
  folder, or an fsspec URI (``Index.create("idx", "s3://bucket/photos", ...)``; ``gs://``,
  ``file://``, ``memory://``): :mod:`~lookalike.index.uri_root`;
* :class:`UpdateReport` — what an update added, updated, removed, skipped, embedded (and, when
  verifying, repaired);
* :class:`VectorIndexConfig` and :data:`KINDS` — the FAISS structure (flat, IVF, IVF-SQ8,
  HNSW; ``"auto"`` by size);
* :func:`all_pairs` — every stored pair above a cosine threshold, blockwise (the self-join
  behind :func:`lookalike.dedup.groups.dedup_index`).

The parts, one module each: :mod:`~lookalike.index.index` (the class),
:mod:`~lookalike.index.store` (SQLite, the source of truth), :mod:`~lookalike.index.update`
(what changed, and embedding it), :mod:`~lookalike.index.reader` (content hashes, and decoding
exactly the bytes hashed), :mod:`~lookalike.index.failures` (database errors in words),
:mod:`~lookalike.index.sync` (FAISS in step with SQLite, the writer lock),
:mod:`~lookalike.index.faiss_structures` and :mod:`~lookalike.index.self_join`;
:mod:`~lookalike.index.backend` (the one interface of the vector search structure, and the
``--store`` spec) and :mod:`~lookalike.index.milvus_store` (a Milvus collection in step with
SQLite: ``Index.create(..., store="milvus-lite:PATH.db")`` or
``store="milvus://HOST:PORT/COLLECTION"``).

Names are imported lazily: ``import lookalike.index`` imports neither FAISS, pymilvus nor
torch (pymilvus only when an index with a Milvus store is opened).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.index.faiss_structures import KINDS, VectorIndexConfig
    from lookalike.index.index import Hit, Index
    from lookalike.index.self_join import all_pairs
    from lookalike.index.store import Snapshot
    from lookalike.index.update import UpdateReport

_LAZY = {
    "Index": "lookalike.index.index",
    "Hit": "lookalike.index.index",
    "Snapshot": "lookalike.index.store",
    "UpdateReport": "lookalike.index.update",
    "KINDS": "lookalike.index.faiss_structures",
    "VectorIndexConfig": "lookalike.index.faiss_structures",
    "all_pairs": "lookalike.index.self_join",
}

__all__ = ["KINDS", "Hit", "Index", "Snapshot", "UpdateReport", "VectorIndexConfig", "all_pairs"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
