"""Decision thresholds for same/different: choose on one set of scored pairs, apply to others.

Every rule here works on the same table: sort the pairs by score, most "same" first, and count
the same pairs (true accepts) and different pairs (false accepts) accepted when the top k
*distinct* scores are accepted, k = 0..U (`lookalike.metrics._counts`). Tied scores are accepted
or rejected together, so a threshold never splits a tie. A chosen cut k becomes a threshold at
the midpoint between the k-th and (k+1)-th distinct score, which generalises better than a
threshold sitting on a sample. `lookalike.metrics.verification` reads the same table for ROC
curves, EER and TAR@FAR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lookalike.metrics._counts import (
    Counts,
    check_far,
    cumulative_counts,
    cut_value,
    f1_score,
    far_cut,
)

Criterion = Literal["accuracy", "f1", "far"]


@dataclass(frozen=True)
class Threshold:
    """A calibrated decision rule.

    Attributes:
        value: The threshold on the score.
        higher_is_same: True for similarities and probabilities (same when score ≥ value),
            False for distances (same when score ≤ value).
        accuracy: Accuracy reached on the pairs it was chosen on.
        criterion: What it was chosen for: "accuracy", "f1" or "far".
        target_far: The false accept rate it was chosen to meet (criterion "far" only).
    """

    value: float
    higher_is_same: bool
    accuracy: float
    criterion: str = "accuracy"
    target_far: float | None = None

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Return same (True) / different (False) for scores (N,)."""
        scores = np.asarray(scores)
        return scores >= self.value if self.higher_is_same else scores <= self.value


def _threshold(
    counts: Counts, k: int, higher_is_same: bool, criterion: str, target_far: float | None = None
) -> Threshold:
    correct = counts.tp[k] + counts.negatives - counts.fp[k]
    n = counts.positives + counts.negatives
    value = cut_value(counts, k, higher_is_same)
    return Threshold(value, higher_is_same, float(correct) / n, criterion, target_far)


def min_negatives_for(far: float) -> int:
    """How many different pairs it takes to measure a false accept rate of `far`.

    With N different pairs the achievable FARs are 0, 1/N, 2/N, ...; a target below 1/N can
    only be met by accepting no different pair at all, so it is not really resolved.

    Args:
        far: Target false accept rate in (0, 1].

    Returns:
        ceil(1 / far), e.g. 1000 for 1e-3.
    """
    return math.ceil(1 / check_far(far) - 1e-9)


def best_accuracy_threshold(
    scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True
) -> Threshold:
    """The threshold that maximises accuracy on labelled pairs.

    Every distinct score is a candidate (plus one beyond the extremes, so "all different"
    is possible); among equally accurate cuts the least accepting one wins, and its
    threshold is the midpoint between neighbouring scores.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        higher_is_same: Direction of the score.

    Returns:
        The threshold and the accuracy it reaches on these pairs.

    Raises:
        ValueError: Empty input, mismatched lengths or labels other than 0/1.
    """
    counts = cumulative_counts(scores, labels, higher_is_same)
    k = int(np.argmax(counts.tp - counts.fp))  # accuracy = (TP + N - FP) / total
    return _threshold(counts, k, higher_is_same, "accuracy")


def best_f1_threshold(
    scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True
) -> Threshold:
    """The threshold that maximises F1 of the "same" class on labelled pairs.

    Prefer it to accuracy when same pairs are rare: accuracy can be maximised by calling
    everything different. Ties between cuts go to the least accepting one.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        higher_is_same: Direction of the score.

    Returns:
        The threshold (criterion "f1"); its accuracy field is its accuracy on these pairs.

    Raises:
        ValueError: Empty input, mismatched lengths or labels other than 0/1.
    """
    counts = cumulative_counts(scores, labels, higher_is_same)
    k = int(np.argmax(f1_score(counts.tp, counts.fp, counts.positives)))
    return _threshold(counts, k, higher_is_same, "f1")


def threshold_at_far(
    scores: np.ndarray, labels: np.ndarray, far: float, *, higher_is_same: bool = True
) -> Threshold:
    """The most accepting threshold whose false accept rate on these pairs is ≤ far.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        far: Target false accept rate in (0, 1]; see `min_negatives_for` for how many
            different pairs it takes to resolve it.
        higher_is_same: Direction of the score.

    Returns:
        The threshold (criterion "far", target_far set).

    Raises:
        ValueError: Bad input, far outside (0, 1], or no different pairs.
    """
    counts = cumulative_counts(scores, labels, higher_is_same)
    return _threshold(counts, far_cut(counts, far), higher_is_same, "far", float(far))


def calibrate(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    criterion: Criterion = "accuracy",
    far: float | None = None,
    higher_is_same: bool = True,
) -> Threshold:
    """Choose a same/different threshold on labelled pairs by the given criterion.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        criterion: "accuracy" (best accuracy), "f1" (best F1) or "far" (most accepting
            threshold with false accept rate ≤ `far`).
        far: Target false accept rate; required for, and only for, criterion "far".
        higher_is_same: Direction of the score.

    Returns:
        The chosen threshold.

    Raises:
        ValueError: Bad input, an unknown criterion, or `far` missing / given needlessly.
    """
    if criterion == "far":
        if far is None:
            raise ValueError('criterion "far" needs a target, e.g. far=1e-3')
        return threshold_at_far(scores, labels, far, higher_is_same=higher_is_same)
    if far is not None:
        raise ValueError(f'far={far} is only used with criterion="far", got "{criterion}"')
    if criterion == "accuracy":
        return best_accuracy_threshold(scores, labels, higher_is_same=higher_is_same)
    if criterion == "f1":
        return best_f1_threshold(scores, labels, higher_is_same=higher_is_same)
    raise ValueError(f'criterion must be "accuracy", "f1" or "far", got "{criterion}"')


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: Threshold) -> float:
    """Accuracy of a threshold on labelled pairs (N,)."""
    pred = threshold.decide(scores)
    return float(np.mean(pred == np.asarray(labels).astype(bool)))
