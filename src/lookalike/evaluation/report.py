"""The evaluation report: ``metrics.json``, ``report.md`` and its figures, in one folder.

Every figure shown carries its sample size and, for the ones a decision rests on, a 95 %
confidence interval: Wilson intervals for proportions (accuracy on P pairs, TAR on the same
pairs, precision@1 and recall@K on Q queries; :func:`lookalike.metrics.bootstrap.wilson_interval`)
and a bootstrap over pairs for ROC AUC (:func:`lookalike.metrics.bootstrap.identity_bootstrap`).
A TAR at a FAR that the different pairs cannot resolve (fewer than ``1/FAR`` of them) is shown
as *unresolved*, never as a number. The helpers here (:func:`proportion_text`,
:func:`auc_interval`, :func:`tar_at_far_text`) are also what ``lookalike eval`` prints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lookalike.evaluation.evaluate import EvalResult, SubjectResult
from lookalike.metrics.bootstrap import Interval, identity_bootstrap, weighted_auc, wilson_interval
from lookalike.metrics.calibration import min_negatives_for
from lookalike.metrics.verification import VerificationReport, roc_curve
from lookalike.viz.curves import plot_roc, plot_score_histograms
from lookalike.viz.maps import plot_embedding_map

LABELS = {
    "model": "model",
    "raw_pixels": "raw pixels",
    "frozen_backbone": "frozen pretrained backbone",
}
SCORE_LABELS = {
    "cosine": "cosine similarity",
    "euclidean": "euclidean distance",
    "probability": "P(same) from the pair head",
}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def interval_text(interval: Interval, digits: int = 4) -> str:
    """``0.9500 (95 % CI 0.888–0.978)``; ``n/a`` for a NaN value."""
    if not np.isfinite(interval.value):
        return "n/a"
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return f"{interval.value:.{digits}f}"
    return (
        f"{interval.value:.{digits}f} ({interval.level:.0%} CI "
        f"{interval.low:.3f}–{interval.high:.3f})"
    ).replace("%", " %", 1)


def proportion(value: float | None, n: int) -> Interval | None:
    """A proportion measured on ``n`` trials with its Wilson interval (``None`` when unmeasured).

    Args:
        value: The proportion in [0, 1] (``successes / n``), or ``None``/NaN.
        n: How many trials it was measured on (pairs, queries).
    """
    if value is None or not np.isfinite(value) or n <= 0:
        return None
    return wilson_interval(min(n, max(0, round(float(value) * n))), n)


def proportion_text(value: float | None, n: int, *, unit: str = "") -> str:
    """``0.9500 (95 % CI 0.888–0.978)``, with `` on 100 pairs`` when ``unit`` is given."""
    interval = proportion(value, n)
    text = "n/a" if interval is None else interval_text(interval)
    return f"{text} on {n:,} {unit}" if unit and interval is not None else text


def auc_interval(
    scores: np.ndarray, labels: np.ndarray, *, higher_is_same: bool = True, rounds: int = 400
) -> Interval:
    """ROC AUC of scored pairs with a 95 % bootstrap interval over the pairs.

    Pairs that share identities are not independent, so the true interval is somewhat wider
    (the pairs' identities are not kept in an :class:`EvalResult`).

    Args:
        scores: (P,) pair scores.
        labels: (P,) 1 same, 0 different.
        higher_is_same: The score's direction (``False`` for distances).
        rounds: Bootstrap rounds.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s if higher_is_same else -s
    return identity_bootstrap(s, np.asarray(labels), None, weighted_auc, rounds=rounds)


def tar_at_far_text(report: VerificationReport, key: str) -> str:
    """TAR at the target FAR ``key`` (``"1e-03"``) with its interval, or why it is unresolved.

    With N different pairs the smallest FAR above 0 is 1/N: a target below it is met only by
    accepting no different pair at all, so its TAR says nothing about that FAR.
    """
    value = report.tar_at_far.get(key)
    if value is None or not np.isfinite(value):
        return "n/a"
    if not report.tar_at_far_resolved.get(key, True):
        need = min_negatives_for(float(key))
        return f"unresolved (needs ≥ {need:,} different pairs, has {report.negatives:,})"
    return proportion_text(value, report.positives)


def interval_dict(interval: Interval | None, n: int) -> dict[str, float | int | None] | None:
    """An interval as JSON: ``{"value", "low", "high", "level", "n"}`` (``None``: unmeasured).

    Args:
        interval: The estimate and its interval (NaN bounds become ``None``).
        n: What it was measured on (pairs, same pairs, queries).
    """
    if interval is None or not np.isfinite(interval.value):
        return None

    def finite(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {
        "value": float(interval.value),
        "low": finite(interval.low),
        "high": finite(interval.high),
        "level": float(interval.level),
        "n": int(n),
    }


def intervals(result: EvalResult) -> dict[str, dict[str, Any]]:
    """The 95 % intervals ``report.md`` shows, as JSON, per subject (``model``, baselines).

    Per subject: ``roc_auc`` (bootstrap over the pairs; n = pairs), ``accuracy`` (best
    accuracy on the pairs, optimistic; Wilson; n = pairs), ``tar_at_far`` (by FAR: Wilson over
    the same pairs, n = same pairs; ``None`` where the different pairs cannot resolve that
    FAR), ``precision_at_1`` and ``recall_at_k`` (Wilson; n = queries). Keys are left out when
    the evaluation did not measure them (no pairs, no retrieval).

    Returns:
        ``{subject name: {metric: interval dict or None}}`` (see :func:`interval_dict`).
    """
    out: dict[str, dict[str, Any]] = {}
    for sub in _subjects(result):
        entry: dict[str, Any] = {}
        if result.pairs and sub.pair_labels is not None:
            best = sub.verification["cosine"]["best"]
            entry["roc_auc"] = interval_dict(_auc(sub), result.pairs)
            n = best.positives + best.negatives
            entry["accuracy"] = interval_dict(proportion(best.accuracy, n), n)
            entry["tar_at_far"] = {
                far: (
                    interval_dict(proportion(value, best.positives), best.positives)
                    if best.tar_at_far_resolved.get(far, True)
                    else None
                )
                for far, value in best.tar_at_far.items()
            }
        if sub.retrieval is not None:
            q = sub.retrieval.queries
            entry["precision_at_1"] = interval_dict(proportion(sub.retrieval.precision_at_1, q), q)
            entry["recall_at_k"] = {
                str(k): interval_dict(proportion(v, q), q)
                for k, v in sub.retrieval.recall_at_k.items()
            }
        out[sub.name] = entry
    return out


def _auc(sub: SubjectResult) -> Interval:
    labels = sub.pair_labels
    assert labels is not None  # scored pairs always have labels
    return auc_interval(sub.pair_scores["cosine"], labels)


def _subjects(result: EvalResult) -> list[SubjectResult]:
    return [result.model, *result.baselines.values()]


def _headline_table(result: EvalResult) -> list[str]:
    rows = [
        "| | " + " | ".join(LABELS.get(s.name, s.name) for s in _subjects(result)) + " |",
        "|---|" + "---|" * len(_subjects(result)),
    ]
    if result.pairs:
        best = [s.verification["cosine"]["best"] for s in _subjects(result)]
        first = best[0]
        aucs = [_auc(s) for s in _subjects(result)]
        rows += [
            f"| ROC AUC (cosine; {result.pairs:,} pairs) | "
            + " | ".join(interval_text(a) for a in aucs)
            + " |",
            f"| EER (cosine; {result.pairs:,} pairs) | "
            + " | ".join(_fmt(b.eer) for b in best)
            + " |",
        ]
        for far in first.tar_at_far:
            rows.append(
                f"| TAR @ FAR {far} (cosine; {first.positives:,} same, "
                f"{first.negatives:,} different pairs) | "
                + " | ".join(tar_at_far_text(b, far) for b in best)
                + " |"
            )
        rows.append(
            f"| best accuracy on these {result.pairs:,} pairs (cosine; optimistic) | "
            + " | ".join(proportion_text(b.accuracy, b.positives + b.negatives) for b in best)
            + " |"
        )
    retrieval = [s.retrieval for s in _subjects(result)]
    if all(r is not None for r in retrieval) and retrieval[0] is not None:
        queries = retrieval[0].queries
        rows.append(
            f"| precision@1 ({queries:,} queries) | "
            + " | ".join(proportion_text(r.precision_at_1, r.queries) for r in retrieval if r)
            + " |"
        )
        for key, name in (("r_precision", "R-precision"), ("map_at_r", "MAP@R")):
            rows.append(
                f"| {name} (mean of {queries:,} queries) | "
                + " | ".join(_fmt(getattr(r, key)) for r in retrieval)
                + " |"
            )
        for k in retrieval[0].recall_at_k:
            rows.append(
                f"| recall@{k} ({queries:,} queries) | "
                + " | ".join(proportion_text(r.recall_at_k[k], r.queries) for r in retrieval if r)
                + " |"
            )
    episodes = [s.episodes for s in _subjects(result)]
    if all(e is not None for e in episodes) and episodes[0] is not None:
        e0 = episodes[0]
        rows.append(
            f"| {e0.ways}-way {e0.shots}-shot accuracy (± 95 % CI, {e0.episodes} episodes) | "
            + " | ".join(f"{e.accuracy:.4f} ± {e.ci95:.4f}" for e in episodes if e is not None)
            + " |"
        )
    return rows


def _verification_section(sub: SubjectResult) -> list[str]:
    lines = [
        "| score | threshold (source) | accuracy (95 % CI) | F1 | precision | "
        "recall (95 % CI) | ROC AUC | EER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for metric, reports in sub.verification.items():
        for kind in ("stored", "best"):
            r = reports.get(kind)
            if r is None:
                continue
            lines.append(
                f"| {SCORE_LABELS[metric]} | {r.threshold:.4f} ({r.threshold_source}) | "
                f"{proportion_text(r.accuracy, r.positives + r.negatives)} | {_fmt(r.f1)} | "
                f"{_fmt(r.precision)} | {proportion_text(r.recall, r.positives)} | "
                f"{_fmt(r.roc_auc)} | {_fmt(r.eer)} |"
            )
    return lines


def write_report(
    result: EvalResult,
    out_dir: str | os.PathLike[str],
    *,
    title: str = "lookalike evaluation",
    map_method: Literal["pca", "tsne", "umap"] = "pca",
) -> list[Path]:
    """Write ``metrics.json``, ``report.md``, ``roc.png``, ``scores.png``, ``embedding_map.png``.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "metrics.json"]
    metrics = {**result.to_dict(), "intervals": intervals(result)}
    files[0].write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    md = [f"# {title}", ""]
    md.append(
        f"{result.images:,} identity-labelled images ({result.identities} identities); "
        f"{result.pairs:,} pairs ({result.pair_source}); {len(result.skipped)} unreadable "
        "image(s) skipped."
    )
    for name, reason in result.unavailable.items():
        md.append(f"\n{LABELS.get(name, name)}: not measured ({reason}).")
    md += [
        "",
        "## Model and baselines",
        "",
        *_headline_table(result),
        "",
        "Sample sizes are in each row; brackets hold 95 % confidence intervals (Wilson for "
        "proportions, a bootstrap over pairs for ROC AUC). They treat pairs as independent; pairs "
        "that share identities are not, so with few identities the true intervals are wider"
        + (f" (here {result.identities} identities)" if result.identities else "")
        + ". A TAR @ FAR is *unresolved* "
        "when there are fewer than 1/FAR different pairs: it would only be TAR at FAR 0.",
        "",
    ]
    if result.pairs:
        counted = result.model.verification["cosine"]["best"]
        md += [
            "## Verification (model)",
            "",
            f"{counted.positives + counted.negatives:,} pairs: {counted.positives:,} same, "
            f"{counted.negatives:,} different.",
            "",
            *_verification_section(result.model),
            "",
        ]
        md.append(
            "`stored` is the threshold saved in the model folder (calibrated on its own "
            "validation data); `best on these pairs` is chosen on the evaluated pairs "
            "themselves and so flatters the model: report the stored one."
        )
        curves = {}
        for sub in _subjects(result):
            s, y = sub.pair_scores["cosine"], sub.pair_labels
            assert y is not None
            far, tar, _ = roc_curve(s, y)
            curves[LABELS.get(sub.name, sub.name)] = (
                far,
                tar,
                sub.verification["cosine"]["best"].roc_auc,
            )
        files.append(plot_roc(curves, out / "roc.png", title="ROC (cosine similarity)"))
        head = result.model.headline()
        primary = result.model.primary
        labels = result.model.pair_labels
        assert labels is not None
        files.append(
            plot_score_histograms(
                result.model.pair_scores[primary],
                labels,
                out / "scores.png",
                threshold=head.threshold,
                xlabel=SCORE_LABELS[primary],
                title=f"Model pair scores ({head.threshold_source} threshold)",
            )
        )
        md += ["", "![ROC](roc.png)", "", "![pair scores](scores.png)", ""]
    if result.embeddings is not None and result.labels is not None and len(result.labels) > 1:
        files.append(
            plot_embedding_map(
                result.embeddings,
                result.labels,
                result.classes,
                out / "embedding_map.png",
                method=map_method,
                title="Model embeddings",
            )
        )
        md += ["## Embedding map", "", "![embedding map](embedding_map.png)", ""]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    files.append(out / "report.md")
    return files
