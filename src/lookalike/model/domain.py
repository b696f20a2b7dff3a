"""The domain a model was trained on, as statistics of its embeddings (torch-free).

A :class:`DomainRecord` is stored in a model folder's ``config.json`` (the card's ``domain``
field). It is a Gaussian fitted to the embeddings of the training images, in the
probabilistic-PCA form (Tipping & Bishop 1999): the mean embedding, the ``rank`` leading
principal directions with their variances, and one variance for everything else. An image's
**domain score** is its squared Mahalanobis distance to that Gaussian divided by the
embedding size D, so a typical training image scores about 1 (:meth:`DomainRecord.score`).
The threshold is the 98th percentile (:data:`DOMAIN_QUANTILE`) of the training images'
*out-of-fold* scores: each fifth of them scored by the statistics of the other four, since a
Gaussian fitted to an image scores it too well (on 240 training digits in 32 dimensions the
in-sample 98th percentile let 26.5 % of held-out digits through; out of fold, 4.2 %). The
record keeps the share of held-out in-domain images above the threshold (the false-alarm
rate) and their number.

Measured on the 12-epoch digit demo model (small CNN, 64-d embeddings, 1,080 training
digits): 16 of its 717 held-out validation and test digits (2.2 %) are above the threshold,
and so are all 21 scikit-image/scikit-learn photos, 20 uniform-noise images, 5 flat images
and 359 inverted digits. At the 99th percentile the false alarms fell to 1.0 % but one photo
in 21 and 11 of the 20 noise images passed as digits (the astronaut sat on the threshold),
hence the 98th. Simpler scores separated far worse even at a looser cut (the training 1st
percentile of their own, 1–3 % false alarms): cosine to the mean direction flagged no photo;
the largest cosine to 10 class centroids or 16 k-means prototypes, and the mean cosine to the
5 nearest training embeddings, 10 of 21 (once normalised, the network maps a photo near some
digit); a diagonal Gaussian none. The norm before L2 normalisation flagged 18 of 21 photos
but is not an output of the exported ONNX graph. The full covariance is D² numbers; the PCA
form keeps :data:`MAX_STORED` numbers at most (rank 32 for D ≤ 512; 12 for MobileNetV2's
1280).

The mean and the principal directions are stored as base64 of little-endian float32, the
rest as JSON numbers; :meth:`DomainRecord.from_dict` checks every field.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["DOMAIN_QUANTILE", "MAX_RANK", "MAX_STORED", "MIN_IMAGES", "DomainRecord"]

MAX_RANK = 32
"""Most principal directions a record keeps."""

MAX_STORED = 16384
"""Most float32 numbers in the stored directions (rank × D): about 87 kB of base64."""

MIN_IMAGES = 20
"""Fewest embeddings a record is fitted from (fewer: no record)."""

DOMAIN_QUANTILE = 0.98
"""The quantile of the training images' scores that becomes the threshold."""

CROSS_FOLDS = 5
"""The training scores that set the threshold are out-of-fold scores from this many folds."""

SCORE_NAME = "pca_mahalanobis"
"""The score's name in ``config.json`` (the only one so far)."""


@dataclass(frozen=True)
class DomainRecord:
    """Statistics of a model's training embeddings, and the out-of-domain threshold.

    Attributes:
        mean: The mean embedding, float32 (D,).
        components: Leading principal directions, float32 (rank, D), orthonormal rows.
        variances: Variance along each direction, float64 (rank,), positive.
        residual_variance: Variance per dimension of everything outside the directions.
        threshold: Scores above it are out of domain.
        quantiles: Training scores at a few quantiles (``{"0.5": 1.0, "0.99": 1.9, ...}``).
        images: How many training embeddings the statistics come from.
        held_out: How many held-out in-domain images measured the false-alarm rate (0: none).
        false_alarm_rate: Share of those above ``threshold``; ``None`` when not measured.
        source: What the embeddings were, in words.
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    threshold: float
    quantiles: dict[str, float] = field(default_factory=dict)
    images: int = 0
    held_out: int = 0
    false_alarm_rate: float | None = None
    source: str = "training images"

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return int(self.mean.shape[0])

    @property
    def rank(self) -> int:
        """Number of principal directions kept."""
        return int(self.components.shape[0])

    # -- fitting and scoring ----------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        held_out: np.ndarray | None = None,
        *,
        source: str = "training images",
    ) -> DomainRecord | None:
        """Fit the statistics to training embeddings; measure false alarms on held-out ones.

        Args:
            embeddings: float (N, D) embeddings of training images.
            held_out: float (M, D) embeddings of in-domain images not fitted on, or ``None``.
            source: What the embeddings were, in words (kept in the record).

        Returns:
            The record, or ``None`` with fewer than :data:`MIN_IMAGES` finite rows.
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < 1:
            return None
        x = x[np.isfinite(x).all(axis=1)]
        if len(x) < MIN_IMAGES:
            return None
        record = replace(_gaussian(x), source=source)
        scores = _out_of_fold_scores(x)
        levels = {
            "0.5": 0.5,
            "0.9": 0.9,
            "0.99": 0.99,
            "0.995": 0.995,
            str(DOMAIN_QUANTILE): DOMAIN_QUANTILE,
        }
        quantiles = {k: float(np.quantile(scores, q)) for k, q in levels.items()}
        threshold = quantiles[str(DOMAIN_QUANTILE)]
        rate, count = None, 0
        if held_out is not None and len(held_out):
            held = np.asarray(held_out, dtype=np.float64)
            rate, count = float(np.mean(record.score(held) > threshold)), len(held)
        return replace(
            record, threshold=threshold, quantiles=quantiles, held_out=count, false_alarm_rate=rate
        )

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Domain scores: squared Mahalanobis distance per dimension (about 1 in domain).

        Args:
            embeddings: float (N, D) or (D,).

        Returns:
            float64 (N,); higher is further from the training images.

        Raises:
            ValueError: The embeddings are not D wide.
        """
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if x.shape[1] != self.dim:
            raise ValueError(f"embeddings of size {x.shape[1]}, the record's are {self.dim}")
        centred = x - self.mean.astype(np.float64)
        along = centred @ self.components.astype(np.float64).T
        inside = (along**2 / self.variances).sum(axis=1)
        outside = np.maximum((centred**2).sum(axis=1) - (along**2).sum(axis=1), 0.0)
        result: np.ndarray = (inside + outside / self.residual_variance) / self.dim
        return result

    def summary(self) -> str:
        """One line for people: what was measured, the threshold, the false-alarm rate."""
        rate = (
            f"{self.false_alarm_rate:.1%} of {self.held_out} held-out in-domain images above it"
            if self.false_alarm_rate is not None and self.held_out
            else "false-alarm rate not measured"
        )
        return (
            f"{self.images} {self.source} (PCA Mahalanobis, rank {self.rank} of {self.dim}); "
            f"out of domain above {self.threshold:.2f}; {rate}"
        )

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored as the card's ``domain``."""
        return {
            "score": SCORE_NAME,
            "dim": self.dim,
            "rank": self.rank,
            "mean": _encode(self.mean),
            "components": _encode(self.components),
            "variances": [float(v) for v in self.variances],
            "residual_variance": float(self.residual_variance),
            "threshold": float(self.threshold),
            "quantiles": dict(self.quantiles),
            "images": self.images,
            "held_out": self.held_out,
            "false_alarm_rate": self.false_alarm_rate,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, value: Any, embedding_dim: int) -> DomainRecord:
        """Read and check a stored record.

        Args:
            value: The parsed ``domain`` object.
            embedding_dim: The card's embedding size D (the record must match it).

        Raises:
            ValueError: Any field missing, of the wrong kind or size, or not finite (the
                message says what a valid record holds).
        """
        expected = (
            f"a domain record: score {SCORE_NAME!r}, dim {embedding_dim} (the card's "
            f"embedding_dim), rank 1..{MAX_RANK} with rank × dim ≤ {MAX_STORED}, mean and "
            "components as base64 float32, positive finite variances, a finite threshold, "
            "quantiles, images ≥ 1, held_out ≥ 0, false_alarm_rate in [0, 1] or null"
        )
        if not isinstance(value, Mapping) or value.get("score") != SCORE_NAME:
            raise ValueError(expected)
        dim, rank = embedding_dim, value.get("rank")
        if value.get("dim") != dim or not isinstance(rank, int) or isinstance(rank, bool):
            raise ValueError(expected)
        if not 1 <= rank <= min(MAX_RANK, dim) or rank * dim > MAX_STORED:
            raise ValueError(expected)
        mean = _decode(value.get("mean"), dim)
        components = _decode(value.get("components"), rank * dim)
        variances = value.get("variances")
        quantiles = value.get("quantiles")
        rate, source = value.get("false_alarm_rate"), value.get("source", "training images")
        if (
            mean is None
            or components is None
            or not isinstance(variances, list)
            or len(variances) != rank
            or not all(_is_positive(v) for v in variances)
            or not _is_positive(value.get("residual_variance"))
            or not _is_finite(value.get("threshold"))
            or not isinstance(quantiles, Mapping)
            or len(quantiles) > 16
            or not all(_is_level(k) and _is_finite(v) for k, v in quantiles.items())
            or not _is_int(value.get("images"))
            or value["images"] < 1
            or not _is_int(value.get("held_out"))
            or value["held_out"] < 0
            or not (rate is None or (_is_finite(rate) and 0.0 <= rate <= 1.0))
            or not (isinstance(source, str) and 0 < len(source) <= 300 and source.isprintable())
        ):
            raise ValueError(expected)
        return cls(
            mean=mean,
            components=components.reshape(rank, dim),
            variances=np.asarray(variances, dtype=np.float64),
            residual_variance=float(value["residual_variance"]),
            threshold=float(value["threshold"]),
            quantiles={str(k): float(v) for k, v in quantiles.items()},
            images=int(value["images"]),
            held_out=int(value["held_out"]),
            false_alarm_rate=None if rate is None else float(rate),
            source=source,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DomainRecord):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.dim, self.rank, self.threshold))


def _gaussian(x: np.ndarray) -> DomainRecord:
    """The PCA Gaussian of rows (N, D), N ≥ 2; threshold 0 (set by :meth:`DomainRecord.fit`)."""
    n, dim = x.shape
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    spectrum = singular**2 / (n - 1)
    rank = max(1, min(MAX_RANK, dim - 1 if dim > 1 else 1, n - 1, MAX_STORED // dim))
    floor = max(float(spectrum.sum()) / dim * 1e-4, 1e-12)
    rest = dim - rank
    residual = float(spectrum[rank:].sum()) / rest if rest > 0 else floor
    return DomainRecord(
        mean=mean.astype(np.float32),
        components=vt[:rank].astype(np.float32),
        variances=np.maximum(spectrum[:rank], floor),
        residual_variance=max(residual, floor),
        threshold=0.0,
        images=n,
    )


def _out_of_fold_scores(x: np.ndarray, folds: int = CROSS_FOLDS) -> np.ndarray:
    """Each row's score under the Gaussian of the other folds (N,): honest training scores.

    A row's score under statistics fitted on itself is too small (the Gaussian bends toward
    it), the more so the fewer the rows per dimension (see the module docstring). Scoring
    each fold with the other folds' statistics removes that bias.
    """
    n = len(x)
    if n < folds * MIN_IMAGES:
        return _gaussian(x).score(x)
    order = np.random.default_rng(0).permutation(n)
    scores = np.empty(n)
    for part in np.array_split(order, folds):
        rest = np.ones(n, dtype=bool)
        rest[part] = False
        scores[part] = _gaussian(x[rest]).score(x[part])
    return scores


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.asarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: Any, count: int) -> np.ndarray | None:
    """``count`` finite float32 numbers from base64, or ``None``."""
    if not isinstance(text, str) or len(text) > 8 * count + 8:
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if len(raw) != 4 * count:
        return None
    array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return array if bool(np.isfinite(array).all()) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(float(value)) and abs(float(value)) < 1e300


def _is_positive(value: Any) -> bool:
    return _is_finite(value) and float(value) > 0.0


def _is_level(key: Any) -> bool:
    try:
        return isinstance(key, str) and 0.0 <= float(key) <= 1.0
    except ValueError:
        return False
