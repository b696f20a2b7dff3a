"""lookalike.metrics: numbers about embeddings and scored pairs (NumPy only, never torch).

Every name below is importable from ``lookalike.metrics``; the modules say more.

Scores and distances (:mod:`~lookalike.metrics.distances`):
    ``Score``: ``"cosine"`` / ``"euclidean"`` / ``"probability"``, the names the CLI, JSON
    reports and model folders use, each knowing ``higher_is_same``; ``Score.parse`` names the
    choices when a string is wrong. ``EMBEDDING_SCORES``: the two computed from embeddings.
    ``unit_rows``: the one row normaliser, ``(N, D)`` to unit rows (zero rows stay zero).
    ``cosine_similarity``, ``euclidean_distance`` (paired rows) and their ``*_matrix``
    forms (every row against every row), ``l2_normalize`` (any axis),
    ``cosine_to_euclidean``, ``euclidean_to_cosine``. ``Distance`` objects
    (``CosineSimilarity``, ``EuclideanDistance``, ``get_distance(DistanceName)``) compute on
    tensors for the losses too, importing torch only when called with tensors.

Thresholds (:mod:`~lookalike.metrics.calibration`):
    ``Threshold`` (a decision rule), ``calibrate`` by ``Criterion`` ("accuracy", "f1",
    "far"), ``best_accuracy_threshold``, ``best_f1_threshold``, ``threshold_at_far``,
    ``accuracy_at``, ``min_negatives_for``.

Verification on scored pairs (:mod:`~lookalike.metrics.verification`):
    ``verify`` → ``VerificationReport`` (ROC AUC, EER, TAR@FAR, accuracy, F1);
    ``roc_curve``, ``roc_auc``, ``equal_error_rate``, ``tar_at_far``, ``accuracy_f1_at`` →
    ``DecisionMetrics``, ``far_key``.

Retrieval on labelled embeddings (:mod:`~lookalike.metrics.retrieval`):
    ``retrieval_metrics`` → ``RetrievalReport`` (precision@1, R-precision, MAP@R,
    Recall@K, as pytorch-metric-learning), ``knn`` (chunked exact k nearest neighbours).

Few-shot episodes (:mod:`~lookalike.metrics.episodes`):
    ``n_way_k_shot`` → ``EpisodeReport`` (accuracy with a 95 % confidence interval).

This package sits on the lowest floor above ``lookalike.errors``: it imports only the
standard library and NumPy, so ``import lookalike.metrics`` never loads torch.
"""

from lookalike.metrics.calibration import (
    Criterion,
    Threshold,
    accuracy_at,
    best_accuracy_threshold,
    best_f1_threshold,
    calibrate,
    min_negatives_for,
    threshold_at_far,
)
from lookalike.metrics.distances import (
    EMBEDDING_SCORES,
    CosineSimilarity,
    Distance,
    DistanceName,
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
from lookalike.metrics.episodes import EpisodeReport, n_way_k_shot
from lookalike.metrics.retrieval import RetrievalReport, knn, retrieval_metrics
from lookalike.metrics.verification import (
    DecisionMetrics,
    VerificationReport,
    accuracy_f1_at,
    equal_error_rate,
    far_key,
    roc_auc,
    roc_curve,
    tar_at_far,
    verify,
)

__all__ = [
    "EMBEDDING_SCORES",
    "CosineSimilarity",
    "Criterion",
    "DecisionMetrics",
    "Distance",
    "DistanceName",
    "EpisodeReport",
    "EuclideanDistance",
    "RetrievalReport",
    "Score",
    "Threshold",
    "VerificationReport",
    "accuracy_at",
    "accuracy_f1_at",
    "best_accuracy_threshold",
    "best_f1_threshold",
    "calibrate",
    "cosine_similarity",
    "cosine_similarity_matrix",
    "cosine_to_euclidean",
    "equal_error_rate",
    "euclidean_distance",
    "euclidean_distance_matrix",
    "euclidean_to_cosine",
    "far_key",
    "get_distance",
    "knn",
    "l2_normalize",
    "min_negatives_for",
    "n_way_k_shot",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
    "unit_rows",
    "verify",
]
