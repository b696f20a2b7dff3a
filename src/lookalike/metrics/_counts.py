"""The cumulative-count table that every same/different threshold rule reads (package-private).

Sort the pairs by score, most "same" first, and count the same pairs (true accepts) and
different pairs (false accepts) accepted when the top k *distinct* scores are accepted,
k = 0..U (`cumulative_counts`). Tied scores are accepted or rejected together, so a threshold
never splits a tie. A chosen cut k becomes a threshold at the midpoint between the k-th and
(k+1)-th distinct score (`cut_value`).

`lookalike.metrics.calibration` chooses thresholds from this table and
`lookalike.metrics.verification` reads ROC curves, EER and TAR@FAR from it; nothing outside
`lookalike.metrics` imports this module.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Counts(NamedTuple):
    """Cumulative counts when accepting the pairs with the top k distinct scores, k = 0..U.

    Attributes:
        distinct: The distinct scores, oriented so that higher means same, descending (U,).
        tp: Same pairs accepted at each cut (U+1,); tp[0] = 0, tp[-1] = all same pairs.
        fp: Different pairs accepted at each cut (U+1,); fp[0] = 0, fp[-1] = all different.
    """

    distinct: np.ndarray
    tp: np.ndarray
    fp: np.ndarray

    @property
    def positives(self) -> int:
        return int(self.tp[-1])

    @property
    def negatives(self) -> int:
        return int(self.fp[-1])


def check_pairs(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate scored pairs; return scores as float64 (N,) and labels as bool (N,)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    raw = np.asarray(labels).ravel()
    if s.size == 0 or s.size != raw.size:
        raise ValueError(f"need equal, non-empty scores and labels, got {s.size} and {raw.size}")
    if raw.dtype != bool and not np.isin(raw, (0, 1)).all():
        bad = np.unique(raw[~np.isin(raw, (0, 1))])[:5].tolist()
        raise ValueError(f"labels must be 1 (same) or 0 (different), found {bad}")
    return s, raw.astype(bool)


def cumulative_counts(
    scores: np.ndarray, labels: np.ndarray, higher_is_same: bool = True
) -> Counts:
    """Build the sorted cumulative-count table every threshold rule reads (see module doc)."""
    s, y = check_pairs(scores, labels)
    if not higher_is_same:
        s = -s
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last pair of each run of ties
    tp = np.concatenate([[0], np.cumsum(y)[ends]])
    return Counts(s[ends], tp, np.concatenate([[0], ends + 1]) - tp)


def cut_value(counts: Counts, k: int, higher_is_same: bool) -> float:
    """The threshold that accepts exactly the top k distinct scores, in the caller's direction."""
    u = counts.distinct
    if k == 0:
        value = u[0] + 1e-6
    elif k == u.size:
        value = u[-1] - 1e-6
    else:
        value = (u[k - 1] + u[k]) / 2
    return float(value if higher_is_same else -value)


def f1_score(tp: np.ndarray, fp: np.ndarray, positives: int) -> np.ndarray:
    """F1 = 2·TP / (2·TP + FP + FN) = 2·TP / (TP + FP + positives); 0 where undefined."""
    tp, fp = np.asarray(tp, dtype=np.float64), np.asarray(fp, dtype=np.float64)
    denominator = tp + fp + positives
    f1: np.ndarray = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1


def check_far(far: float) -> float:
    """``far`` as a float, checked to be a false accept rate in (0, 1]."""
    far = float(far)
    if not 0 < far <= 1:
        raise ValueError(f"a target false accept rate must be in (0, 1], got {far}")
    return far


def far_cut(counts: Counts, far: float) -> int:
    """The most accepting cut whose false accept rate on these pairs is ≤ far."""
    if counts.negatives == 0:
        raise ValueError("need different pairs (label 0) to measure a false accept rate")
    # fp / N, not fp ≤ far·N: 0.29 * 100 rounds below 29 in floating point.
    return int(np.flatnonzero(counts.fp / counts.negatives <= check_far(far))[-1])
