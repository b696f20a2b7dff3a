"""Retrieval metrics on identity-labelled embeddings, computed in chunks (NumPy only).

Two public functions:

* :func:`knn` — the ``k`` nearest references of every query, best first, by cosine
  similarity or Euclidean distance. It walks the queries in chunks and, inside each
  query chunk, the references in chunks, keeping a running top-``k``; the full
  ``(Q, R)`` similarity matrix never exists, so 100,000 × 100,000 fits in a few hundred
  MB.
* :func:`retrieval_metrics` — precision@1, R-precision, MAP@R and Recall@K, with the
  semantics of pytorch-metric-learning's ``AccuracyCalculator`` (the field's reference
  implementation; our tests compare against it):

  - **Same set** (no ``reference_embeddings``): every embedding is a query and a
    reference; a query never retrieves itself (pml's ``ref_includes_query=True``).
    ``R`` for a query is the number of *other* embeddings with its label.
  - **Separate sets**: ``R`` is the number of references with the query's label.
  - **Lone queries** — those whose label has no reference (``R == 0``) — are left out
    of *every* average, precision@1 included, exactly as pml's ``not_lone_query_mask``
    does. :attr:`RetrievalReport.lone_queries` says how many; when every query is lone,
    the metrics are NaN (pml returns NaN too).
  - **R-precision** = (same-label items in the top ``R``) / ``R``.
  - **MAP@R** = (1/``R``) Σ_{i ≤ R} P(i)·rel(i), where P(i) is the precision of the top
    ``i`` and rel(i) is 1 when the ``i``-th result has the query's label (Musgrave et al.,
    "A Metric Learning Reality Check", 2020).
  - **Recall@K** is the metric-learning papers' Recall@K (e.g. Oh Song et al., 2016):
    the fraction of queries with *at least one* same-label item among their top ``K``
    (not the information-retrieval recall, found / all relevant). A ``K`` larger than
    the number of references a query can see is clipped to that number.

Ties in similarity are broken by the smaller reference index, so results are
deterministic and independent of the chunk sizes. Cosine inputs are L2-normalised here
(a zero vector stays zero and has similarity 0 with everything). Euclidean distances
use the expanded form ``|q|² + |r|² - 2 q·r`` in float32, like faiss's ``IndexFlatL2``;
for very close pairs of large-norm vectors that loses a few digits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.metrics.distances import EMBEDDING_SCORES, DistanceName, Score, unit_rows

__all__ = ["RetrievalReport", "knn", "retrieval_metrics"]

Float32Array = npt.NDArray[np.float32]
Int64Array = npt.NDArray[np.int64]

_SELECT_ELEMENTS = 1 << 20
"""Top-k selection works on about this many candidates at a time (bounds its temporaries)."""


@dataclass(frozen=True)
class RetrievalReport:
    """Retrieval metrics over a set of queries (see the module docstring for definitions).

    Attributes:
        precision_at_1: Fraction of queries whose nearest reference has their label.
        r_precision: Mean over queries of (same-label items in the top ``R``) / ``R``.
        map_at_r: Mean average precision at ``R`` (MAP@R).
        recall_at_k: ``{K: fraction of queries with a same-label item in the top K}``.
        queries: How many queries the averages are over (lone queries excluded).
        lone_queries: Queries left out because no reference shares their label.
    """

    precision_at_1: float
    r_precision: float
    map_at_r: float
    recall_at_k: dict[int, float]
    queries: int
    lone_queries: int = 0

    def to_dict(self) -> dict[str, float | int]:
        """A flat, JSON-ready dict: ``recall_at_k`` becomes ``recall_at_1``, ``recall_at_5``, …"""
        out: dict[str, float | int] = {
            "precision_at_1": self.precision_at_1,
            "r_precision": self.r_precision,
            "map_at_r": self.map_at_r,
        }
        for k, value in sorted(self.recall_at_k.items()):
            out[f"recall_at_{k}"] = value
        out["queries"] = self.queries
        out["lone_queries"] = self.lone_queries
        return out


# --------------------------------------------------------------------------- validation


def _as_embeddings(x: npt.ArrayLike, name: str) -> Float32Array:
    """Validates an ``(N, D)`` embedding array and returns it as C-contiguous float32."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (N, D), got shape {arr.shape}; "
            "stack single vectors with np.stack or reshape with .reshape(1, -1)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one embedding")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinite values; remove or fix those rows")
    return out


def _check_positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_metric(metric: str) -> Score:
    return Score.parse(metric, among=EMBEDDING_SCORES, what="metric")


def _as_labels(labels: npt.ArrayLike, n: int, name: str, embeddings_name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per embedding), got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(
            f"{name} has {len(arr)} labels but {embeddings_name} has {n} rows; "
            "pass exactly one label per embedding"
        )
    return arr


# --------------------------------------------------------------------------- k-NN


def _select(
    keys: Float32Array, idx: Int64Array | None, k: int, offset: int = 0
) -> tuple[Float32Array, Int64Array]:
    """The ``k`` largest keys of every row (unsorted), ties going to the smaller index.

    Works through the rows a slice at a time, so its temporaries stay small.

    Args:
        keys: Candidate scores ``(n, m)``, larger is better.
        idx: Their reference indices ``(n, m)``, or ``None`` for ``offset + column``.
        k: How many to keep, ``1 <= k``.
        offset: The reference index of column 0 when ``idx`` is ``None``.

    Returns:
        ``(keys, idx)`` of shape ``(n, min(k, m))``.
    """
    n, m = keys.shape
    if idx is None:
        idx = np.broadcast_to(np.arange(offset, offset + m, dtype=np.int64), (n, m))
    if k >= m:
        return keys, np.ascontiguousarray(idx)
    out_keys = np.empty((n, k), dtype=np.float32)
    out_idx = np.empty((n, k), dtype=np.int64)
    step = max(1, _SELECT_ELEMENTS // m)
    for s in range(0, n, step):
        rows_keys, rows_idx = keys[s : s + step], idx[s : s + step]
        part = np.argpartition(rows_keys, m - k, axis=1)[:, m - k :]
        sel_keys = np.take_along_axis(rows_keys, part, axis=1)
        sel_idx = np.take_along_axis(rows_idx, part, axis=1)
        # argpartition picks arbitrarily among keys tied at the k-th value; fix those rows.
        kth = sel_keys.min(axis=1, keepdims=True)
        straddling = np.flatnonzero(
            np.count_nonzero(rows_keys == kth, axis=1) != np.count_nonzero(sel_keys == kth, axis=1)
        )
        for row in straddling:
            order = np.lexsort((rows_idx[row], -rows_keys[row]))[:k]
            sel_keys[row] = rows_keys[row, order]
            sel_idx[row] = rows_idx[row, order]
        out_keys[s : s + step] = sel_keys
        out_idx[s : s + step] = sel_idx
    return out_keys, out_idx


def _merge(
    best_keys: Float32Array, best_idx: Int64Array, block: Float32Array, start: int, k: int
) -> tuple[Float32Array, Int64Array]:
    """Merges a block of reference scores into a running top-``k``.

    Blocks arrive in increasing reference order, so a new entry equal to the current
    ``k``-th best loses the tie: only entries strictly above it can enter.
    """
    n, width = block.shape
    if best_keys.shape[1] == 0:  # first block
        return _select(block, None, k, start)
    if best_keys.shape[1] < k:  # still filling up (blocks narrower than k): take everything
        cols = np.broadcast_to(np.arange(start, start + width, dtype=np.int64), (n, width))
        return _select(
            np.concatenate([best_keys, block], axis=1),
            np.concatenate([best_idx, cols], axis=1),
            k,
        )
    # 1-D flatnonzero is about 10x faster than 2-D nonzero on a sparse mask.
    flat = np.flatnonzero(block > best_keys.min(axis=1, keepdims=True))
    if flat.size == 0:
        return best_keys, best_idx
    rows, cols_in_block = np.divmod(flat, width)
    counts = np.bincount(rows, minlength=n)
    pos = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    cand_keys = np.full((n, int(counts.max())), -np.inf, dtype=np.float32)
    cand_idx = np.full(cand_keys.shape, np.iinfo(np.int64).max, dtype=np.int64)
    cand_keys[rows, pos] = block[rows, cols_in_block]
    cand_idx[rows, pos] = cols_in_block + start
    return _select(
        np.concatenate([best_keys, cand_keys], axis=1),
        np.concatenate([best_idx, cand_idx], axis=1),
        k,
    )


def _knn_chunks(
    queries: Float32Array,
    references: Float32Array,
    k: int,
    metric: Score,
    self_index: Int64Array | None,
    chunk_size: int,
    reference_chunk_size: int,
) -> Iterator[tuple[int, Int64Array, Float32Array]]:
    """Yields ``(first query, indices (n, k), scores (n, k))`` chunk by chunk, best first.

    ``queries`` and ``references`` are already validated (and normalised for cosine);
    ``self_index[i]``, when given, is the reference query ``i`` must not retrieve.
    Requires ``1 <= k <= available references``.
    """
    q_count = len(queries)
    # Bound the running top-k too: chunk × (k + reference chunk) candidates at most.
    q_step = chunk_size if k <= chunk_size else max(1, chunk_size * chunk_size // k)
    ref_sq = np.einsum("ij,ij->i", references, references) if metric == Score.EUCLIDEAN else None
    for q0 in range(0, q_count, q_step):
        q = queries[q0 : q0 + q_step]
        n = len(q)
        best_keys = np.empty((n, 0), dtype=np.float32)
        best_idx = np.empty((n, 0), dtype=np.int64)
        for r0 in range(0, len(references), reference_chunk_size):
            r = references[r0 : r0 + reference_chunk_size]
            block = q @ r.T  # (n, width) float32; larger is better
            if ref_sq is not None:  # -|q - r|² + |q|²: same order per row, |q|² added back later
                block *= 2.0
                block -= ref_sq[r0 : r0 + len(r)]
            if self_index is not None:
                own = self_index[q0 : q0 + n] - r0
                hit = np.flatnonzero((own >= 0) & (own < len(r)))
                block[hit, own[hit]] = -np.inf
            best_keys, best_idx = _merge(best_keys, best_idx, block, r0, k)
        order = np.lexsort((best_idx, -best_keys), axis=-1)
        keys = np.take_along_axis(best_keys, order, axis=1)
        indices = np.take_along_axis(best_idx, order, axis=1)
        if metric == Score.COSINE:
            scores = np.clip(keys, -1.0, 1.0)
        else:
            q_sq = np.einsum("ij,ij->i", q, q)[:, None]
            scores = np.sqrt(np.maximum(q_sq - keys, 0.0))
        yield q0, indices, scores.astype(np.float32, copy=False)


def knn(
    queries: npt.ArrayLike,
    references: npt.ArrayLike,
    k: int,
    *,
    metric: Score | DistanceName = "cosine",
    exclude_self: bool = False,
    chunk_size: int = 4096,
    reference_chunk_size: int | None = None,
) -> tuple[Int64Array, Float32Array]:
    """The ``k`` nearest references of every query, best first.

    Memory is O(``chunk_size`` × (``reference_chunk_size`` + ``k``)) whatever the
    number of queries and references: the queries are taken ``chunk_size`` at a time
    (fewer when ``k`` exceeds it), and for each query chunk the references
    ``reference_chunk_size`` at a time, keeping a running top-``k``.

    Args:
        queries: Query embeddings ``(Q, D)``; converted to float32.
        references: Reference embeddings ``(R, D)``; converted to float32.
        k: How many neighbours per query; clipped to the number of references
            available (``R``, or ``R - 1`` with ``exclude_self``).
        metric: ``"cosine"`` (both sides L2-normalised here; higher is closer) or
            ``"euclidean"`` (lower is closer), as a string or a :class:`Score`.
        exclude_self: Query ``i`` never retrieves reference ``i``; use it when the
            queries are (the first ``Q`` of) the references. Requires ``Q <= R``.
        chunk_size: Queries per chunk (also references per chunk by default).
        reference_chunk_size: References per chunk; ``None`` means ``chunk_size``.

    Returns:
        ``(indices, scores)``: int64 reference indices ``(Q, k')`` and float32 scores
        ``(Q, k')`` with ``k' = min(k, available)``, best first (ties: smaller index
        first). Scores are cosine similarities or Euclidean distances.

    Raises:
        ValueError: On non-2-D, empty or non-finite inputs, different ``D``, a
            non-positive ``k`` or chunk size, an unknown metric, or ``exclude_self``
            with more queries than references.
    """
    score = _check_metric(metric)
    k = _check_positive(k, "k")
    chunk_size = _check_positive(chunk_size, "chunk_size")
    ref_chunk = _check_positive(
        chunk_size if reference_chunk_size is None else reference_chunk_size,
        "reference_chunk_size",
    )
    q = _as_embeddings(queries, "queries")
    r = _as_embeddings(references, "references")
    if q.shape[1] != r.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[1]} but references have {r.shape[1]}; "
            "embed both with the same model"
        )
    if exclude_self and len(q) > len(r):
        raise ValueError(
            f"exclude_self=True needs queries to be the first rows of references, but there "
            f"are {len(q)} queries and only {len(r)} references; pass exclude_self=False"
        )
    k = min(k, len(r) - int(exclude_self))
    indices = np.empty((len(q), k), dtype=np.int64)
    scores = np.empty((len(q), k), dtype=np.float32)
    if k == 0:
        return indices, scores
    if score == Score.COSINE:
        q, r = unit_rows(q), unit_rows(r)
    self_index = np.arange(len(q), dtype=np.int64) if exclude_self else None
    for q0, idx, sc in _knn_chunks(q, r, k, score, self_index, chunk_size, ref_chunk):
        indices[q0 : q0 + len(idx)] = idx
        scores[q0 : q0 + len(idx)] = sc
    return indices, scores


# --------------------------------------------------------------------------- metrics


def _label_codes(
    query_labels: np.ndarray, reference_labels: np.ndarray | None
) -> tuple[Int64Array, Int64Array]:
    """Integer codes for the labels, shared between queries and references."""
    both = (
        query_labels
        if reference_labels is None
        else np.concatenate([query_labels, reference_labels])
    )
    try:
        _, codes = np.unique(both, return_inverse=True)
    except TypeError as err:
        raise ValueError(
            f"labels could not be compared with each other ({err}); use labels of one type"
        ) from err
    codes = codes.reshape(-1).astype(np.int64)
    if reference_labels is None:
        return codes, codes
    return codes[: len(query_labels)], codes[len(query_labels) :]


def retrieval_metrics(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    reference_embeddings: npt.ArrayLike | None = None,
    reference_labels: npt.ArrayLike | None = None,
    recall_ks: Sequence[int] = (1, 5, 10),
    metric: Score | DistanceName = "cosine",
    chunk_size: int = 4096,
) -> RetrievalReport:
    """Precision@1, R-precision, MAP@R and Recall@K of labelled embeddings.

    Semantics match pytorch-metric-learning's ``AccuracyCalculator`` (see the module
    docstring): without references the embeddings are searched against themselves,
    excluding self; queries whose label no reference shares are left out of every
    average. The neighbour search runs in chunks (:func:`knn`) with
    ``k = min(max(max R, max recall_ks), available references)``, and the metrics are
    accumulated chunk by chunk, so the ``(Q, R)`` matrix is never built.

    Args:
        embeddings: Query embeddings ``(Q, D)``.
        labels: Their identity labels ``(Q,)`` (ints, strings, … of one type).
        reference_embeddings: Reference embeddings ``(R, D)``, or ``None`` to search
            ``embeddings`` against themselves.
        reference_labels: Labels ``(R,)`` of the references; given exactly when
            ``reference_embeddings`` is.
        recall_ks: The ``K`` of Recall@K (positive integers).
        metric: ``"cosine"`` or ``"euclidean"``, as a string or a :class:`Score`.
        chunk_size: Queries (and references) per chunk; peak memory grows with its
            square (4096: about 150 MB besides a normalised copy of the inputs).

    Returns:
        A :class:`RetrievalReport`; its metrics are NaN when every query is lone.

    Raises:
        ValueError: On non-2-D, empty or non-finite embeddings, a label count that
            differs from the embedding count, references without labels (or labels
            without references), different dimensions, a bad ``recall_ks``,
            ``chunk_size`` or ``metric``.
    """
    score = _check_metric(metric)
    chunk_size = _check_positive(chunk_size, "chunk_size")
    ks = sorted({_check_positive(k, "each of recall_ks") for k in recall_ks})
    queries = _as_embeddings(embeddings, "embeddings")
    q_labels = _as_labels(labels, len(queries), "labels", "embeddings")
    if (reference_embeddings is None) != (reference_labels is None):
        raise ValueError(
            "pass reference_embeddings and reference_labels together (or neither, to "
            "search the embeddings against themselves)"
        )
    same_set = reference_embeddings is None
    if reference_embeddings is None or reference_labels is None:
        refs = queries
        q_codes, r_codes = _label_codes(q_labels, None)
    else:
        refs = _as_embeddings(reference_embeddings, "reference_embeddings")
        if refs.shape[1] != queries.shape[1]:
            raise ValueError(
                f"embeddings have dimension {queries.shape[1]} but reference_embeddings "
                f"have {refs.shape[1]}; embed both with the same model"
            )
        r_labels = _as_labels(
            reference_labels, len(refs), "reference_labels", "reference_embeddings"
        )
        q_codes, r_codes = _label_codes(q_labels, r_labels)

    n_codes = int(max(q_codes.max(), r_codes.max())) + 1
    relevant = np.bincount(r_codes, minlength=n_codes)[q_codes] - int(same_set)
    kept = np.flatnonzero(relevant > 0)
    lone = len(queries) - len(kept)
    if len(kept) == 0:
        nan = float("nan")
        return RetrievalReport(nan, nan, nan, dict.fromkeys(ks, nan), 0, lone)

    available = len(refs) - int(same_set)
    k = min(max(int(relevant[kept].max()), ks[-1] if ks else 1), available)
    if score == Score.COSINE:
        queries, refs = unit_rows(queries), unit_rows(refs)
        if same_set:
            refs = queries
    sums = _MetricSums(ks)
    chunks = _knn_chunks(
        queries if lone == 0 else queries[kept],
        refs,
        k,
        score,
        kept.astype(np.int64) if same_set else None,
        chunk_size,
        chunk_size,
    )
    for q0, indices, _ in chunks:
        rows = kept[q0 : q0 + len(indices)]
        sums.add(r_codes[indices] == q_codes[rows, None], relevant[rows])
    return sums.report(len(kept), lone)


class _MetricSums:
    """Running sums of the per-query metrics (float64), one query chunk at a time."""

    def __init__(self, ks: list[int]) -> None:
        self.ks = ks
        self.p1 = 0.0
        self.r_precision = 0.0
        self.map_at_r = 0.0
        self.hits = dict.fromkeys(ks, 0)

    def add(self, match: npt.NDArray[np.bool_], relevant: npt.NDArray[Any]) -> None:
        """Adds a chunk.

        Args:
            match: ``(n, k)``: whether the ``j``-th result of query ``i`` has its label.
            relevant: ``(n,)``: ``R`` per query (``>= 1``).
        """
        k = match.shape[1]
        ranks = np.arange(1, k + 1)
        in_r = match & (ranks[None, :] <= relevant[:, None])
        r = relevant.astype(np.float64)
        self.p1 += float(match[:, 0].sum())
        self.r_precision += float((in_r.sum(axis=1) / r).sum())
        precision_at_i = np.cumsum(in_r, axis=1) / ranks  # only read where in_r
        self.map_at_r += float((np.where(in_r, precision_at_i, 0.0).sum(axis=1) / r).sum())
        for kk in self.ks:
            self.hits[kk] += int(match[:, : min(kk, k)].any(axis=1).sum())

    def report(self, queries: int, lone: int) -> RetrievalReport:
        return RetrievalReport(
            precision_at_1=self.p1 / queries,
            r_precision=self.r_precision / queries,
            map_at_r=self.map_at_r / queries,
            recall_at_k={kk: self.hits[kk] / queries for kk in self.ks},
            queries=queries,
            lone_queries=lone,
        )
