"""The evaluation report: ``metrics.json``, ``report.md`` and its figures, in one folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lookalike.evaluation.evaluate import EvalResult, SubjectResult
from lookalike.metrics.verification import roc_curve
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


def _subjects(result: EvalResult) -> list[SubjectResult]:
    return [result.model, *result.baselines.values()]


def _headline_table(result: EvalResult) -> list[str]:
    rows = [
        "| | " + " | ".join(LABELS.get(s.name, s.name) for s in _subjects(result)) + " |",
        "|---|" + "---|" * len(_subjects(result)),
    ]
    if result.pairs:
        best = [s.verification["cosine"]["best"] for s in _subjects(result)]
        rows += [
            "| ROC AUC (cosine) | " + " | ".join(_fmt(b.roc_auc) for b in best) + " |",
            "| EER (cosine) | " + " | ".join(_fmt(b.eer) for b in best) + " |",
        ]
        for far in best[0].tar_at_far:
            rows.append(
                f"| TAR @ FAR {far} (cosine) | "
                + " | ".join(_fmt(b.tar_at_far.get(far)) for b in best)
                + " |"
            )
        rows.append(
            "| best accuracy on these pairs (cosine) | "
            + " | ".join(_fmt(b.accuracy) for b in best)
            + " |"
        )
    retrieval = [s.retrieval for s in _subjects(result)]
    if all(r is not None for r in retrieval):
        for key, name in (
            ("precision_at_1", "precision@1"),
            ("r_precision", "R-precision"),
            ("map_at_r", "MAP@R"),
        ):
            rows.append(
                f"| {name} | " + " | ".join(_fmt(getattr(r, key)) for r in retrieval) + " |"
            )
        for k in retrieval[0].recall_at_k if retrieval[0] else {}:
            rows.append(
                f"| recall@{k} | "
                + " | ".join(_fmt(r.recall_at_k[k]) for r in retrieval if r is not None)
                + " |"
            )
    episodes = [s.episodes for s in _subjects(result)]
    if all(e is not None for e in episodes) and episodes[0] is not None:
        e0 = episodes[0]
        rows.append(
            f"| {e0.ways}-way {e0.shots}-shot accuracy (± 95% CI, {e0.episodes} episodes) | "
            + " | ".join(f"{e.accuracy:.4f} ± {e.ci95:.4f}" for e in episodes if e is not None)
            + " |"
        )
    return rows


def _verification_section(sub: SubjectResult) -> list[str]:
    lines = [
        "| score | threshold (source) | accuracy | F1 | precision | recall | ROC AUC | EER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for metric, reports in sub.verification.items():
        for kind in ("stored", "best"):
            r = reports.get(kind)
            if r is None:
                continue
            lines.append(
                f"| {SCORE_LABELS[metric]} | {r.threshold:.4f} ({r.threshold_source}) | "
                f"{_fmt(r.accuracy)} | {_fmt(r.f1)} | {_fmt(r.precision)} | {_fmt(r.recall)} | "
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
    files[0].write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    md = [f"# {title}", ""]
    md.append(
        f"{result.images:,} identity-labelled images ({result.identities} identities); "
        f"{result.pairs:,} pairs ({result.pair_source}); {len(result.skipped)} unreadable "
        "image(s) skipped."
    )
    for name, reason in result.unavailable.items():
        md.append(f"\n{LABELS.get(name, name)}: not measured ({reason}).")
    md += ["", "## Model and baselines", "", *_headline_table(result), ""]
    if result.pairs:
        md += ["## Verification (model)", "", *_verification_section(result.model), ""]
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
