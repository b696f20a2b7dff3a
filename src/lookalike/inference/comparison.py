"""Comparing images: one pair, or many pairs from a CSV.

These are the library functions behind ``lookalike compare``: :func:`compare`,
:func:`score_pairs`, :func:`decide` (a model's calibrated verdict) and :class:`Comparison`.
They take any :class:`~lookalike.inference.Embedder` (an ONNX or torch engine, or a
:class:`~lookalike.model.network.SiameseModel`) and never import torch themselves. Embedding
many files is :func:`lookalike.inference.pipeline.embed_files`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from lookalike.data.pairs import read_pairs_csv
from lookalike.errors import BackboneError
from lookalike.imaging.images import ImageSource
from lookalike.inference.domain import domain_warnings, flag_inputs
from lookalike.inference.embedder import Embedder
from lookalike.inference.pipeline import embed_files
from lookalike.metrics.distances import Score, cosine_similarity, euclidean_distance
from lookalike.model.backbones.specs import find_spec


@dataclass(frozen=True)
class Comparison:
    """How similar two images are.

    Attributes:
        cosine: Cosine similarity of the embeddings, in [-1, 1] (higher is more similar).
        euclidean: Euclidean distance of the embeddings (lower is more similar; in [0, 2] for
            L2-normalised embeddings).
        probability: P(same) from the pair head, or ``None`` when the model has none.
        same: The same/different decision at the model's calibrated threshold, or ``None``
            when the model has no threshold.
        threshold: The threshold used, and ``metric`` what it applies to (``"probability"``,
            ``"cosine"``, ``"euclidean"``, or :data:`NEAR_DUPLICATE`: cosine, at the
            threshold for the same picture after edits; see :func:`decide`).
        warnings: Inputs that look unlike the images the model was trained on, one line
            each (:func:`lookalike.inference.domain.domain_warnings`): the scores and the
            verdict may mean nothing for them. Empty for models without a domain record.
    """

    cosine: float
    euclidean: float
    probability: float | None = None
    same: bool | None = None
    threshold: float | None = None
    metric: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


NEAR_DUPLICATE_MEANING = (
    "the same picture after edits (crop, resize, recompression, colour, captions), "
    "not the same object or person"
)
"""What a near-duplicate verdict's "same" means, in words."""

NEAR_DUPLICATE = "near_duplicate"
"""The ``metric`` of a verdict made at a near-duplicate threshold: the threshold applies to
cosine similarity, and "same" means *the same picture after edits* (crops, resizing,
recompression, colour changes, captions), not the same object or person."""


def near_duplicate_threshold(model: Embedder) -> tuple[float, str] | None:
    """The cosine from which two images are the same picture for this model, if known.

    The threshold stored with the model (``thresholds["dedup"]``, from ``lookalike
    calibrate-dedup``), else, for a plain pretrained registry backbone whose near-duplicate
    threshold was measured (the default ``mobilenet_v2``: 0.75), that one.

    Returns:
        ``(threshold, where it comes from)``, or ``None`` when the model has none.
    """
    stored = model.thresholds.get("dedup")
    if stored is not None:
        return float(stored), "calibrated for this model with lookalike calibrate-dedup"
    name, key = getattr(model, "name", None), getattr(model, "key", None)
    try:  # a model folder is named by its path: not a registry backbone
        spec = find_spec(name) if isinstance(name, str) else None
    except BackboneError:
        return None
    if spec is None or spec.near_duplicate_cosine is None or key is None:
        return None
    sha = spec.pretrained_sha256
    from lookalike.inference.select import pretrained_key

    if sha is None or key != pretrained_key(spec.name, spec.feature_dim, sha, spec.preprocess):
        return None  # another image size, weights file or a trained model: not measured
    how = f"measured for the pretrained {spec.name} on {spec.near_duplicate_sample}"
    return spec.near_duplicate_cosine, how


def decide(
    model: Embedder, cosine: float, euclidean: float, probability: float | None
) -> tuple[bool | None, float | None, str | None]:
    """Apply the model's calibrated threshold, preferring the head's probability when present.

    The thresholds a model was calibrated with for its task come first (P(same), cosine,
    euclidean: "same" as the model was trained, e.g. the same identity); without any, the
    near-duplicate threshold (:func:`near_duplicate_threshold`, metric
    :data:`NEAR_DUPLICATE`: "same" means the same picture after edits).

    Returns:
        (same, threshold, metric), all ``None`` when the model holds no usable threshold.
    """
    return _decide(model, cosine, euclidean, probability, _Lazy(model))


class _Lazy:
    """A model's near-duplicate threshold, looked up once and only when a verdict needs it
    (it hashes the model's description: not per pair of a large ``--pairs`` file)."""

    def __init__(self, model: Embedder) -> None:
        self.model = model
        self.done = False
        self.value: float | None = None

    def get(self) -> float | None:
        if not self.done:
            near = near_duplicate_threshold(self.model)
            self.value, self.done = (None if near is None else near[0]), True
        return self.value


def _decide(
    model: Embedder, cosine: float, euclidean: float, probability: float | None, near: _Lazy
) -> tuple[bool | None, float | None, str | None]:
    """:func:`decide`, with the near-duplicate threshold shared across pairs."""
    order = (
        (Score.PROBABILITY, probability),
        (Score.COSINE, cosine),
        (Score.EUCLIDEAN, euclidean),
    )
    for score, value in order:
        if score.value in model.thresholds and value is not None:
            threshold = model.thresholds[score.value]
            return score.is_same(value, threshold), threshold, score.value
    cut = near.get()
    if cut is not None:
        return cosine >= cut, cut, NEAR_DUPLICATE
    return None, None, None


def _comparison(model: Embedder, ea: np.ndarray, eb: np.ndarray) -> list[Comparison]:
    cos = np.atleast_1d(cosine_similarity(ea, eb))
    dist = np.atleast_1d(euclidean_distance(ea, eb))
    prob = model.pair_probability(ea, eb)
    near = _Lazy(model)
    out = []
    for i in range(len(cos)):
        p = None if prob is None else float(prob[i])
        same, threshold, metric = _decide(model, float(cos[i]), float(dist[i]), p, near)
        out.append(Comparison(float(cos[i]), float(dist[i]), p, same, threshold, metric))
    return out


def compare(a: ImageSource, b: ImageSource, model: Embedder | None = None) -> Comparison:
    """Compare two images with a Siamese model.

    Args:
        a, b: Paths, bytes, PIL images or arrays.
        model: Any :class:`~lookalike.inference.Embedder`; ``None`` loads the default
            pretrained backbone with :func:`~lookalike.inference.load_embedder` (ONNX Runtime
            on CPU once its export is cached; load one and pass it when comparing many).

    Returns:
        The comparison.

    Raises:
        ImageError: Either image cannot be read.
    """
    if model is None:
        from lookalike.inference.select import load_embedder

        model = load_embedder()
    emb = model.embed([a, b])
    result = _comparison(model, emb[:1], emb[1:])[0]
    names = [_name(a, "image A"), _name(b, "image B")]
    return replace(result, warnings=domain_warnings(model, emb, names))


def _name(source: ImageSource, default: str) -> str:
    """What to call an input in a warning: its path as given, else ``default``."""
    return os.fspath(source) if isinstance(source, str | os.PathLike) else default


@dataclass
class PairScores:
    """Scores for rows of a pairs CSV.

    Attributes:
        pairs: (a, b) paths as written in the CSV (resolved relative to the CSV's folder).
        comparisons: One per scored pair, in CSV order.
        labels: The CSV's label column per scored pair, when it has one.
        skipped: (row number, reason) for rows that could not be scored.
    """

    pairs: list[tuple[str, str]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def score_pairs(
    model: Embedder, pairs_csv: str | os.PathLike[str], *, batch_size: int = 32
) -> PairScores:
    """Score every pair in a CSV, embedding each distinct image once.

    Unreadable images are reported in ``skipped`` (with the row and the cause), not fatal.
    """
    rows = list(read_pairs_csv(pairs_csv))
    unique = sorted({p for _, a, b, _ in rows for p in (a, b)})
    embedded = embed_files(model, unique, batch_size=batch_size)
    failed = dict(embedded.failures)
    index = {p: i for i, p in enumerate(embedded.paths)}
    result = PairScores()
    keep_a, keep_b = [], []
    for number, a, b, label in rows:
        bad = [failed[p] for p in (a, b) if p in failed]
        if bad:
            result.skipped.append((number, bad[0]))
            continue
        result.pairs.append((a, b))
        result.labels.append(label)
        keep_a.append(index[a])
        keep_b.append(index[b])
    if keep_a:
        comparisons = _comparison(model, embedded.embeddings[keep_a], embedded.embeddings[keep_b])
        flagged = {
            embedded.paths[row]: warning
            for row, warning in flag_inputs(model, embedded.embeddings, embedded.paths)
        }
        result.comparisons = [
            replace(c, warnings=[flagged[p] for p in pair if p in flagged])
            for c, pair in zip(comparisons, result.pairs, strict=True)
        ]
    return result
