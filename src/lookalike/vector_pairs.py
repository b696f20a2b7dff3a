"""Every pair of vectors in a FAISS structure whose inner product reaches a threshold.

Near-duplicate search (:mod:`lookalike.dedup`) is a range search of every stored vector
against all the others: a self-join. This module runs it on a structure of
:mod:`lookalike.vector_index` as it is, reading the stored vectors a block at a time, so a
million-vector index is joined in the memory of the index plus a few blocks — never an N×N
matrix, never all N vectors as float32:

* **flat and HNSW** (exact): the stored vectors, ``chunk`` rows at a time, are range-searched
  against the flat storage with FAISS (a matrix product per block).
* **IVF and IVF-SQ8** (approximate, like a range search that probes ``nprobe`` lists): each
  inverted list is joined with itself and with the lists of its ``nprobe`` nearest centroids
  (centroid to centroid, itself included). The members of both are decoded from the stored
  codes — exact for IVF, the SQ8 reconstruction for IVF-SQ8, so scores there carry its error
  (about 3·10⁻⁴ at D = 1,280) — and multiplied block by block. A pair is found when either
  member's list probes the other's; each pair of lists is joined once.

A per-query IVF range search would choose each query's lists by the query itself, and scan the
codes one query at a time; the join chooses them by the query's own list and runs matrix
products, which on the million-vector benchmark (``benchmarks/bench_million.py``) is what
keeps the whole join within minutes on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.vector_index import kind_of, require_faiss

__all__ = ["DEFAULT_JOIN_NPROBE", "all_pairs", "stored_ids", "stored_vectors"]

DEFAULT_JOIN_NPROBE: int = 8
"""IVF lists each list is joined with (itself included) when no ``nprobe`` is given."""

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
Pairs = tuple[IdArray, IdArray, FloatArray]


def all_pairs(
    index: Any, threshold: float, *, nprobe: int | None = None, chunk: int = 2048
) -> Pairs:
    """Every pair of stored vectors with inner product at least ``threshold``.

    Args:
        index: A structure from :func:`lookalike.vector_index.build` (any kind).
        threshold: The smallest inner product (cosine similarity for unit rows) reported.
        nprobe: IVF only: lists each list is joined with, itself included (``None``:
            :data:`DEFAULT_JOIN_NPROBE`; at least the list count: exact).
        chunk: Rows per block of queries (memory: about ``chunk × 8·chunk`` scores).

    Returns:
        ``(a, b, score)``, each (E,): the ids of each pair with ``a < b`` and its score,
        sorted by ``(a, b)``.

    Raises:
        ValueError: If ``nprobe`` or ``chunk`` is not positive.
    """
    if chunk < 1 or (nprobe is not None and nprobe < 1):
        raise ValueError(f"chunk and nprobe must be positive, not {chunk} and {nprobe}")
    kind = kind_of(index)
    if kind in ("ivf", "ivf_sq8"):
        parts = _ivf_pairs(index, threshold, nprobe or DEFAULT_JOIN_NPROBE, chunk)
    else:
        parts = _flat_pairs(index, threshold, chunk)
    found = list(parts)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    a = np.concatenate([p[0] for p in found])
    b = np.concatenate([p[1] for p in found])
    s = np.concatenate([p[2] for p in found])
    order = np.lexsort((b, a))
    return a[order], b[order], s[order]


def stored_vectors(index: Any, chunk: int = 65536) -> Iterator[tuple[IdArray, FloatArray]]:
    """The stored vectors of a structure, a block at a time (decoded for IVF-SQ8).

    Args:
        index: A structure from :func:`lookalike.vector_index.build`.
        chunk: Rows per block for flat and HNSW (IVF yields one inverted list per block).

    Yields:
        ``(ids (B,), vectors (B, D) float32)``, every stored vector once.
    """
    if kind_of(index) in ("ivf", "ivf_sq8"):
        lists = _InvertedLists(index)
        for list_no in range(lists.nlist):
            ids, vectors = lists.decode(list_no)
            if len(ids):
                yield ids, vectors
        return
    storage, ids = _flat_storage(index)
    n = int(storage.ntotal)
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        yield ids[start : start + count], storage.reconstruct_n(start, count)


def stored_ids(index: Any) -> IdArray:
    """The ids of every stored vector (N,), int64, in storage order (not sorted)."""
    if kind_of(index) in ("ivf", "ivf_sq8"):
        lists = _InvertedLists(index)
        parts = [lists.ids(list_no) for list_no in range(lists.nlist)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return _flat_storage(index)[1]


# --------------------------------------------------------------------------- flat and HNSW


def _flat_storage(index: Any) -> tuple[Any, IdArray]:
    """The ``IndexFlat`` holding an ``IndexIDMap2``'s vectors, and the id of each row."""
    faiss = require_faiss()
    inner = faiss.downcast_index(index.index)
    storage = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else inner
    return storage, faiss.vector_to_array(index.id_map).astype(np.int64)


def _flat_pairs(index: Any, threshold: float, chunk: int) -> Iterator[Pairs]:
    """Exact: blocks of stored vectors range-searched against the flat storage."""
    storage, ids = _flat_storage(index)
    n = int(storage.ntotal)
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))  # FAISS keeps > r
    for start in range(0, n, chunk):
        queries = storage.reconstruct_n(start, min(chunk, n - start))
        lims, scores, rows = storage.range_search(queries, radius)
        query = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims))
        upper = rows > query  # each pair once (by row), no self-pairs
        a, b = ids[query[upper]], ids[rows[upper]]
        yield np.minimum(a, b), np.maximum(a, b), scores[upper].astype(np.float32)


# --------------------------------------------------------------------------- IVF


class _InvertedLists:
    """Read access to an IVF structure's lists: ids and decoded vectors of one list."""

    def __init__(self, index: Any) -> None:
        faiss = require_faiss()
        self.faiss = faiss
        self.ivf = faiss.extract_index_ivf(index)
        self.nlist = int(self.ivf.nlist)
        self.dim = int(self.ivf.d)
        self.code_size = int(self.ivf.code_size)
        self.lists = self.ivf.invlists
        self.sq = index.sq if isinstance(index, faiss.IndexIVFScalarQuantizer) else None
        if self.sq is not None and index.by_residual:
            raise ValueError("IVF-SQ8 structures encoded by residual are not supported")

    def size(self, list_no: int) -> int:
        """Number of vectors in a list."""
        return int(self.lists.list_size(list_no))

    def ids(self, list_no: int) -> IdArray:
        """The ids (B,) of one list (a copy)."""
        n = self.size(list_no)
        if n == 0:
            return np.zeros(0, np.int64)
        ids: IdArray = self.faiss.rev_swig_ptr(self.lists.get_ids(list_no), n).astype(np.int64)
        return ids

    def decode(self, list_no: int) -> tuple[IdArray, FloatArray]:
        """The ids (B,) and vectors (B, D) of one list."""
        n = self.size(list_no)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        ids = self.ids(list_no)
        codes = self.faiss.rev_swig_ptr(self.lists.get_codes(list_no), n * self.code_size)
        codes = codes.reshape(n, self.code_size)
        decoded = self.sq.decode(codes) if self.sq is not None else codes.view(np.float32)
        return ids, np.array(decoded, dtype=np.float32, order="C")

    def partners(self, nprobe: int) -> list[IdArray]:
        """For each list, the lists it is joined with: each unordered pair of lists once.

        List ``a`` is joined with list ``b >= a`` when either is among the other's ``nprobe``
        nearest centroids (or ``a == b``).
        """
        faiss = self.faiss
        p = min(nprobe, self.nlist)
        centroids = self.ivf.quantizer.reconstruct_n(0, self.nlist)
        _, near = faiss.knn(centroids, centroids, p, metric=faiss.METRIC_INNER_PRODUCT)
        src = np.concatenate([np.repeat(np.arange(self.nlist), p), np.arange(self.nlist)])
        dst = np.concatenate([near.reshape(-1).astype(np.int64), np.arange(self.nlist)])
        keep = dst >= 0
        lo, hi = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
        edges = np.unique(lo * self.nlist + hi)
        lo, hi = edges // self.nlist, edges % self.nlist
        bounds = np.searchsorted(lo, np.arange(self.nlist + 1))
        return [hi[bounds[a] : bounds[a + 1]] for a in range(self.nlist)]


def _ivf_pairs(index: Any, threshold: float, nprobe: int, chunk: int) -> Iterator[Pairs]:
    """The IVF self-join: each list against itself and its partner lists, block by block."""
    lists = _InvertedLists(index)
    cap = 8 * chunk  # partner rows per block
    for a, partners in enumerate(lists.partners(nprobe)):
        if lists.size(a) == 0:
            continue
        ids_a, x_a = lists.decode(a)
        block: list[tuple[IdArray, FloatArray]] = []
        rows = 0
        for b in partners.tolist():
            if lists.size(b) == 0:
                continue
            block.append((ids_a, x_a) if b == a else lists.decode(b))
            rows += len(block[-1][0])
            if rows >= cap:
                yield from _join(ids_a, x_a, block, threshold, chunk)
                block, rows = [], 0
        if block:
            yield from _join(ids_a, x_a, block, threshold, chunk)


def _join(
    ids_a: IdArray,
    x_a: FloatArray,
    block: list[tuple[IdArray, FloatArray]],
    threshold: float,
    chunk: int,
) -> Iterator[Pairs]:
    """Pairs between list ``a`` and a block of partner lists (list ``a`` itself: ``a < b``)."""
    ids_b = np.concatenate([ids for ids, _ in block])
    x_b = np.concatenate([x for _, x in block]) if len(block) > 1 else block[0][1]
    own = np.zeros(len(ids_b), dtype=bool)
    start = 0
    for ids, _ in block:
        if ids is ids_a:
            own[start : start + len(ids)] = True
        start += len(ids)
    for lo in range(0, len(ids_a), chunk):
        scores = x_a[lo : lo + chunk] @ x_b.T
        r, c = np.nonzero(scores >= np.float32(threshold))
        a, b = ids_a[lo + r], ids_b[c]
        keep = ~own[c] | (a < b)  # within list a: each pair once, no self-pairs
        a, b = a[keep], b[keep]
        yield np.minimum(a, b), np.maximum(a, b), scores[r[keep], c[keep]]
