"""Verification metrics on scored, labelled pairs: ROC, AUC, EER, TAR@FAR, accuracy and F1.

Scores go either way: ``higher_is_same=True`` for cosine similarity or P(same), False for
euclidean distance. Labels are 1 for a same pair, 0 for a different pair. In the field's words,
FAR (false accept rate) is the fraction of different pairs called same (the false positive
rate), TAR (true accept rate) the fraction of same pairs called same (the true positive rate),
and FRR = 1 − TAR.

Conventions:

- Ties: pairs with equal scores are accepted together, so the ROC has one point per distinct
  score (plus the "accept nothing" point) and AUC counts a tied same/different pair as half
  right, exactly as ``sklearn.metrics.roc_auc_score``.
- EER is where the ROC, drawn as straight segments between its points, crosses FAR = FRR; see
  `equal_error_rate`.
- TAR@FAR is conservative: the best TAR actually reached at a FAR ≤ the target, never an
  interpolation; see `tar_at_far`. With N different pairs a FAR below 1/N cannot be resolved
  (`lookalike.metrics.calibration.min_negatives_for`); the value is still returned and
  `VerificationReport.tar_at_far_resolved` says which targets were resolved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from lookalike.metrics._counts import (
    Counts,
    check_pairs,
    cumulative_counts,
    cut_value,
    f1_score,
    far_cut,
)
from lookalike.metrics.calibration import Threshold, best_accuracy_threshold, min_negatives_for


class DecisionMetrics(NamedTuple):
    """Quality of one same/different threshold; precision, recall, F1 are 0 where undefined."""

    accuracy: float
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class VerificationReport:
    """Everything `verify` measures on one set of scored pairs.

    Attributes:
        roc_auc: Area under the ROC curve (ties count half).
        eer: Equal error rate, where FAR = FRR.
        eer_threshold: The score at which the EER is reached (interpolated).
        tar_at_far: TAR at each target FAR, keyed like "1e-03".
        tar_at_far_resolved: Same keys; False where there are fewer different pairs than the
            target needs (`min_negatives_for`), so the TAR is really TAR at FAR = 0.
        accuracy: Accuracy at `threshold`.
        f1: F1 of the "same" class at `threshold`.
        precision: Precision of "same" at `threshold`.
        recall: Recall (TAR) of "same" at `threshold`.
        threshold: The decision threshold the four above were measured at.
        threshold_source: "stored" (given by the caller) or "best on these pairs" (the
            best-accuracy threshold on the very pairs measured, so optimistic).
        higher_is_same: Direction of the score.
        positives: Number of same pairs.
        negatives: Number of different pairs.
    """

    roc_auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[str, float]
    tar_at_far_resolved: dict[str, bool]
    accuracy: float
    f1: float
    precision: float
    recall: float
    threshold: float
    threshold_source: str
    higher_is_same: bool
    positives: int
    negatives: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN and infinities become None)."""
        return {key: _json_safe(value) for key, value in asdict(self).items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _counts(scores: np.ndarray, labels: np.ndarray, higher_is_same: bool) -> Counts:
    """The cumulative-count table, after checking the pairs can be measured at all."""
    if not np.isfinite(np.asarray(scores, dtype=np.float64)).all():
        raise ValueError("scores must be finite; found NaN or infinity")
    counts = cumulative_counts(scores, labels, higher_is_same)
    if counts.positives == 0 or counts.negatives == 0:
        raise ValueError(
            "need both same and different pairs (labels 1 and 0) to measure verification, got "
            f"{counts.positives} same and {counts.negatives} different"
        )
    return counts


def _roc(counts: Counts, higher_is_same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    far = counts.fp / counts.negatives
    tar = counts.tp / counts.positives
    cuts = np.concatenate([[np.inf], counts.distinct])
    return far, tar, cuts if higher_is_same else -cuts


def roc_curve(
    scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve, one point per distinct score.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        higher_is_same: Direction of the score.

    Returns:
        far (T,), tar (T,) and thresholds (T,), T = distinct scores + 1. Point i is what
        "same when score ≥ thresholds[i]" (≤ for distances) reaches; point 0 accepts nothing
        (threshold +inf, or −inf for distances), the last accepts everything. FAR and TAR
        never decrease along the curve.

    Raises:
        ValueError: Empty, mismatched or non-finite input, labels other than 0/1, or only
            one kind of pair.
    """
    return _roc(_counts(scores, labels, higher_is_same), higher_is_same)


def roc_auc(scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True) -> float:
    """Area under the ROC curve: P(a same pair outscores a different one), ties counting half.

    Equal to ``sklearn.metrics.roc_auc_score(labels, scores)`` (``-scores`` for distances).

    Raises:
        ValueError: As `roc_curve`.
    """
    far, tar, _ = roc_curve(scores, labels, higher_is_same=higher_is_same)
    return float(np.trapezoid(tar, far))


def _eer(counts: Counts, higher_is_same: bool) -> tuple[float, float]:
    far, tar, cuts = _roc(counts, higher_is_same)
    gap = (1 - tar) - far  # FRR − FAR: 1 at the first point, −1 at the last, strictly falling
    i = int(np.flatnonzero(gap >= 0)[-1])
    j = i + 1  # exists: the last point has gap −1
    t = gap[i] / (gap[i] - gap[j])  # 0 when point i itself has FAR = FRR
    eer = far[i] + t * (far[j] - far[i])
    threshold = cuts[j] if i == 0 else cuts[i] + t * (cuts[j] - cuts[i])
    return float(eer), float(threshold)


def equal_error_rate(
    scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True
) -> tuple[float, float]:
    """The equal error rate: the error rate where FAR = FRR.

    FRR − FAR falls strictly along the ROC, from 1 to −1, so it changes sign once. If a ROC
    point has FAR = FRR exactly, that is the EER and its score the threshold. Otherwise the
    crossing lies on the straight segment between the last point with FRR > FAR and the next
    one; FAR, FRR and the threshold are interpolated linearly along it. (A point on that
    segment is what randomly choosing between the two neighbouring thresholds reaches, which
    is also how a tie between same and different pairs is shared out.) When the segment
    starts at the "accept nothing" point, the threshold is the highest score.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        higher_is_same: Direction of the score.

    Returns:
        (eer, threshold).

    Raises:
        ValueError: As `roc_curve`.
    """
    return _eer(_counts(scores, labels, higher_is_same), higher_is_same)


def _tar_at_far(counts: Counts, far: float, higher_is_same: bool) -> tuple[float, float]:
    k = far_cut(counts, far)
    return counts.tp[k] / counts.positives, cut_value(counts, k, higher_is_same)


def tar_at_far(
    scores: np.ndarray, labels: np.ndarray, far: float, *, higher_is_same: bool = True
) -> tuple[float, float]:
    """The true accept rate at a target false accept rate, measured conservatively.

    The highest TAR among thresholds whose FAR on these pairs is ≤ `far`; no interpolation
    towards the target, so the reported TAR is one a real threshold reaches. With fewer than
    `min_negatives_for(far)` different pairs the only such thresholds accept no different
    pair, so the value is TAR at FAR = 0: still returned, but not a measurement at `far`.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        far: Target false accept rate in (0, 1].
        higher_is_same: Direction of the score.

    Returns:
        (tar, threshold): the threshold is the most accepting one meeting the target, at the
        midpoint between neighbouring scores (as `calibration.threshold_at_far`).

    Raises:
        ValueError: As `roc_curve`, or far outside (0, 1].
    """
    return _tar_at_far(_counts(scores, labels, higher_is_same), far, higher_is_same)


def accuracy_f1_at(scores: np.ndarray, labels: np.ndarray, threshold: Threshold) -> DecisionMetrics:
    """Accuracy, precision, recall and F1 of the "same" decision at a threshold.

    Args:
        scores: Pair scores (N,), in the threshold's direction.
        labels: 1 for same, 0 for different (N,).
        threshold: The decision rule.

    Returns:
        The four metrics; precision is 0 when nothing is accepted, recall and F1 are 0 when
        there are no same pairs.

    Raises:
        ValueError: Empty input, mismatched lengths or labels other than 0/1.
    """
    s, y = check_pairs(scores, labels)
    same = threshold.decide(s)
    tp = int(np.count_nonzero(same & y))
    fp = int(np.count_nonzero(same & ~y))
    positives = int(np.count_nonzero(y))
    return DecisionMetrics(
        accuracy=float(np.mean(same == y)),
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / positives if positives else 0.0,
        f1=float(f1_score(np.array([tp]), np.array([fp]), positives)[0]),
    )


def far_key(far: float) -> str:
    """The report key of a target FAR: "1e-03" for 0.001, the full value if that loses it."""
    key = f"{far:.0e}"
    return key if float(key) == far else repr(float(far))


def verify(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    higher_is_same: bool = True,
    threshold: Threshold | None = None,
    fars: Sequence[float] = (1e-2, 1e-3),
) -> VerificationReport:
    """Measure verification on scored pairs: ROC AUC, EER, TAR@FAR and decision quality.

    Args:
        scores: Pair scores (N,).
        labels: 1 for same, 0 for different (N,).
        higher_is_same: Direction of the score.
        threshold: A threshold calibrated elsewhere (e.g. stored with the model). None uses
            the best-accuracy threshold on these very pairs, which flatters accuracy and F1;
            the report says which was used.
        fars: Target false accept rates for TAR@FAR, each in (0, 1].

    Returns:
        The report.

    Raises:
        ValueError: As `roc_curve`, a target FAR outside (0, 1], or a threshold whose
            direction differs from `higher_is_same`.
    """
    counts = _counts(scores, labels, higher_is_same)
    if threshold is None:
        threshold = best_accuracy_threshold(scores, labels, higher_is_same=higher_is_same)
        source = "best on these pairs"
    elif threshold.higher_is_same != higher_is_same:
        raise ValueError(
            f"the threshold has higher_is_same={threshold.higher_is_same} but the scores were "
            f"given with higher_is_same={higher_is_same}: score with the threshold's metric"
        )
    else:
        source = "stored"
    far, tar, _ = _roc(counts, higher_is_same)
    eer, eer_threshold = _eer(counts, higher_is_same)
    tars = {far_key(f): float(_tar_at_far(counts, f, higher_is_same)[0]) for f in fars}
    resolved = {far_key(f): counts.negatives >= min_negatives_for(f) for f in fars}
    decision = accuracy_f1_at(scores, labels, threshold)
    return VerificationReport(
        roc_auc=float(np.trapezoid(tar, far)),
        eer=eer,
        eer_threshold=eer_threshold,
        tar_at_far=tars,
        tar_at_far_resolved=resolved,
        accuracy=decision.accuracy,
        f1=decision.f1,
        precision=decision.precision,
        recall=decision.recall,
        threshold=threshold.value,
        threshold_source=source,
        higher_is_same=higher_is_same,
        positives=counts.positives,
        negatives=counts.negatives,
    )
