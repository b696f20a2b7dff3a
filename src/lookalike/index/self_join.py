"""Every pair of vectors in a FAISS structure whose inner product reaches a threshold.

Near-duplicate search (:mod:`lookalike.dedup.groups`) is a range search of every stored vector
against all the others: a self-join. This module runs it on a structure of
:mod:`lookalike.index.faiss_structures` as it is, reading the stored vectors a block at a time, so a
million-vector index is joined in the memory of the index plus a few blocks — never an N×N
matrix, never all N vectors as float32:

* **flat and HNSW** (exact): the stored vectors, ``chunk`` rows at a time, are range-searched
  against the flat storage with FAISS (a matrix product per block).
* **IVF and IVF-SQ8** (approximate, as an IVF range search that probes ``nprobe`` lists):
  every stored vector probes its own list and its ``nprobe - 1`` next nearest centroids; then
  each list in turn is multiplied, with BLAS, against the vectors that probe it, decoded from
  the stored codes ``chunk`` at a time (exact for IVF; for IVF-SQ8 the SQ8 reconstruction put
  back on the unit sphere, so an exact duplicate still scores 1 and other scores carry the
  SQ8 error). A pair is found when either member probes the other's list, and reported once.

FAISS's own range search has the same semantics but scans the codes one query at a time,
without BLAS; by gathering all the queries of a list into blocks, the join turns the scan into
matrix products. ``benchmarks/bench_million.py`` measures it on a million vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.index.faiss_structures import kind_of, require_faiss

__all__ = ["DEFAULT_JOIN_NPROBE", "all_pairs", "stored_ids", "stored_vectors"]

DEFAULT_JOIN_NPROBE: int = 8
"""IVF lists each vector probes (its own included) when no ``nprobe`` is given."""

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
Pairs = tuple[IdArray, IdArray, FloatArray]


def all_pairs(
    index: Any, threshold: float, *, nprobe: int | None = None, chunk: int = 2048
) -> Pairs:
    """Every pair of stored vectors with inner product at least ``threshold``.

    Args:
        index: A structure from :func:`lookalike.index.faiss_structures.build` (any kind).
        threshold: The smallest inner product (cosine similarity for unit rows) reported.
        nprobe: IVF only: lists each stored vector probes, its own included (``None``:
            :data:`DEFAULT_JOIN_NPROBE`; at least the list count: exact). Memory: N × nprobe
            list numbers (4 bytes each).
        chunk: Vectors per block of queries.

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
    """The stored vectors of a structure, a block at a time (IVF-SQ8: decoded, unit rows).

    Args:
        index: A structure from :func:`lookalike.index.faiss_structures.build`.
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
        yield ids[start : start + count], np.asarray(storage.reconstruct_n(start, count))


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
        # np.asarray: with faiss.contrib.torch_utils imported (pytorch-metric-learning does),
        # reconstruct_n returns a torch tensor.
        queries = np.asarray(storage.reconstruct_n(start, min(chunk, n - start)))
        lims, scores, rows = storage.range_search(queries, radius)
        lims, rows = lims.astype(np.int64), rows.astype(np.int64)
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
        self._cache: dict[int, tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]] = {}
        self.sq = index.sq if isinstance(index, faiss.IndexIVFScalarQuantizer) else None
        if self.sq is not None and index.by_residual:
            raise ValueError("IVF-SQ8 structures encoded by residual are not supported")
        self.scale: FloatArray | None = None
        self.offset: FloatArray | None = None
        if self.sq is not None and self.sq.qtype == faiss.ScalarQuantizer.QT_8bit:
            # FAISS decodes component i as vmin[i] + (code + 0.5) / 255 · vdiff[i], with
            # trained = [vmin (D), vdiff (D)]: the same in NumPy, several times faster.
            trained = faiss.vector_to_array(self.sq.trained).astype(np.float32)
            vmin, vdiff = trained[: self.dim], trained[self.dim :]
            self.scale = vdiff / np.float32(255)
            self.offset = vmin + np.float32(0.5) * self.scale

    def size(self, list_no: int) -> int:
        """Number of vectors in a list."""
        return int(self.lists.list_size(list_no))

    def ids(self, list_no: int) -> IdArray:
        """The ids (B,) of one list (a copy)."""
        return self._ids_view(list_no).astype(np.int64)

    def decode(self, list_no: int) -> tuple[IdArray, FloatArray]:
        """The ids (B,) and vectors (B, D) of one list (SQ8: decoded, then re-normalised)."""
        return self.ids(list_no), self._decode(self._codes_view(list_no))

    def gather(self, lists: IdArray, rows: IdArray) -> tuple[IdArray, FloatArray]:
        """Ids and vectors of the ``rows[k]``-th member of list ``lists[k]`` (lists sorted)."""
        cuts = [0, *(np.flatnonzero(np.diff(lists)) + 1).tolist(), len(lists)]
        ids, codes = [], []
        for lo, hi in pairwise(cuts):
            list_no, where = int(lists[lo]), rows[lo:hi]
            ids.append(self._ids_view(list_no)[where])
            codes.append(self._codes_view(list_no)[where])
        return np.concatenate(ids).astype(np.int64), self._decode(np.concatenate(codes))

    def _ids_view(self, list_no: int) -> npt.NDArray[Any]:
        """The list's ids (B,), a view of FAISS's memory (no copy)."""
        return self._views(list_no)[0]

    def _codes_view(self, list_no: int) -> npt.NDArray[np.uint8]:
        """The list's codes (B, code size), a view of FAISS's memory (no copy)."""
        return self._views(list_no)[1]

    def _views(self, list_no: int) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]:
        """Views of one list's ids and codes, made once (valid while the index is unchanged)."""
        found = self._cache.get(list_no)
        if found is None:
            n = self.size(list_no)
            if n == 0:
                found = (np.zeros(0, np.int64), np.zeros((0, self.code_size), np.uint8))
            else:
                rev = self.faiss.rev_swig_ptr
                ids = rev(self.lists.get_ids(list_no), n)
                codes = rev(self.lists.get_codes(list_no), n * self.code_size)
                found = (ids, codes.reshape(n, self.code_size))
            self._cache[list_no] = found
        return found

    def _decode(self, codes: npt.NDArray[np.uint8]) -> FloatArray:
        """Vectors (B, D) from codes (B, code size): float32 as stored, or SQ8 decoded."""
        if self.sq is None:
            return codes.view(np.float32).copy()
        if self.scale is not None and self.offset is not None:
            vectors = codes.astype(np.float32)
            vectors *= self.scale
            vectors += self.offset
        else:
            vectors = np.array(self.sq.decode(codes), dtype=np.float32, order="C")
        # Back onto the unit sphere: the stored vectors were unit rows, and a decoded one's
        # norm is off by ~1e-3, which would put an exact duplicate's score that far from 1.
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]
        vectors /= np.where(norms > 0, norms, np.float32(1))
        return vectors


def _ivf_pairs(index: Any, threshold: float, nprobe: int, chunk: int) -> Iterator[Pairs]:
    """The IVF self-join, list by list: each list against every stored vector that probes it.

    Pass 1 finds each stored vector's ``nprobe`` nearest lists (its own always among them);
    pass 2 takes each list in turn, gathers the vectors that probe it, ``chunk`` at a time, and
    multiplies them with the list's members. A pair found from both sides (each probes the
    other's list) is reported by the side with the smaller id only.
    """
    lists = _InvertedLists(index)
    sizes = np.asarray([lists.size(i) for i in range(lists.nlist)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])  # vector k of list l is number starts[l] + k
    probes = _probes(lists, min(nprobe, lists.nlist), chunk, sizes, starts)
    p = probes.shape[1]
    flat = probes.reshape(-1)
    order = np.argsort(flat, kind="stable")  # by probed list, then by vector number
    bounds = np.searchsorted(flat[order], np.arange(lists.nlist + 1))
    t = np.float32(threshold)
    for b in np.flatnonzero(sizes).tolist():
        ids_b, x_b = lists.decode(b)
        askers = order[bounds[b] : bounds[b + 1]] // p  # vector numbers, ascending
        for lo in range(0, len(askers), chunk):
            number = askers[lo : lo + chunk]
            src = np.searchsorted(starts, number, side="right") - 1
            ids_q, x_q = lists.gather(src, number - starts[src])
            scores = x_q @ x_b.T
            r, c = np.nonzero(scores >= t)
            a, y = ids_q[r], ids_b[c]
            mutual = (probes[starts[b] + c] == src[r, None]).any(axis=1)
            keep = (a != y) & ((a < y) | ~mutual)
            a, y = a[keep], y[keep]
            yield np.minimum(a, y), np.maximum(a, y), scores[r[keep], c[keep]]


def _probes(
    lists: _InvertedLists, p: int, chunk: int, sizes: IdArray, starts: IdArray
) -> npt.NDArray[np.int32]:
    """The ``p`` lists each stored vector probes (N, p): its own and its nearest centroids'.

    Lists are taken together in blocks of about ``chunk`` vectors, so each matrix product is
    large enough for BLAS to run well (small ones are slow, and on shared cores dreadful).
    """
    # np.asarray: reconstruct_n returns a torch tensor once faiss.contrib.torch_utils is
    # imported (pytorch-metric-learning does).
    centroids = np.asarray(lists.ivf.quantizer.reconstruct_n(0, lists.nlist))
    probes = np.empty((int(starts[-1]), p), np.int32)
    rows = max(1, min(chunk, (1 << 22) // lists.nlist))  # scores per block: at most 16 MB
    block: list[FloatArray] = []
    owners: list[IdArray] = []
    filled = 0  # vectors numbered below this have their probes

    def flush() -> None:
        nonlocal filled, block, owners
        x, own = np.concatenate(block), np.concatenate(owners)
        for lo in range(0, len(x), rows):
            scores = x[lo : lo + rows] @ centroids.T
            scores[np.arange(len(scores)), own[lo : lo + rows]] = np.inf  # own list first
            if p < lists.nlist:
                top = np.argpartition(-scores, p - 1, axis=1)[:, :p]
            else:
                top = np.broadcast_to(np.arange(lists.nlist), scores.shape)
            probes[filled : filled + len(scores)] = top
            filled += len(scores)
        block, owners = [], []

    pending = 0
    for own in np.flatnonzero(sizes).tolist():
        block.append(lists.decode(own)[1])
        owners.append(np.full(int(sizes[own]), own, np.int64))
        pending += int(sizes[own])
        if pending >= rows:
            flush()
            pending = 0
    if block:
        flush()
    return probes
