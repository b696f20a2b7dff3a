from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import DataError
from lookalike.metrics.calibration import accuracy_at, best_accuracy_threshold
from lookalike.metrics.distances import cosine_similarity
from lookalike.model.network import SiameseModel
from lookalike.training.fewshot import fit_head


def _embedding_pairs(n: int, rng: np.random.Generator, dim: int = 64) -> tuple[np.ndarray, ...]:
    """Pairs of unit embeddings where identity lives in 8 dims and nuisance in the other 56."""
    n_ids = 40
    centres = rng.normal(0, 1, (n_ids, 8))

    def sample(ids: np.ndarray) -> np.ndarray:
        signal = centres[ids] + rng.normal(0, 0.15, (len(ids), 8))
        noise = rng.normal(0, 0.6, (len(ids), dim - 8))
        e = np.concatenate([signal, noise], axis=1)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    ids_a = rng.integers(0, n_ids, n)
    same = rng.random(n) < 0.5
    ids_b = np.where(same, ids_a, (ids_a + rng.integers(1, n_ids, n)) % n_ids)
    return (
        sample(ids_a).astype(np.float32),
        sample(ids_b).astype(np.float32),
        same.astype(np.float32),
    )


def test_head_on_20_pairs_beats_a_cosine_threshold_on_the_same_pairs() -> None:
    rng = np.random.default_rng(0)
    ta, tb, ty = _embedding_pairs(20, rng)
    ha, hb, hy = _embedding_pairs(1000, rng)
    model = SiameseModel.create("small_cnn", projection=(64,))
    losses = fit_head(model, ta, tb, ty, steps=300)
    assert losses[-1] < losses[0]
    prob = model.pair_probability(ha, hb)
    assert prob is not None
    head_acc = float(np.mean((prob >= 0.5) == hy.astype(bool)))
    rule = best_accuracy_threshold(np.asarray(cosine_similarity(ta, tb)), ty)
    cosine_acc = accuracy_at(np.asarray(cosine_similarity(ha, hb)), hy, rule)
    assert head_acc > cosine_acc + 0.03, (head_acc, cosine_acc)


def test_head_needs_both_classes() -> None:
    model = SiameseModel.create("small_cnn")
    emb = np.zeros((3, 128), np.float32)
    with pytest.raises(DataError, match="same"):
        fit_head(model, emb, emb, np.ones(3))


def test_best_threshold_hand_cases() -> None:
    t = best_accuracy_threshold(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0]))
    assert t.accuracy == 1.0 and 0.3 < t.value < 0.8
    d = best_accuracy_threshold(
        np.array([0.1, 0.2, 1.5]), np.array([1, 1, 0]), higher_is_same=False
    )
    assert (
        d.accuracy == 1.0
        and 0.2 < d.value < 1.5
        and d.decide(np.array([0.15, 2.0])).tolist() == [True, False]
    )
    with pytest.raises(ValueError):
        best_accuracy_threshold(np.array([]), np.array([]))
