"""Tests of metrics.retrieval: chunked k-NN and retrieval metrics (P@1, R-precision, MAP@R)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.metrics.retrieval import RetrievalReport, knn, retrieval_metrics

RETRIEVAL_PY = (
    Path(__file__).resolve().parents[2] / "src" / "lookalike" / "metrics" / "retrieval.py"
)


def unit(degrees: float) -> list[float]:
    """The 2-D unit vector at ``degrees`` (cosine similarity = cos of the angle between)."""
    rad = math.radians(degrees)
    return [math.cos(rad), math.sin(rad)]


def clustered(
    rng: np.random.Generator, sizes: list[int], dim: int = 16, spread: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy clusters, one per label, of the given sizes (overlapping, so metrics are < 1)."""
    centres = rng.standard_normal((len(sizes), dim))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    perm = rng.permutation(len(labels))
    return x[perm].astype(np.float32), labels[perm]


def brute_knn(
    q: np.ndarray, r: np.ndarray, k: int, metric: str, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Obviously-correct reference: the full float64 matrix, sorted by (score, index)."""
    q64, r64 = q.astype(np.float64), r.astype(np.float64)
    if metric == "cosine":
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        r64 = r64 / np.linalg.norm(r64, axis=1, keepdims=True)
        key = q64 @ r64.T  # larger is better
    else:
        key = -np.sqrt(((q64[:, None, :] - r64[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        key[np.arange(len(q)), np.arange(len(q))] = -np.inf
    idx = np.broadcast_to(np.arange(len(r)), key.shape)
    order = np.lexsort((idx, -key), axis=-1)[:, :k]
    scores = np.take_along_axis(key, order, axis=1)
    return order, (scores if metric == "cosine" else -scores)


def test_module_does_not_import_torch() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('retrieval', {str(RETRIEVAL_PY)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "sys.modules['retrieval'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "mod.retrieval_metrics([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], [0, 0, 1])\n"
        "assert 'torch' not in sys.modules, 'retrieval imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ hand-computed

# Five unit vectors on the circle (angle in degrees, label):
#   p0 0° A, p1 10° A, p2 95° A, p3 -20° B, p4 100° B
# Neighbours of each (self excluded), by angle between, and R (other items of its label):
#   q0: p1 10, p3 20, p2 95, p4 100 -> A B A B, R=2: P@1 1, RP 1/2, AP@R (1)/2 = 1/2
#   q1: p0 10, p3 30, p2 85, p4 90  -> A B A B, R=2: P@1 1, RP 1/2, AP@R 1/2
#   q2: p4 5, p1 85, p0 95, p3 115  -> B A A B, R=2: P@1 0, RP 1/2, AP@R (1/2)/2 = 1/4
#   q3: p0 20, p1 30, p2 115, p4 120 -> A A A B, R=1: P@1 0, RP 0, AP@R 0
#   q4: p2 5, p1 90, p0 100, p3 120 -> A A A B, R=1: P@1 0, RP 0, AP@R 0
# P@1 = 2/5, R-precision = 1.5/5 = 0.3, MAP@R = 1.25/5 = 0.25.
# Recall@1 = 2/5 (q0, q1); Recall@2 = 3/5 (+ q2); Recall@4 = 1 (q3, q4 find B at rank 4).
CIRCLE = np.array([unit(a) for a in (0, 10, 95, -20, 100)], dtype=np.float32)
CIRCLE_LABELS = np.array(["A", "A", "A", "B", "B"])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_hand_computed_same_set(metric: Any) -> None:
    report = retrieval_metrics(CIRCLE, CIRCLE_LABELS, recall_ks=(1, 2, 4), metric=metric)
    assert report.precision_at_1 == pytest.approx(0.4)
    assert report.r_precision == pytest.approx(0.3)
    assert report.map_at_r == pytest.approx(0.25)
    assert report.recall_at_k == pytest.approx({1: 0.4, 2: 0.6, 4: 1.0})
    assert (report.queries, report.lone_queries) == (5, 0)


def test_hand_computed_scales_do_not_matter_for_cosine() -> None:
    scaled = CIRCLE * np.array([[1.0], [3.0], [0.5], [7.0], [2.0]], dtype=np.float32)
    report = retrieval_metrics(scaled, CIRCLE_LABELS, recall_ks=(1, 2, 4))
    assert report == retrieval_metrics(CIRCLE, CIRCLE_LABELS, recall_ks=(1, 2, 4))


def test_lone_query_is_left_out_of_every_average() -> None:
    # p5 at 185° with its own label C: no other C, so it is lone (pml leaves it out).
    # It is nobody's top-R neighbour (q2: p4 5, p1 85, p5 90; q4: p2 5, p5 85), so the
    # other five keep the figures above; Recall@2 stays 3/5 (q4's B is now at rank 5).
    x = np.vstack([CIRCLE, [unit(185)]])
    labels = np.append(CIRCLE_LABELS, "C")
    report = retrieval_metrics(x, labels, recall_ks=(1, 2))
    assert report.precision_at_1 == pytest.approx(0.4)
    assert report.r_precision == pytest.approx(0.3)
    assert report.map_at_r == pytest.approx(0.25)
    assert report.recall_at_k == pytest.approx({1: 0.4, 2: 0.6})
    assert (report.queries, report.lone_queries) == (5, 1)


def test_hand_computed_separate_sets() -> None:
    # References: the five circle points. Queries:
    #   x 3° A:  p0 3, p1 7, p3 23, p2 92, p4 97 -> A A B A B, R=3:
    #            P@1 1, RP 2/3, AP@R (1 + 1)/3 = 2/3
    #   y 97° B: p2 2, p4 3, p1 87, p0 97, p3 117 -> A B A A B, R=2:
    #            P@1 0, RP 1/2, AP@R (1/2)/2 = 1/4
    #   z 50° C: no reference labelled C -> lone, left out.
    queries = np.array([unit(3), unit(97), unit(50)], dtype=np.float32)
    report = retrieval_metrics(
        queries,
        ["A", "B", "C"],
        reference_embeddings=CIRCLE,
        reference_labels=CIRCLE_LABELS,
        recall_ks=(1, 2),
    )
    assert report.precision_at_1 == pytest.approx(0.5)
    assert report.r_precision == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report.map_at_r == pytest.approx((2 / 3 + 1 / 4) / 2)
    assert report.recall_at_k == pytest.approx({1: 0.5, 2: 1.0})
    assert (report.queries, report.lone_queries) == (2, 1)


def test_all_lone_gives_nan_like_pml() -> None:
    report = retrieval_metrics(CIRCLE[:3], [0, 1, 2], recall_ks=(1,))
    assert math.isnan(report.precision_at_1) and math.isnan(report.map_at_r)
    assert (report.queries, report.lone_queries) == (0, 3)


def test_to_dict_is_flat() -> None:
    report = RetrievalReport(0.5, 0.25, 0.125, {1: 0.5, 10: 1.0}, queries=8, lone_queries=2)
    assert report.to_dict() == {
        "precision_at_1": 0.5,
        "r_precision": 0.25,
        "map_at_r": 0.125,
        "recall_at_1": 0.5,
        "recall_at_10": 1.0,
        "queries": 8,
        "lone_queries": 2,
    }


# ------------------------------------------------------------------ pytorch-metric-learning


def pml_accuracy(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
) -> dict[str, float]:
    """pml's AccuracyCalculator (faiss L2 k-NN: on unit vectors the cosine ranking)."""
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    unit_rows = [
        None if x is None else x / np.linalg.norm(x, axis=1, keepdims=True)
        for x in (query, reference)
    ]
    result: dict[str, float] = calc.get_accuracy(
        unit_rows[0], query_labels, unit_rows[1], reference_labels, ref_includes_query=False
    )
    return result


SIZES = [2, 3, 5, 8, 13, 21, 34, 55, 60, 40, 1, 58]  # 300 points, 12 labels, one lone


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_pml_same_set(metric: Any) -> None:
    rng = np.random.default_rng(3)
    x, labels = clustered(rng, SIZES)
    if metric == "euclidean":  # on unit vectors the euclidean ranking is the cosine one
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    ours = retrieval_metrics(x, labels, metric=metric, chunk_size=37)
    ref = pml_accuracy(x, labels)
    assert 0.2 < ours.map_at_r < 0.9  # a case where the metrics mean something
    assert ours.precision_at_1 == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours.r_precision == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours.map_at_r == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    assert (ours.queries, ours.lone_queries) == (299, 1)


def test_matches_pml_separate_sets() -> None:
    rng = np.random.default_rng(4)
    x, labels = clustered(rng, SIZES)
    is_query = rng.random(len(x)) < 0.3
    # Label 11 only among the queries: those queries are lone; label 10 (one item) too
    # when it falls among the queries.
    is_query |= labels == 11
    q, ql, r, rl = x[is_query], labels[is_query], x[~is_query], labels[~is_query]
    ours = retrieval_metrics(q, ql, reference_embeddings=r, reference_labels=rl, chunk_size=29)
    ref = pml_accuracy(q, ql, r, rl)
    assert ours.lone_queries >= 58
    assert ours.precision_at_1 == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours.r_precision == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours.map_at_r == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


def test_recall_at_k_against_full_ranking() -> None:
    rng = np.random.default_rng(5)
    x, labels = clustered(rng, [30, 20, 10, 5, 5], spread=1.5)
    ks = (1, 3, 10, 40, 1000)
    report = retrieval_metrics(x, labels, recall_ks=ks, chunk_size=11)
    order, _ = brute_knn(x, x, len(x) - 1, "cosine", exclude_self=True)
    match = labels[order] == labels[:, None]
    for k in ks:
        assert report.recall_at_k[k] == pytest.approx(match[:, :k].any(axis=1).mean()), k
    assert report.recall_at_k[1000] == 1.0  # clipped to the 69 references there are


# ------------------------------------------------------------------ chunked k-NN


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize(("chunk", "ref_chunk"), [(7, 13), (13, 7), (7, None), (1000, 1000)])
def test_knn_chunked_equals_brute_force(
    metric: Any, exclude_self: bool, chunk: int, ref_chunk: int | None
) -> None:
    rng = np.random.default_rng(6)
    q = rng.standard_normal((50, 8)).astype(np.float32)
    r = (
        np.vstack([q, rng.standard_normal((41, 8)).astype(np.float32)])
        if exclude_self
        else (rng.standard_normal((91, 8)).astype(np.float32) * 3.0)
    )
    k = 12
    idx, scores = knn(
        q,
        r,
        k,
        metric=metric,
        exclude_self=exclude_self,
        chunk_size=chunk,
        reference_chunk_size=ref_chunk,
    )
    want_idx, want_scores = brute_knn(q, r, k, metric, exclude_self)
    assert idx.shape == scores.shape == (50, k)
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(scores, want_scores, atol=2e-5)
    if exclude_self:
        assert not (idx == np.arange(50)[:, None]).any()


def test_knn_large_k_forces_smaller_query_chunks() -> None:
    rng = np.random.default_rng(7)
    r = rng.standard_normal((60, 4)).astype(np.float32)
    idx, _ = knn(r, r, 50, exclude_self=True, chunk_size=5)
    np.testing.assert_array_equal(idx, brute_knn(r, r, 50, "cosine", True)[0])


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 100])
def test_knn_ties_go_to_smaller_index_whatever_the_chunks(chunk: int) -> None:
    # Integer coordinates: every squared distance is exact in float32, so duplicates tie.
    base = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [1, 1, 1]], dtype=np.float32)
    refs = base[np.array([3, 1, 0, 2, 1, 0, 3, 0, 1, 2])]
    # Squared distances to the origin: 0 for refs 2, 5, 7; 1 for 1, 4, 8; 3 for 0, 6; 4 for 3, 9.
    full = [2, 5, 7, 1, 4, 8, 0, 6, 3, 9]
    for k in range(1, 11):  # every cut, including ones that split a group of ties
        idx, dist = knn([[0, 0, 0]], refs, k, metric="euclidean", chunk_size=chunk)
        np.testing.assert_array_equal(idx, [full[:k]])
        np.testing.assert_allclose(dist**2, [[0, 0, 0, 1, 1, 1, 3, 3, 4, 4][:k]], rtol=1e-6)
    # Cosine: axis-aligned vectors normalise exactly; ties again by index.
    idx_cos, sim = knn([[1, 0]], [[0, 3], [2, 0], [5, 0], [0, 1], [7, 0]], 4, chunk_size=chunk)
    np.testing.assert_array_equal(idx_cos, [[1, 2, 4, 0]])
    np.testing.assert_allclose(sim, [[1, 1, 1, 0]])


def test_knn_k_larger_than_references_is_clipped() -> None:
    r = np.eye(3, dtype=np.float32)
    idx, scores = knn(r, r, 10)
    assert idx.shape == scores.shape == (3, 3)
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])  # each finds itself first
    idx, _ = knn(r, r, 10, exclude_self=True)
    assert idx.shape == (3, 2)
    idx, _ = knn(r[:1], r[:1], 5, exclude_self=True)
    assert idx.shape == (1, 0)


def test_zero_vector_has_cosine_zero() -> None:
    idx, sim = knn([[0.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]], 2)
    np.testing.assert_array_equal(idx, [[0, 1]])
    np.testing.assert_array_equal(sim, [[0.0, 0.0]])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: knn(np.ones(3), np.ones((2, 3)), 1), "2-D"),
        (lambda: knn(np.ones((0, 3)), np.ones((2, 3)), 1), "empty"),
        (lambda: knn(np.ones((2, 3)), np.ones((2, 4)), 1), "dimension"),
        (lambda: knn(np.ones((2, 3)), np.ones((2, 3)), 0), "k must be"),
        (lambda: knn(np.ones((2, 3)), np.ones((2, 3)), 1, chunk_size=0), "chunk_size"),
        (lambda: knn(np.ones((2, 3)), np.ones((2, 3)), 1, metric="dot"), "metric"),  # type: ignore[arg-type]
        (lambda: knn(np.ones((3, 2)), np.ones((2, 2)), 1, exclude_self=True), "exclude_self"),
        (lambda: knn([[np.nan, 1.0]], np.ones((2, 2)), 1), "NaN"),
        (lambda: retrieval_metrics(np.ones((3, 2)), [0, 1]), "one label per embedding"),
        (lambda: retrieval_metrics(np.ones((2, 2)), [[0, 1]]), "1-D"),
        (lambda: retrieval_metrics(np.ones((2, 2, 2)), [0, 1]), "2-D"),
        (lambda: retrieval_metrics(np.ones((0, 2)), []), "empty"),
        (
            lambda: retrieval_metrics(
                np.ones((2, 2)), [0, 1], reference_embeddings=np.ones((2, 2))
            ),
            "together",
        ),
        (
            lambda: retrieval_metrics(
                np.ones((2, 2)), [0, 1], reference_embeddings=np.ones((3, 2)), reference_labels=[0]
            ),
            "reference_labels has 1 labels",
        ),
        (lambda: retrieval_metrics(np.ones((2, 2)), [0, 1], recall_ks=(0,)), "recall_ks"),
    ],
)
def test_bad_input_raises_value_error(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
