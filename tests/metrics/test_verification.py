from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics

from lookalike.metrics.calibration import Threshold
from lookalike.metrics.verification import (
    VerificationReport,
    accuracy_f1_at,
    equal_error_rate,
    far_key,
    roc_auc,
    roc_curve,
    tar_at_far,
    verify,
)

# Four same pairs and five different ones; descending: .9S .8S .7D .6S .5D .4D .3S .2D .1D.
SCORES = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1])
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])


def _random_pairs(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.35).astype(int)
    return np.round(rng.normal(labels * 1.2, 1.0), 1), labels  # rounding makes many ties


def test_roc_curve_by_hand_with_a_tie_in_both_directions() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    # Accept nothing; then .9 (one same); then the tied .5s together (a same and a different);
    # then everything.
    far, tar, thresholds = roc_curve(scores, labels)
    np.testing.assert_allclose(far, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.5, 0.1])
    far, tar, thresholds = roc_curve(1 - scores, labels, higher_is_same=False)
    np.testing.assert_allclose(far, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds, [-np.inf, 0.1, 0.5, 0.9])


def test_roc_auc_by_hand_ties_count_half() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    # Same-vs-different pairs: (.9,.5) 1, (.9,.1) 1, (.5,.5) ½, (.5,.1) 1 → 3.5 / 4.
    assert roc_auc(scores, labels) == pytest.approx(0.875)
    assert roc_auc(1 - scores, labels, higher_is_same=False) == pytest.approx(0.875)
    # The nine-pair case: of 4 × 5 same/different pairs, the same pair's score is higher in
    # .9 → 5, .8 → 5, .6 → 4 (not .7), .3 → 2 (.2, .1): 16 / 20.
    assert roc_auc(SCORES, LABELS) == pytest.approx(0.8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_sklearn_on_random_pairs_with_ties(seed: int) -> None:
    scores, labels = _random_pairs(seed)
    far, tar, thresholds = roc_curve(scores, labels)
    fpr, tpr, cuts = metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(tar, tpr)
    np.testing.assert_allclose(thresholds, cuts)
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
    # Distances: sklearn sees −distance.
    distances = 3 - scores
    far, tar, thresholds = roc_curve(distances, labels, higher_is_same=False)
    fpr, tpr, cuts = metrics.roc_curve(labels, -distances, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(tar, tpr)
    np.testing.assert_allclose(thresholds, -cuts)
    assert roc_auc(distances, labels, higher_is_same=False) == pytest.approx(
        metrics.roc_auc_score(labels, -distances)
    )


def test_eer_at_a_roc_point() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0, 0])
    # Accepting ≥ 0.7 accepts 1 of 3 different (FAR 1/3) and rejects 1 of 3 same (FRR 1/3).
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(1 / 3) and threshold == pytest.approx(0.7)
    eer, threshold = equal_error_rate(1 - scores, labels, higher_is_same=False)
    assert eer == pytest.approx(1 / 3) and threshold == pytest.approx(0.3)


def test_eer_interpolated_along_a_segment() -> None:
    scores = np.array([0.9, 0.7, 0.5, 0.4, 0.1])
    labels = np.array([1, 0, 1, 1, 0])
    # Points (FAR, FRR): accept ≥ .7 → (1/2, 2/3); accept ≥ .5 → (1/2, 1/3). FRR − FAR goes
    # from +1/6 to −1/6, so the crossing is halfway: EER 1/2, threshold halfway .7 → .5 = .6.
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.5) and threshold == pytest.approx(0.6)


def test_eer_through_a_tie() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    # Points (FAR, FRR): (0, 1/2) at ≥ .9, (1/2, 0) at ≥ .5 (the tie). The straight segment
    # meets FAR = FRR halfway: 1/4 (accepting the tie half the time), threshold (.9 + .5)/2.
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.25) and threshold == pytest.approx(0.7)


def test_eer_at_the_extremes() -> None:
    eer, threshold = equal_error_rate(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0]))
    assert eer == 0 and threshold == pytest.approx(0.8)  # perfectly separated
    # All tied: from (0, 1) straight to (1, 0); the threshold is the (only) score.
    eer, threshold = equal_error_rate(np.array([0.5, 0.5]), np.array([1, 0]))
    assert eer == pytest.approx(0.5) and threshold == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_eer_lies_where_far_and_frr_cross(seed: int) -> None:
    scores, labels = _random_pairs(seed, 500)
    eer, threshold = equal_error_rate(scores, labels)
    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.flatnonzero(fnr >= fpr)[-1]
    assert fpr[i] <= eer <= fpr[i + 1] and fnr[i + 1] <= eer <= fnr[i]
    assert scores.min() <= threshold <= scores.max()


def test_tar_at_far_by_hand_in_both_directions() -> None:
    # FAR ≤ 0.2 allows one of the five different pairs: accept .9 .8 .7 .6 → TAR 3/4, the
    # threshold between .6 and .5. FAR ≤ 0.1 allows none: accept .9 .8 → TAR 1/2.
    tar, threshold = tar_at_far(SCORES, LABELS, 0.2)
    assert tar == pytest.approx(0.75) and threshold == pytest.approx(0.55)
    tar, threshold = tar_at_far(SCORES, LABELS, 0.1)
    assert tar == pytest.approx(0.5) and threshold == pytest.approx(0.75)
    tar, threshold = tar_at_far(1 - SCORES, LABELS, 0.2, higher_is_same=False)
    assert tar == pytest.approx(0.75) and threshold == pytest.approx(0.45)


@pytest.mark.parametrize("far", [0.3, 0.05, 0.01])
def test_tar_at_far_is_the_best_tar_at_or_below_the_target(far: float) -> None:
    scores, labels = _random_pairs(3, 2000)
    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    tar, threshold = tar_at_far(scores, labels, far)
    assert tar == pytest.approx(tpr[fpr <= far].max())
    accepted = scores >= threshold
    assert np.mean(accepted[labels == 0]) <= far
    assert np.mean(accepted[labels == 1]) == pytest.approx(tar)


def test_accuracy_f1_at_by_hand_and_against_sklearn() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 0, 1, 1, 0, 0, 0])
    # ≥ 0.45 accepts the top five: TP 3, FP 2, FN 0, TN 3.
    # Accuracy 6/8, precision 3/5, recall 3/3, F1 = 2·3 / (2·3 + 2 + 0) = 0.75.
    result = accuracy_f1_at(scores, labels, Threshold(0.45, True, 0.0))
    assert result == pytest.approx((0.75, 0.6, 1.0, 0.75))
    assert result.f1 == pytest.approx(metrics.f1_score(labels, scores >= 0.45))
    # As distances with the mirrored threshold.
    mirrored = accuracy_f1_at(1 - scores, labels, Threshold(0.55, False, 0.0))
    assert mirrored == pytest.approx(result)
    # Nothing accepted: precision, recall and F1 are 0, not NaN.
    assert accuracy_f1_at(scores, labels, Threshold(1.0, True, 0.0)) == (0.625, 0.0, 0.0, 0.0)


def test_verify_by_hand() -> None:
    report = verify(SCORES, LABELS, fars=(0.2, 0.1))
    assert report.roc_auc == pytest.approx(0.8)
    assert report.tar_at_far == pytest.approx({"2e-01": 0.75, "1e-01": 0.5})
    # Five different pairs resolve a FAR of 0.2 (one in five) but not 0.1.
    assert report.tar_at_far_resolved == {"2e-01": True, "1e-01": False}
    assert (report.positives, report.negatives) == (4, 5)
    assert report.threshold_source == "best on these pairs"
    # Best accuracy: accept .9 .8 (TP 2 + TN 5 = 7/9) at 0.75.
    assert report.threshold == pytest.approx(0.75) and report.accuracy == pytest.approx(7 / 9)
    assert (report.precision, report.recall) == pytest.approx((1.0, 0.5))
    eer, eer_threshold = equal_error_rate(SCORES, LABELS)
    assert (report.eer, report.eer_threshold) == (eer, eer_threshold)


def test_verify_with_a_stored_threshold_and_distances() -> None:
    stored = Threshold(0.45, False, 0.9)
    report = verify(1 - SCORES, LABELS, higher_is_same=False, threshold=stored)
    assert report.threshold_source == "stored" and report.threshold == 0.45
    assert report.accuracy == pytest.approx(7 / 9)  # accepts .9 .8 .7 .6: TP 3 + TN 4
    assert report.roc_auc == pytest.approx(0.8)
    assert set(report.tar_at_far) == {"1e-02", "1e-03"}
    with pytest.raises(ValueError, match="higher_is_same"):
        verify(SCORES, LABELS, threshold=stored)


def test_report_to_dict_is_json_safe() -> None:
    scores, labels = _random_pairs(0)
    data = verify(scores, labels).to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    fields = {**data, "eer": float("nan"), "tar_at_far": {"1e-02": float("nan")}}
    data = VerificationReport(**fields).to_dict()
    assert data["eer"] is None and data["tar_at_far"] == {"1e-02": None}


def test_far_keys() -> None:
    assert [far_key(f) for f in (1e-2, 1e-3, 0.2)] == ["1e-02", "1e-03", "2e-01"]
    assert far_key(0.015) == "0.015"


def test_input_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="need both same and different pairs"):
        verify(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="need both same and different pairs"):
        roc_auc(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="non-empty"):
        roc_curve(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="got 3 and 2"):
        equal_error_rate(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must be 1"):
        tar_at_far(np.array([0.1, 0.2]), np.array([0, 2]), 0.1)
    with pytest.raises(ValueError, match="finite"):
        verify(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        verify(SCORES, LABELS, fars=(1.5,))
