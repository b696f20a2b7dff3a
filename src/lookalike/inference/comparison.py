"""Comparing images: one pair, many pairs from a CSV, and embedding many files.

These are the library functions behind ``lookalike compare`` and ``lookalike embed``. They
take any :class:`~lookalike.inference.Embedder` (an ONNX or torch engine, or a
:class:`~lookalike.model.network.SiameseModel`) and never import torch themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.data.pairs import read_pairs_csv
from lookalike.errors import DataError
from lookalike.imaging.images import ImageSource
from lookalike.inference.embedder import Embedder
from lookalike.metrics.distances import Score, cosine_similarity, euclidean_distance


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
        threshold: The threshold used, and ``metric`` what it applies to.
    """

    cosine: float
    euclidean: float
    probability: float | None = None
    same: bool | None = None
    threshold: float | None = None
    metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def decide(
    model: Embedder, cosine: float, euclidean: float, probability: float | None
) -> tuple[bool | None, float | None, str | None]:
    """Apply the model's calibrated threshold, preferring the head's probability when present.

    Returns:
        (same, threshold, metric), all ``None`` when the model holds no usable threshold.
    """
    order = (
        (Score.PROBABILITY, probability),
        (Score.COSINE, cosine),
        (Score.EUCLIDEAN, euclidean),
    )
    for score, value in order:
        if score.value in model.thresholds and value is not None:
            threshold = model.thresholds[score.value]
            return score.is_same(value, threshold), threshold, score.value
    return None, None, None


def _comparison(model: Embedder, ea: np.ndarray, eb: np.ndarray) -> list[Comparison]:
    cos = np.atleast_1d(cosine_similarity(ea, eb))
    dist = np.atleast_1d(euclidean_distance(ea, eb))
    prob = model.pair_probability(ea, eb)
    out = []
    for i in range(len(cos)):
        p = None if prob is None else float(prob[i])
        same, threshold, metric = decide(model, float(cos[i]), float(dist[i]), p)
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
    return _comparison(model, emb[:1], emb[1:])[0]


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
    embedded, failed = embed_files(model, unique, batch_size=batch_size)
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
        result.comparisons = _comparison(
            model, embedded.embeddings[keep_a], embedded.embeddings[keep_b]
        )
    return result


@dataclass
class Embedded:
    """Embeddings of files: row i of ``embeddings`` (N, D) belongs to ``paths[i]``."""

    paths: list[str]
    embeddings: np.ndarray


def embed_files(
    model: Embedder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    progress: bool = False,
    workers: int | None = None,
) -> tuple[Embedded, dict[str, str]]:
    """Embed files, skipping (and reporting) the unreadable ones.

    Decoding runs in parallel with inference (:func:`lookalike.inference.pipeline.embed_paths`).

    Args:
        model: Any :class:`~lookalike.inference.Embedder`.
        paths: Image files.
        batch_size: Images per forward pass.
        progress: Show a progress bar with images/s (on a terminal only).
        workers: Decode threads (``None``: the loader's default).

    Returns:
        (embedded files, {path: reason} for the skipped ones).
    """
    from lookalike.inference.pipeline import embed_paths

    result = embed_paths(model, paths, batch_size=batch_size, workers=workers, progress=progress)
    return Embedded(result.paths, result.embeddings), dict(result.failures)


def save_embeddings(
    path: str | os.PathLike[str], embedded: Embedded, skipped: dict[str, str]
) -> Path:
    """Write embeddings with their paths to ``.npz`` or ``.parquet``.

    The .npz holds ``embeddings`` (N, D) float32, ``paths`` (N,) and ``skipped``; the Parquet
    file holds columns ``path`` and ``embedding``.

    Raises:
        DataError: Unsupported extension, or Parquet without pyarrow.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(
            out,
            embeddings=embedded.embeddings,
            paths=np.asarray(embedded.paths, dtype=str),
            skipped=np.asarray(sorted(skipped), dtype=str),
        )
    elif out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DataError("Parquet output needs pyarrow: pip install lookalike[parquet]") from exc
        table = pa.table(
            {"path": embedded.paths, "embedding": list(embedded.embeddings.astype(np.float32))}
        )
        pq.write_table(table, out)
    else:
        raise DataError(f"--out must end in .npz or .parquet, got {out.name}")
    return out
