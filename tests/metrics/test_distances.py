"""Tests of lookalike.metrics.distances: NumPy functions and torch Distance objects."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lookalike.metrics.distances import (
    EMBEDDING_SCORES,
    CosineSimilarity,
    Distance,
    EuclideanDistance,
    Score,
    cosine_similarity,
    cosine_similarity_matrix,
    cosine_to_euclidean,
    euclidean_distance,
    euclidean_distance_matrix,
    euclidean_to_cosine,
    get_distance,
    l2_normalize,
    unit_rows,
)

DISTANCES_PY = (
    Path(__file__).resolve().parents[2] / "src" / "lookalike" / "metrics" / "distances.py"
)


@pytest.fixture
def rng() -> np.random.Generator:
    torch.manual_seed(0)
    return np.random.default_rng(0)


def test_module_does_not_import_torch() -> None:
    # Load the file directly, so a package __init__ that imports torch cannot interfere.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dist', {str(DISTANCES_PY)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "mod.cosine_similarity_matrix([[1.0, 0.0]], [[0.0, 1.0]])\n"
        "mod.get_distance('euclidean').numpy_matrix([[1.0, 0.0]], [[0.0, 1.0]])\n"
        "assert 'torch' not in sys.modules, 'distances imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ hand-computed


@pytest.mark.parametrize(
    ("a", "b", "cos", "dist"),
    [
        ([1.0, 0.0], [0.0, 1.0], 0.0, math.sqrt(2.0)),
        ([1.0, 0.0], [2.0, 0.0], 1.0, 1.0),
        ([1.0, 0.0], [-3.0, 0.0], -1.0, 4.0),
        ([3.0, 4.0], [4.0, 3.0], 24.0 / 25.0, math.sqrt(2.0)),
    ],
)
def test_hand_computed(a: list[float], b: list[float], cos: float, dist: float) -> None:
    assert cosine_similarity(a, b) == pytest.approx(cos, abs=1e-12)
    assert euclidean_distance(a, b) == pytest.approx(dist, abs=1e-12)
    assert isinstance(cosine_similarity(a, b), float)
    assert cosine_similarity_matrix([a], [b])[0, 0] == pytest.approx(cos, abs=1e-6)
    assert euclidean_distance_matrix([a], [b])[0, 0] == pytest.approx(dist, abs=1e-6)
    ta, tb = torch.tensor([a]), torch.tensor([b])
    assert CosineSimilarity().pairwise(ta, tb).item() == pytest.approx(cos, abs=1e-6)
    assert EuclideanDistance().pairwise(ta, tb).item() == pytest.approx(dist, abs=1e-6)
    assert CosineSimilarity().matrix(ta, tb).item() == pytest.approx(cos, abs=1e-6)
    assert EuclideanDistance().matrix(ta, tb).item() == pytest.approx(dist, abs=1e-6)


def test_paired_shapes_and_dtypes(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    for fn in (cosine_similarity, euclidean_distance):
        out = fn(a, b)
        assert isinstance(out, np.ndarray)
        assert out.shape == (6,)
        assert out.dtype == np.float32
    for fn in (cosine_similarity_matrix, euclidean_distance_matrix):
        mat = fn(a, b[:4])
        assert mat.shape == (6, 4)
        assert mat.dtype == np.float32


def test_cosine_normalises_inputs(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    scaled = cosine_similarity(3.0 * a, 0.5 * b)
    np.testing.assert_allclose(scaled, cosine_similarity(a, b), atol=1e-6)
    expected = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(scaled, expected, atol=1e-6)


# ------------------------------------------------------------ matrix == pairwise


@pytest.mark.parametrize(
    ("pairwise", "matrix"),
    [
        (cosine_similarity, cosine_similarity_matrix),
        (euclidean_distance, euclidean_distance_matrix),
    ],
)
def test_numpy_matrix_equals_looping_pairwise(
    pairwise: Callable[..., Any], matrix: Callable[..., Any], rng: np.random.Generator
) -> None:
    a, b = rng.normal(size=(4, 7)), rng.normal(size=(5, 7))
    mat = matrix(a, b)
    for i in range(4):
        for j in range(5):
            assert mat[i, j] == pytest.approx(pairwise(a[i], b[j]), abs=1e-6)


@pytest.mark.parametrize("name", ["cosine", "euclidean"])
def test_torch_matrix_equals_looping_pairwise(name: str) -> None:
    torch.manual_seed(0)
    distance = get_distance(name)  # type: ignore[arg-type]
    a, b = torch.randn(4, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    mat = distance.matrix(a, b)
    assert mat.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            pair = distance.pairwise(a[i : i + 1], b[j : j + 1])
            assert mat[i, j].item() == pytest.approx(pair.item(), abs=1e-9)


@pytest.mark.parametrize("name", ["cosine", "euclidean"])
def test_numpy_equals_torch(name: str, rng: np.random.Generator) -> None:
    distance = get_distance(name)  # type: ignore[arg-type]
    a = rng.normal(size=(6, 16)).astype(np.float32)
    b = rng.normal(size=(6, 16)).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(
        distance.numpy_pairwise(a, b), distance.pairwise(ta, tb).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        distance.numpy_matrix(a, b), distance.matrix(ta, tb).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        distance.numpy_matrix(a, b[:3]), distance.matrix(ta, tb[:3]).numpy(), atol=1e-5
    )


def test_torch_matches_torch_builtins() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(6, 9, dtype=torch.float64), torch.randn(8, 9, dtype=torch.float64)
    torch.testing.assert_close(EuclideanDistance().matrix(a, b), torch.cdist(a, b))
    torch.testing.assert_close(
        CosineSimilarity().pairwise(a, b[:6]), torch.nn.functional.cosine_similarity(a, b[:6])
    )


# ------------------------------------------------------------------ conversions


def test_conversions_round_trip_on_unit_vectors(rng: np.random.Generator) -> None:
    u = l2_normalize(rng.normal(size=(50, 12)))
    v = l2_normalize(rng.normal(size=(50, 12)))
    v[0] = u[0]  # identical
    v[1] = -u[1]  # opposite
    cos = np.asarray(cosine_similarity(u, v), dtype=np.float64)
    dist = np.asarray(euclidean_distance(u, v), dtype=np.float64)
    np.testing.assert_allclose(cosine_to_euclidean(cos), dist, atol=1e-3)
    np.testing.assert_allclose(euclidean_to_cosine(dist), cos, atol=1e-6)
    np.testing.assert_allclose(euclidean_to_cosine(cosine_to_euclidean(cos)), cos, atol=1e-12)
    np.testing.assert_allclose(cosine_to_euclidean(euclidean_to_cosine(dist)), dist, atol=1e-6)


def test_conversions_scalars_and_edges() -> None:
    assert cosine_to_euclidean(0.0) == pytest.approx(math.sqrt(2.0))
    assert cosine_to_euclidean(-1.0) == pytest.approx(2.0)
    assert euclidean_to_cosine(math.sqrt(2.0)) == pytest.approx(0.0, abs=1e-12)
    assert isinstance(cosine_to_euclidean(0.5), float)
    # Rounding just above 1 must give 0, not NaN.
    assert cosine_to_euclidean(1.0 + 1e-7) == 0.0
    out = cosine_to_euclidean(np.array([1.0, 0.0], dtype=np.float32))
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32


def test_l2_normalize(rng: np.random.Generator) -> None:
    x = rng.normal(size=(4, 6)).astype(np.float32)
    x[2] = 0.0
    y = l2_normalize(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y[[0, 1, 3]], axis=1), 1.0, atol=1e-6)
    assert np.all(y[2] == 0.0)
    cols = l2_normalize(x, axis=0)
    np.testing.assert_allclose(np.linalg.norm(cols, axis=0), 1.0, atol=1e-6)
    assert l2_normalize([3, 4]).tolist() == pytest.approx([0.6, 0.8])
    with pytest.raises(ValueError, match="eps"):
        l2_normalize(x, eps=0.0)


# ------------------------------------------------------------------ zero vectors


def test_zero_vector_gives_zero_not_nan() -> None:
    a = np.array([[0.0, 0.0], [1.0, 2.0]])
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    sims = cosine_similarity(a, b)
    assert np.all(np.isfinite(sims))
    np.testing.assert_array_equal(sims, [0.0, 0.0])
    assert cosine_similarity([0.0, 0.0], [0.0, 0.0]) == 0.0
    mat = cosine_similarity_matrix(a, b)
    assert np.all(np.isfinite(mat))
    assert mat[0, 0] == 0.0
    assert mat[1, 1] == 0.0
    ta, tb = torch.tensor(a), torch.tensor(b)
    assert torch.equal(CosineSimilarity().pairwise(ta, tb), torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(CosineSimilarity().matrix(ta, tb)).all()
    assert euclidean_distance_matrix(a, a)[0, 0] == 0.0


def test_cosine_gradient_at_zero_vector_is_finite() -> None:
    a = torch.zeros(1, 3, requires_grad=True)
    b = torch.tensor([[1.0, 2.0, 3.0]])
    CosineSimilarity().pairwise(a, b).sum().backward()
    assert a.grad is not None
    assert torch.isfinite(a.grad).all()


# ------------------------------------------------------- exactness at identical rows


def test_numpy_euclidean_matrix_exact_zero_on_identical_rows(rng: np.random.Generator) -> None:
    # Large norms make |a|² + |b|² - 2ab cancel badly; identical rows must still be 0.
    a = 1000.0 + rng.normal(size=(30, 64))
    mat = euclidean_distance_matrix(a, a)
    assert np.all(np.diag(mat) == 0.0)
    assert np.all(mat >= 0.0)
    off = mat[~np.eye(30, dtype=bool)]
    assert off.min() > 1.0
    np.testing.assert_allclose(mat[3, 7], euclidean_distance(a[3], a[7]), rtol=1e-6)


def test_torch_euclidean_value_at_identical_inputs_is_small() -> None:
    torch.manual_seed(0)
    a = 100.0 + torch.randn(40, 128)  # float32, large norms
    assert EuclideanDistance().pairwise(a, a).max().item() <= 1e-3
    mat = EuclideanDistance().matrix(a, a)
    assert mat.diagonal().max().item() <= 1e-3
    assert torch.isfinite(mat).all()


@pytest.mark.parametrize("method", ["pairwise", "matrix"])
def test_euclidean_gradient_at_identical_inputs_is_finite(method: str) -> None:
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    out = getattr(EuclideanDistance(), method)(a, b)
    out.sum().backward()
    assert a.grad is not None
    assert b.grad is not None
    assert torch.isfinite(a.grad).all()
    assert torch.isfinite(b.grad).all()


def test_euclidean_gradcheck() -> None:
    torch.manual_seed(0)
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    distance = EuclideanDistance()
    assert torch.autograd.gradcheck(distance.matrix, (a, b))
    assert torch.autograd.gradcheck(distance.pairwise, (a, b[:3].detach().requires_grad_(True)))
    # Including a duplicated row, where the exact recomputation path is taken.
    c = torch.cat([a.detach(), a.detach()[:1] + 1e-3]).requires_grad_(True)
    assert torch.autograd.gradcheck(distance.matrix, (c, c))


# ------------------------------------------------------------------ errors


def test_numpy_shape_mismatch_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        cosine_similarity(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
        euclidean_distance(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 5\)"):
        cosine_similarity_matrix(np.ones((3, 4)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="reshape"):
        euclidean_distance_matrix(np.ones(4), np.ones((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        cosine_similarity(np.ones((2, 2, 2)), np.ones((2, 2, 2)))


def test_torch_shape_mismatch_names_shapes() -> None:
    for distance in (CosineSimilarity(), EuclideanDistance()):
        with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
            distance.pairwise(torch.ones(3, 4), torch.ones(2, 4))
        with pytest.raises(ValueError, match=r"\(4,\)"):
            distance.pairwise(torch.ones(4), torch.ones(4))
        with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 5\)"):
            distance.matrix(torch.ones(3, 4), torch.ones(2, 5))


def test_get_distance() -> None:
    cos = get_distance("cosine")
    euc = get_distance("euclidean")
    assert isinstance(cos, CosineSimilarity)
    assert isinstance(euc, EuclideanDistance)
    assert isinstance(cos, Distance)
    assert cos.higher_is_closer is True
    assert euc.higher_is_closer is False
    assert (cos.name, euc.name) == ("cosine", "euclidean")
    with pytest.raises(ValueError, match=r"'manhattan'.*cosine, euclidean"):
        get_distance("manhattan")  # type: ignore[arg-type]


@pytest.mark.parametrize("eps", [0.0, -1e-12, 1e-3])
def test_euclidean_eps_validated(eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        EuclideanDistance(eps=eps)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    a = (10.0 + torch.randn(6, 32)).to(dtype).requires_grad_(True)
    zero = torch.zeros(1, 32, dtype=dtype)
    mat = EuclideanDistance().matrix(a, a)
    assert mat.dtype == torch.float32
    assert mat.diagonal().max().item() <= 1e-3
    mat.sum().backward()
    assert a.grad is not None
    assert torch.isfinite(a.grad).all()
    assert CosineSimilarity().pairwise(zero, zero).item() == 0.0


def test_autocast_does_not_degrade_euclidean_matrix() -> None:
    torch.manual_seed(0)
    a = 100.0 + torch.randn(40, 64)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mat = EuclideanDistance().matrix(a, a)
    assert mat.dtype == torch.float32
    # Reference in float64: float32 torch.cdist itself is off by ~0.6 on this
    # diagonal (it uses the same expansion, without the exact recomputation).
    expected = torch.cdist(a.double(), a.double(), compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(mat.double(), expected, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------ Score


def test_score_values_are_the_public_strings() -> None:
    assert [s.value for s in Score] == ["cosine", "euclidean", "probability"]
    assert Score.COSINE == "cosine" and str(Score.EUCLIDEAN) == "euclidean"
    assert f"{Score.PROBABILITY}" == "probability"
    assert json.dumps({Score.COSINE: Score.EUCLIDEAN}) == '{"cosine": "euclidean"}'
    thresholds = {"cosine": 0.5}  # model folders key thresholds by the plain strings
    assert Score.COSINE in thresholds and thresholds[Score.COSINE] == 0.5
    assert Score("euclidean") is Score.EUCLIDEAN
    assert EMBEDDING_SCORES == (Score.COSINE, Score.EUCLIDEAN)


def test_score_direction() -> None:
    assert {s.value: s.higher_is_same for s in Score} == {
        "cosine": True,
        "euclidean": False,
        "probability": True,
    }
    # A distance is "same" at or below its threshold, a similarity at or above.
    assert Score.EUCLIDEAN.is_same(0.3, 0.5) and Score.EUCLIDEAN.is_same(0.5, 0.5)
    assert not Score.EUCLIDEAN.is_same(0.7, 0.5)
    assert Score.COSINE.is_same(0.7, 0.5) and Score.COSINE.is_same(0.5, 0.5)
    assert not Score.PROBABILITY.is_same(0.3, 0.5)
    assert type(Score.COSINE.is_same(np.float32(0.7), 0.5)) is bool
    # The direction the torch Distance objects use agrees.
    for name in ("cosine", "euclidean"):
        assert Score(name).higher_is_same == get_distance(name).higher_is_closer  # type: ignore[arg-type]


def test_score_parse() -> None:
    assert Score.parse("probability") is Score.PROBABILITY
    assert Score.parse(Score.COSINE) is Score.COSINE
    with pytest.raises(ValueError, match=r"score must be 'cosine', 'euclidean' or 'probability'"):
        Score.parse("manhattan")
    with pytest.raises(ValueError, match=r"metric must be 'cosine' or 'euclidean', got 'prob"):
        Score.parse("probability", among=EMBEDDING_SCORES, what="metric")
    with pytest.raises(ValueError, match="got 'COSINE'"):
        Score.parse("COSINE")


# ------------------------------------------------------------------ unit_rows


def _slow_unit_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """One row at a time in float64 with math.fsum: the reference unit_rows must match."""
    out = np.zeros(x.shape, dtype=np.float64)
    for i, row in enumerate(np.asarray(x, dtype=np.float64)):
        norm = math.sqrt(math.fsum(v * v for v in row))
        out[i] = row / max(norm, eps)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
def test_unit_rows_matches_slow_reference(rng: np.random.Generator, dtype: Any) -> None:
    x = (rng.normal(size=(37, 19)) * 50).astype(dtype)
    x[[3, 20]] = 0
    y = unit_rows(x)
    assert y.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert y.shape == x.shape and y.flags.c_contiguous
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(y, _slow_unit_rows(x), rtol=tol, atol=tol)
    lengths = np.linalg.norm(y.astype(np.float64), axis=1)
    np.testing.assert_allclose(np.delete(lengths, [3, 20]), 1.0, atol=tol)


def test_unit_rows_zero_and_tiny_rows_stay_put() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [1e-13, 0.0], [-0.0, 0.0]], dtype=np.float32)
    with np.errstate(all="raise"):  # no division warnings for zero rows
        y = unit_rows(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_array_equal(y[[0, 3]], 0.0)
    np.testing.assert_allclose(y[1], [0.6, 0.8], rtol=1e-7)
    # Below eps a row is divided by eps, not by its own norm (as torch's F.normalize).
    np.testing.assert_allclose(y[2], [0.1, 0.0], rtol=1e-5)
    np.testing.assert_allclose(unit_rows(x, eps=1e-20)[2], [1.0, 0.0], rtol=1e-6)


def test_unit_rows_keeps_its_input_and_handles_layouts(rng: np.random.Generator) -> None:
    x = rng.normal(size=(8, 5)).astype(np.float32)
    before = x.copy()
    y = unit_rows(np.asfortranarray(x))
    np.testing.assert_array_equal(x, before)
    assert y.flags.c_contiguous and y is not x
    np.testing.assert_allclose(y, unit_rows(x[:, :]), rtol=1e-6)
    np.testing.assert_allclose(unit_rows(x[::2]), unit_rows(x)[::2], rtol=1e-6)
    assert unit_rows(np.zeros((0, 5), np.float32)).shape == (0, 5)
    np.testing.assert_allclose(unit_rows([[3, 4]]), [[0.6, 0.8]], rtol=1e-7)


def test_unit_rows_large_float32_rows_do_not_overflow() -> None:
    x = np.full((1, 16), 1e30, dtype=np.float32)  # |x|² overflows float32, not float64
    np.testing.assert_allclose(unit_rows(x), 0.25, rtol=1e-6)


def test_unit_rows_non_finite_rows_become_nan_quietly() -> None:
    x = np.array([[np.inf, 1.0], [np.nan, 0.0], [1.0, 0.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        y = unit_rows(x)
    assert not np.isfinite(y[0]).all() and not np.isfinite(y[1]).all()
    np.testing.assert_array_equal(y[2], [1.0, 0.0])


@pytest.mark.parametrize("bad", [np.ones(3), np.ones((2, 3, 4))])
def test_unit_rows_needs_2d(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        unit_rows(bad)


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan")])
def test_unit_rows_eps_validated(eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        unit_rows(np.ones((2, 2)), eps=eps)


def test_cosine_functions_use_unit_rows(rng: np.random.Generator) -> None:
    a = rng.normal(size=(6, 9))
    b = rng.normal(size=(6, 9))
    np.testing.assert_allclose(
        cosine_similarity(a, b), np.sum(unit_rows(a) * unit_rows(b), axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(
        cosine_similarity_matrix(a, b), unit_rows(a) @ unit_rows(b).T, rtol=1e-6, atol=1e-7
    )
