from __future__ import annotations

import numpy as np
import pytest

from lookalike.metrics.calibration import (
    Threshold,
    accuracy_at,
    best_accuracy_threshold,
    best_f1_threshold,
    calibrate,
    min_negatives_for,
    threshold_at_far,
)
from lookalike.metrics.verification import accuracy_f1_at

# Eight pairs, most "same" first; three same (P = 3), five different (N = 5).
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
LABELS = np.array([1, 0, 0, 1, 1, 0, 0, 0])


def _far(scores: np.ndarray, labels: np.ndarray, threshold: Threshold) -> float:
    return float(np.mean(threshold.decide(scores)[labels == 0]))


def test_best_accuracy_threshold_by_hand_in_both_directions() -> None:
    scores = np.array([0.9, 0.8, 0.6, 0.4, 0.3])
    labels = np.array([1, 1, 0, 1, 0])
    # Accepting the top k: k=0 → 2/5 right, k=1 → 3/5, k=2 → 4/5, k=3 → 3/5, k=4 → 4/5,
    # k=5 → 3/5. The first best cut is k=2, between 0.8 and 0.6.
    rule = best_accuracy_threshold(scores, labels)
    assert rule == Threshold(pytest.approx(0.7), True, pytest.approx(0.8))
    assert rule.criterion == "accuracy"
    # The same pairs as distances 1 − s: cut between 0.2 and 0.4.
    rule = best_accuracy_threshold(1 - scores, labels, higher_is_same=False)
    assert rule.value == pytest.approx(0.3) and rule.accuracy == pytest.approx(0.8)
    assert not rule.higher_is_same
    assert accuracy_at(1 - scores, labels, rule) == pytest.approx(0.8)


def test_thresholds_never_split_ties() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    # Accept none: 2/4; accept the 0.5 group: TP 2 + TN 1 = 3/4; accept all: 2/4.
    rule = best_accuracy_threshold(scores, labels)
    assert rule.value == pytest.approx(0.3) and rule.accuracy == pytest.approx(0.75)


def test_best_accuracy_threshold_is_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(1)
    for higher_is_same in (True, False):
        scores = np.round(rng.normal(size=200), 1)  # many ties
        labels = (rng.random(200) < 0.4).astype(int)
        rule = best_accuracy_threshold(scores, labels, higher_is_same=higher_is_same)
        candidates = np.concatenate([np.unique(scores), [scores.min() - 1, scores.max() + 1]])
        brute = max(
            accuracy_at(scores, labels, Threshold(float(c), higher_is_same, 0.0))
            for c in candidates
        )
        assert rule.accuracy == pytest.approx(brute)
        assert accuracy_at(scores, labels, rule) == pytest.approx(rule.accuracy)


def test_one_class_still_calibrates() -> None:
    # Only same pairs: accepting everything is right; the threshold sits just below the lowest.
    rule = best_accuracy_threshold(np.array([0.2, 0.4]), np.array([1, 1]))
    assert rule.accuracy == 1.0 and rule.value == pytest.approx(0.2 - 1e-6)


def test_best_f1_threshold_by_hand() -> None:
    # Accepting the top k gives (TP, FP): k=1 (1, 0), k=4 (2, 2), k=5 (3, 2).
    # Accuracy (TP + 5 − FP) / 8: k=1 → 6/8, k=5 → 6/8 (tie: the first, k=1, wins).
    # F1 = 2·TP / (TP + FP + 3): k=1 → 2/4 = 0.5, k=4 → 4/7, k=5 → 6/8 = 0.75 (the best).
    by_accuracy = best_accuracy_threshold(SCORES, LABELS)
    by_f1 = best_f1_threshold(SCORES, LABELS)
    assert by_accuracy.value == pytest.approx(0.85)
    assert by_f1.value == pytest.approx(0.45) and by_f1.criterion == "f1"
    assert by_f1.accuracy == pytest.approx(0.75)
    assert accuracy_f1_at(SCORES, LABELS, by_f1).f1 == pytest.approx(0.75)
    assert accuracy_f1_at(SCORES, LABELS, by_accuracy).f1 == pytest.approx(0.5)


def test_f1_threshold_is_at_least_as_good_on_f1_as_the_accuracy_threshold() -> None:
    rng = np.random.default_rng(2)
    for seed_fraction in (0.05, 0.2, 0.5):
        labels = (rng.random(400) < seed_fraction).astype(int)
        scores = np.round(rng.normal(labels * 1.5, 1.0), 2)
        for higher_is_same, s in ((True, scores), (False, -scores)):
            f1_rule = best_f1_threshold(s, labels, higher_is_same=higher_is_same)
            acc_rule = best_accuracy_threshold(s, labels, higher_is_same=higher_is_same)
            f1_best = accuracy_f1_at(s, labels, f1_rule).f1
            assert f1_best >= accuracy_f1_at(s, labels, acc_rule).f1
            assert accuracy_at(s, labels, f1_rule) == pytest.approx(f1_rule.accuracy)


def test_threshold_at_far_by_hand_in_both_directions() -> None:
    scores = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    # Descending: .9S .8S .7D .6S .5D .4D .3S .2D .1D. FAR ≤ 0.2 allows one of the five
    # different pairs: the most accepting such cut takes .9 .8 .7 .6 and stops before .5.
    rule = threshold_at_far(scores, labels, 0.2)
    assert rule.value == pytest.approx(0.55)
    assert (rule.criterion, rule.target_far) == ("far", 0.2)
    assert rule.accuracy == pytest.approx(7 / 9)  # TP 3 + TN 4
    # FAR ≤ 0.1 allows no different pair: stop before .7.
    assert threshold_at_far(scores, labels, 0.1).value == pytest.approx(0.75)
    rule = threshold_at_far(1 - scores, labels, 0.2, higher_is_same=False)
    assert rule.value == pytest.approx(0.45) and not rule.higher_is_same


def test_threshold_at_far_meets_the_target_and_is_the_most_accepting() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(3000) < 0.3).astype(int)
    scores = np.round(rng.normal(labels * 2.0, 1.0), 2)
    for far in (0.5, 0.1, 0.01, 1e-3):
        for higher_is_same, s in ((True, scores), (False, -scores)):
            rule = threshold_at_far(s, labels, far, higher_is_same=higher_is_same)
            assert _far(s, labels, rule) <= far
            # The next distinct score towards "same" would break the target.
            accepted = rule.decide(s)
            if higher_is_same:
                looser = Threshold(float(s[~accepted].max()), True, 0.0)
            else:
                looser = Threshold(float(s[~accepted].min()), False, 0.0)
            assert _far(s, labels, looser) > far


def test_threshold_at_far_is_exact_where_floating_point_rounds_down() -> None:
    # 0.29 * 100 = 28.999999999999996 in floating point, but 29 of 100 is a FAR of 0.29.
    scores = np.concatenate([np.arange(100) / 100, [2.0]])
    labels = np.concatenate([np.zeros(100), [1]])
    rule = threshold_at_far(scores, labels, 0.29)
    assert _far(scores, labels, rule) == pytest.approx(0.29)


def test_calibrate_dispatches_and_checks_its_arguments() -> None:
    assert calibrate(SCORES, LABELS) == best_accuracy_threshold(SCORES, LABELS)
    assert calibrate(SCORES, LABELS, criterion="f1") == best_f1_threshold(SCORES, LABELS)
    assert calibrate(-SCORES, LABELS, criterion="far", far=0.2, higher_is_same=False) == (
        threshold_at_far(-SCORES, LABELS, 0.2, higher_is_same=False)
    )
    with pytest.raises(ValueError, match="needs a target"):
        calibrate(SCORES, LABELS, criterion="far")
    with pytest.raises(ValueError, match='only used with criterion="far"'):
        calibrate(SCORES, LABELS, criterion="f1", far=0.1)
    with pytest.raises(ValueError, match="criterion must be"):
        calibrate(SCORES, LABELS, criterion="auc")  # type: ignore[arg-type]


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        best_accuracy_threshold(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="got 2 and 3"):
        best_f1_threshold(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"found \[-1\]"):
        best_accuracy_threshold(np.array([0.1, 0.2]), np.array([-1, 1]))
    with pytest.raises(ValueError, match="need different pairs"):
        threshold_at_far(np.array([0.1, 0.2]), np.array([1, 1]), 0.1)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        threshold_at_far(SCORES, LABELS, 0.0)


def test_min_negatives_for() -> None:
    assert min_negatives_for(1e-2) == 100
    assert min_negatives_for(1e-3) == 1000
    assert min_negatives_for(0.3) == 4  # 1/0.3 = 3.33…: 3 pairs resolve only 0 and 1/3
    assert min_negatives_for(1.0) == 1
    with pytest.raises(ValueError):
        min_negatives_for(0)


def _embedding_pairs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and labels of n pairs of noisy embeddings of 50 identities in 16-D."""
    centres = rng.normal(size=(50, 16))
    a = rng.integers(0, 50, n)
    same = rng.random(n) < 0.5
    b = np.where(same, a, (a + rng.integers(1, 50, n)) % 50)
    ea = centres[a] + rng.normal(0, 0.9, (n, 16))
    eb = centres[b] + rng.normal(0, 0.9, (n, 16))
    cos = np.sum(ea * eb, 1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    return cos, same.astype(int)


@pytest.mark.parametrize("criterion", ["accuracy", "f1"])
def test_a_validation_threshold_generalises_to_test_pairs(criterion: str) -> None:
    rng = np.random.default_rng(4)
    val_scores, val_labels = _embedding_pairs(2000, rng)
    test_scores, test_labels = _embedding_pairs(2000, rng)
    # The task is hard enough that a threshold matters (neither trivial nor hopeless).
    rule = calibrate(val_scores, val_labels, criterion=criterion)  # type: ignore[arg-type]
    assert 0.7 < rule.accuracy < 0.97
    test_accuracy = accuracy_at(test_scores, test_labels, rule)
    assert abs(test_accuracy - rule.accuracy) < 0.03
    # And for distances: euclidean between unit vectors, √(2 − 2·cos).
    rule = calibrate(np.sqrt(2 - 2 * val_scores), val_labels, higher_is_same=False)
    test_accuracy = accuracy_at(np.sqrt(2 - 2 * test_scores), test_labels, rule)
    assert abs(test_accuracy - rule.accuracy) < 0.03


def test_a_far_threshold_roughly_holds_its_far_on_test_pairs() -> None:
    rng = np.random.default_rng(5)
    val_scores, val_labels = _embedding_pairs(4000, rng)
    test_scores, test_labels = _embedding_pairs(4000, rng)
    rule = calibrate(val_scores, val_labels, criterion="far", far=0.05)
    assert _far(val_scores, val_labels, rule) <= 0.05
    assert abs(_far(test_scores, test_labels, rule) - 0.05) < 0.02
