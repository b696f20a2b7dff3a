"""Decision thresholds for same/different: choose on one set of scored pairs, apply to others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Threshold:
    """A calibrated decision rule.

    Attributes:
        value: The threshold on the score.
        higher_is_same: True for similarities and probabilities (same when score ≥ value),
            False for distances (same when score ≤ value).
        accuracy: Accuracy reached on the pairs it was chosen on.
    """

    value: float
    higher_is_same: bool
    accuracy: float

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Return same (True) / different (False) for scores (N,)."""
        scores = np.asarray(scores)
        return scores >= self.value if self.higher_is_same else scores <= self.value


def best_accuracy_threshold(
    scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True
) -> Threshold:
    """The threshold that maximises accuracy on labelled pairs.

    Every distinct score is a candidate (plus one beyond the extremes, so "all different"
    is possible); among equally accurate thresholds the midpoint between neighbouring scores
    is returned, which generalises better than a threshold sitting on a sample.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        higher_is_same: Direction of the score.

    Returns:
        The threshold and the accuracy it reaches on these pairs.

    Raises:
        ValueError: Empty input or mismatched lengths.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.size == 0 or s.size != y.size:
        raise ValueError(f"need equal, non-empty scores and labels, got {s.size} and {y.size}")
    if not higher_is_same:
        s = -s
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Predict "same" for the top k scores, k = 0..N; accuracy(k) = TP(k) + TN(k).
    tp = np.concatenate([[0], np.cumsum(y_sorted)])
    fp = np.concatenate([[0], np.cumsum(~y_sorted)])
    correct = tp + (np.count_nonzero(~y) - fp)
    # Only cut between distinct scores.
    valid = np.ones(s.size + 1, dtype=bool)
    valid[1:-1] = s_sorted[:-1] != s_sorted[1:]
    correct = np.where(valid, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        value = s_sorted[0] + 1e-6
    elif k == s.size:
        value = s_sorted[-1] - 1e-6
    else:
        value = (s_sorted[k - 1] + s_sorted[k]) / 2
    accuracy = float(correct[k]) / s.size
    return Threshold(float(value if higher_is_same else -value), higher_is_same, accuracy)


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: Threshold) -> float:
    """Accuracy of a threshold on labelled pairs (N,)."""
    pred = threshold.decide(scores)
    return float(np.mean(pred == np.asarray(labels).astype(bool)))
