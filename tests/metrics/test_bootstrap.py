"""Identity (cluster) bootstrap intervals and the weighted pair statistics they resample."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lookalike.metrics.bootstrap import (
    Interval,
    identity_bootstrap,
    weighted_accuracy,
    weighted_auc,
)


def _accuracy_at(threshold: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    """``statistic`` for :func:`identity_bootstrap`: weighted accuracy at ``threshold``."""

    def statistic(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
        return weighted_accuracy(s, y, w, threshold)

    return statistic


def _clustered(
    n_ids: int, pairs: int = 600, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Pairs whose correctness depends on their identities: every other identity is hard.

    The same mix of easy and hard identities for any ``n_ids``, so 2 and 40 identities give
    similar data. Returns scores (P,), labels (P,) and the identities of each pair's images.
    """
    rng = np.random.default_rng(seed)
    hard = np.arange(n_ids) % 2 == 1
    a = rng.integers(0, n_ids, pairs)
    same = np.arange(pairs) % 2 == 0
    other = (a + rng.integers(1, n_ids, pairs)) % n_ids
    b = np.where(same, a, other)
    margin = np.where(hard[a] | hard[b], 0.05, 0.6)
    scores = np.where(same, margin, -margin) + rng.normal(0, 0.2, pairs)
    return scores, same.astype(np.float64), (a, b)


def test_weighted_auc_with_unit_weights_is_sklearns_auc_ties_included() -> None:
    rng = np.random.default_rng(0)
    for trial in range(5):
        labels = rng.integers(0, 2, 200).astype(np.float64)
        scores = rng.integers(0, 5, 200) / 4 + 0.3 * labels * (trial % 2)  # many ties
        expected = roc_auc_score(labels, scores)
        assert weighted_auc(scores, labels, np.ones(200)) == pytest.approx(expected, abs=1e-12)
    tied = np.full(10, 0.5)
    assert weighted_auc(tied, np.arange(10) % 2, np.ones(10)) == pytest.approx(0.5)


def test_integer_weights_count_as_repeated_pairs() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80).astype(np.float64)
    scores = np.round(rng.normal(labels, 1.0), 1)
    weights = rng.integers(0, 4, 80).astype(np.float64)
    repeat = weights.astype(int)
    expected = roc_auc_score(np.repeat(labels, repeat), np.repeat(scores, repeat))
    assert weighted_auc(scores, labels, weights) == pytest.approx(expected, abs=1e-12)
    right = (scores >= 0.5) == (labels > 0.5)
    assert weighted_accuracy(scores, labels, weights, 0.5) == pytest.approx(
        np.repeat(right, repeat).mean()
    )


def test_weighted_statistics_without_weight_are_nan() -> None:
    scores, labels = np.array([0.1, 0.9, 0.4]), np.array([0.0, 1.0, 1.0])
    assert np.isnan(weighted_auc(scores, labels, np.array([0.0, 1.0, 1.0])))  # no negatives
    assert np.isnan(weighted_auc(scores, labels, np.array([1.0, 0.0, 0.0])))  # no positives
    assert np.isnan(weighted_accuracy(scores, labels, np.zeros(3), 0.5))
    assert weighted_accuracy(scores, labels, np.ones(3), 0.5) == pytest.approx(2 / 3)


def test_the_interval_contains_the_value_and_counts_what_it_rests_on() -> None:
    scores, labels, ids = _clustered(40)
    interval = identity_bootstrap(scores, labels, ids, _accuracy_at(0.0), rounds=300, seed=0)
    assert isinstance(interval, Interval)
    assert interval.value == pytest.approx(weighted_accuracy(scores, labels, np.ones(600), 0.0))
    assert interval.low <= interval.value <= interval.high
    assert interval.low < interval.high
    assert interval.identities == 40 and interval.pairs == 600 and interval.level == 0.95
    text = interval.describe(3)
    assert "95 % CI" in text and "40 identities, 600 pairs" in text
    auc = identity_bootstrap(scores, labels, ids, weighted_auc, rounds=300, seed=0)
    assert auc.value == pytest.approx(roc_auc_score(labels, scores))
    assert auc.low <= auc.value <= auc.high


def test_few_identities_give_a_much_wider_interval() -> None:
    """The point of resampling identities: 2 identities cannot give a tight interval."""
    statistic = _accuracy_at(0.0)
    ratios = []
    for seed in range(5):
        scores2, labels2, ids2 = _clustered(2, seed=seed)
        scores40, labels40, ids40 = _clustered(40, seed=seed)
        two = identity_bootstrap(scores2, labels2, ids2, statistic, rounds=400, seed=seed)
        forty = identity_bootstrap(scores40, labels40, ids40, statistic, rounds=400, seed=seed)
        by_pair = identity_bootstrap(scores2, labels2, None, statistic, rounds=400, seed=seed)
        assert two.identities == 2 and forty.identities == 40 and by_pair.identities == 600
        assert abs(two.value - forty.value) < 0.1  # similar data, similar accuracy
        assert two.half_width > 1.5 * forty.half_width, (seed, two, forty)
        # A bootstrap over pairs would claim the 2-identity estimate is precise.
        assert two.half_width > 3 * by_pair.half_width, (seed, two, by_pair)
        ratios.append(two.half_width / forty.half_width)
    assert np.mean(ratios) > 2, ratios


def test_the_same_seed_gives_the_same_interval() -> None:
    scores, labels, ids = _clustered(12)
    first = identity_bootstrap(scores, labels, ids, weighted_auc, rounds=200, seed=7)
    again = identity_bootstrap(scores, labels, ids, weighted_auc, rounds=200, seed=7)
    assert first == again
    others = {
        (i.low, i.high)
        for i in (
            identity_bootstrap(scores, labels, ids, weighted_auc, rounds=200, seed=s)
            for s in range(3)
        )
    }
    assert len(others) > 1  # the seed does drive the resampling
    wider = identity_bootstrap(scores, labels, ids, weighted_auc, rounds=200, level=0.99, seed=7)
    assert wider.low <= first.low and wider.high >= first.high


def test_a_paired_statistic_of_identical_models_is_exactly_zero() -> None:
    scores, labels, ids = _clustered(10)

    def gain(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
        return weighted_accuracy(s[:, 1], y, w, 0.0) - weighted_accuracy(s[:, 0], y, w, 0.0)

    both = np.stack([scores, scores], axis=1)
    same = identity_bootstrap(both, labels, ids, gain, rounds=100)
    assert same.value == same.low == same.high == 0.0
    better = np.stack([scores, np.where(labels > 0.5, 1.0, -1.0)], axis=1)
    up = identity_bootstrap(better, labels, ids, gain, rounds=100)
    assert up.value > 0 and up.low > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": np.zeros(3), "labels": np.zeros(4)}, "same non-empty pairs"),
        ({"scores": np.zeros(0), "labels": np.zeros(0)}, "same non-empty pairs"),
        ({"scores": np.zeros((4, 2, 2)), "labels": np.zeros(4)}, "same non-empty pairs"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": 100_001}, "rounds"),
        ({"level": 0.0}, "level"),
        ({"level": 1.0}, "level"),
        ({"identities": (np.zeros(3), np.zeros(4))}, "one identity per image"),
    ],
)
def test_bad_inputs_are_value_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "scores": np.linspace(0, 1, 4),
        "labels": np.array([0.0, 1.0, 0.0, 1.0]),
        "identities": (np.arange(4), np.arange(4)),
        "statistic": weighted_auc,
        "rounds": 10,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        identity_bootstrap(**args)  # type: ignore[arg-type]
