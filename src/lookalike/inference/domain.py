"""Out-of-domain warnings: is an input like the images the model was trained on?

A model folder trained by lookalike (``lookalike train``, ``lookalike demo``) stores a
:class:`~lookalike.model.domain.DomainRecord` of its training embeddings in ``config.json``;
every engine :func:`~lookalike.inference.select.load_embedder` builds carries it as
``embedder.domain``, and so does a loaded :class:`~lookalike.model.network.SiameseModel`.
:func:`domain_warnings` turns the embeddings of a user's inputs into one warning per input
whose domain score is above the record's threshold. ``compare``, ``search`` and the server's
compare route show them next to the verdict.

Models without a record (folders saved before lookalike recorded one, plain pretrained
backbones, which were trained on ImageNet photos by someone else) give no warnings: their
domain is unknown, not checked. Nothing here raises for a record that does not fit the
embeddings; it is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.model.domain import DomainRecord

__all__ = ["domain_of", "domain_scores", "domain_warnings", "flag_inputs"]


def domain_of(embedder: object) -> DomainRecord | None:
    """The domain record an embedder (any engine, or a model) carries, if any."""
    record = getattr(embedder, "domain", None)
    return record if isinstance(record, DomainRecord) else None


def domain_scores(embedder: object, embeddings: np.ndarray) -> np.ndarray | None:
    """Domain scores (N,) of embeddings (N, D), about 1 in domain; ``None`` without a record.

    Also ``None`` when the record is for another embedding size (a stale record).
    """
    record = domain_of(embedder)
    emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    if record is None or emb.shape[1] != record.dim:
        return None
    return record.score(emb)


def domain_warnings(embedder: object, embeddings: np.ndarray, names: Sequence[str]) -> list[str]:
    """One warning per input that falls outside the domain the model was trained on.

    Args:
        embedder: The embedder that made the embeddings (its ``domain`` record is used).
        embeddings: float (N, D), one row per input.
        names: What to call each input in the warning (N names: file names, "image A").

    Returns:
        The warnings, in input order; empty when every input is in domain or the model has
        no domain record.
    """
    return [warning for _, warning in flag_inputs(embedder, embeddings, names)]


def flag_inputs(
    embedder: object, embeddings: np.ndarray, names: Sequence[str]
) -> list[tuple[int, str]]:
    """The inputs outside the model's domain: (row index, warning) in row order.

    Args:
        embedder, embeddings, names: As for :func:`domain_warnings`.
    """
    record = domain_of(embedder)
    scores = domain_scores(embedder, embeddings)
    if record is None or scores is None:
        return []
    found = []
    for row, (name, score) in enumerate(zip(names, scores, strict=False)):
        if not score > record.threshold:  # NaN scores (broken embeddings) are not judged
            continue
        found.append(
            (
                row,
                f"{name} looks unlike the {record.source} this model was trained on "
                f"(domain score {score:.2f} > {record.threshold:.2f}, {warning_context(record)})"
                ": its scores and verdict may mean nothing",
            )
        )
    return found


def warning_context(record: DomainRecord) -> str:
    """Where a warning's threshold comes from and how often it cries wolf, in words:
    ``"the 98th percentile of its 1080 training images; 2.2% of 717 held-out in-domain
    images also exceed it"`` (also shipped to the static page, which builds the same warning)."""
    rate = (
        f"; {record.false_alarm_rate:.1%} of {record.held_out} held-out in-domain images "
        "also exceed it"
        if record.false_alarm_rate is not None and record.held_out
        else ""
    )
    return f"the {_level(record)} of its {record.images} training images{rate}"


def _level(record: DomainRecord) -> str:
    """The quantile the threshold was set at, in words."""
    for level, value in record.quantiles.items():
        if value == record.threshold:
            return f"{float(level) * 100:g}th percentile"
    return "cut"
