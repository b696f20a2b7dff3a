"""``lookalike compare`` and ``embed``: two images → scores, many images → an embeddings file."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from lookalike.cli import options, ray_options
from lookalike.errors import LookalikeError


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _print_comparison(result: Any, model: Any) -> None:
    print(f"cosine similarity:  {result.cosine:.4f}")
    print(f"euclidean distance: {result.euclidean:.4f}")
    if result.probability is None:
        print("P(same):            n/a (model has no pair head)")
    else:
        print(f"P(same):            {result.probability:.4f}")
    print(f"decision:           {_decision(result, model)}")
    _print_warnings(result.warnings)


def _print_warnings(warnings: list[str]) -> None:
    """Out-of-domain warnings on stderr, one ``warning:`` line each (stdout stays the answer)."""
    sys.stdout.flush()
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _decision(result: Any, model: Any) -> str:
    """The verdict in words: what "same" means for this model and the threshold used."""
    from lookalike.inference.comparison import (
        NEAR_DUPLICATE,
        NEAR_DUPLICATE_MEANING,
        near_duplicate_threshold,
    )

    if result.same is None:
        return (
            "none: this model has no calibrated threshold (calibrate one with "
            "`lookalike eval MODEL DATA --calibrate` or `lookalike calibrate-dedup --model DIR`)"
        )
    verdict = "same" if result.same else "different"
    if result.metric == NEAR_DUPLICATE:
        near = near_duplicate_threshold(model)
        how = f"; {near[1]}" if near else ""
        sign = "≥" if result.same else "<"
        return (
            f"{verdict} picture (cosine {result.cosine:.4f} {sign} {result.threshold:.4f}{how})"
            f'\n                    "same" here means {NEAR_DUPLICATE_MEANING}'
        )
    name = "P(same)" if result.metric == "probability" else result.metric
    value = {"probability": result.probability, "cosine": result.cosine}.get(
        result.metric, result.euclidean
    )
    low = result.metric == "euclidean"
    sign = ("≤" if result.same else ">") if low else ("≥" if result.same else "<")
    shown = f"{name} {value:.4f} {sign} {result.threshold:.4f}"
    return f"{verdict} ({shown}, the model's calibrated threshold)"


def _print_pair_accuracy(scores: Any, csv_path: str) -> None:
    """With labels in the CSV: accuracy at the model's threshold and ROC AUC, with n and CIs.

    Rows without a label are left out (and counted); without a calibrated threshold only the
    threshold-free ROC AUC is shown.
    """
    import numpy as np

    from lookalike.data.pairs import _parse_label
    from lookalike.evaluation.report import auc_interval, interval_text, proportion_text

    path = Path(csv_path)
    labels = np.array([_parse_label(path, 0, label, False) for label in scores.labels])
    known = ~np.isnan(labels) if labels.size else np.zeros(0, dtype=bool)
    if not known.any():
        return
    rows = [c for c, k in zip(scores.comparisons, known, strict=True) if k]
    y = labels[known]
    n, same = len(rows), int(y.sum())
    print(f"labelled pairs: {n} ({same} same, {n - same} different)")
    decided = [c for c in rows if c.same is not None]
    if decided:
        first = decided[0]
        right = sum(int(c.same == (label > 0.5)) for c, label in zip(rows, y, strict=True))
        names = {"probability": "P(same)", "cosine": "cosine", "euclidean": "euclidean"}
        rule = names.get(str(first.metric), f"cosine, {first.metric}")
        print(
            f"accuracy at the model's threshold ({rule} {first.threshold:.4f}): "
            f"{proportion_text(right / n, n, unit='labelled pairs')}"
        )
    else:
        print("accuracy: n/a (the model has no calibrated threshold; ROC AUC needs none)")
    if 0 < same < n:
        cosine = np.array([c.cosine for c in rows])
        print(f"ROC AUC (cosine): {interval_text(auc_interval(cosine, y))} on {n} labelled pairs")
    unlabelled = int((~known).sum())
    if unlabelled:
        print(f"{unlabelled} pair(s) without a label left out of these figures")


def _comparer(args: argparse.Namespace) -> Any:
    """The options' engine, with ``--head FILE`` attached (refused for another model)."""
    model = options.load_embedder(args)
    if getattr(args, "head", None):
        from lookalike.inference.heads import attach_head

        attach_head(model, args.head)
    return model


def cmd_compare(args: argparse.Namespace) -> int:
    """``lookalike compare``: one pair, or every pair of a CSV."""
    from lookalike.inference import comparison as scoring

    if args.pairs:
        if args.images:
            raise LookalikeError("give either two images or --pairs CSV, not both")
        if not args.out:
            raise LookalikeError("--pairs needs --out SCORES.csv")
        model = _comparer(args)
        scores = scoring.score_pairs(model, args.pairs, batch_size=args.batch_size)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["a", "b", "label", "cosine", "euclidean", "probability", "same"])
            for (a, b), label, c in zip(
                scores.pairs, scores.labels, scores.comparisons, strict=True
            ):
                writer.writerow(
                    [
                        a,
                        b,
                        label or "",
                        f"{c.cosine:.6f}",
                        f"{c.euclidean:.6f}",
                        "" if c.probability is None else f"{c.probability:.6f}",
                        "" if c.same is None else int(c.same),
                    ]
                )
        for number, reason in scores.skipped:
            print(f"skipped row {number}: {reason}", file=sys.stderr)
        _print_warnings(list(dict.fromkeys(w for c in scores.comparisons for w in c.warnings)))
        print(
            f"scored {len(scores.comparisons)} pairs -> {out}"
            + (f" ({len(scores.skipped)} skipped)" if scores.skipped else "")
        )
        _print_pair_accuracy(scores, args.pairs)
        return 0
    if len(args.images) != 2:
        raise LookalikeError("compare needs exactly two images (or --pairs CSV --out SCORES.csv)")
    model = _comparer(args)
    result = scoring.compare(args.images[0], args.images[1], model)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_comparison(result, model)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``lookalike embed``: embeddings of files and folders into .npz or .parquet."""
    from lookalike.imaging.files import iter_image_files
    from lookalike.inference.pipeline import embed_files, save_embeddings

    ray_options.check(args)
    paths: list[str] = []
    for item in args.paths:
        if "://" in item:  # an object-store or file:// URI, listed through fsspec
            from lookalike.inference.uris import check_for_ray, list_images

            if args.ray is not None:
                check_for_ray(item)
            paths.extend(list_images(item))
            continue
        path = Path(item)
        if not path.exists():
            raise LookalikeError(f"{item}: no such file or folder")
        paths.extend(str(p) for p in iter_image_files(path)) if path.is_dir() else paths.append(
            item
        )
    if not paths:
        raise LookalikeError("no images to embed")
    source = options.model_source(args)
    model = options.load_embedder(args, source)
    settings = ray_options.ray_options(args, source)
    with ray_options.session(args):
        if settings is not None:
            from lookalike.inference.ray_data import RayEmbedding

            work = RayEmbedding(settings, model.preprocess, model.embedding_dim, key=model.key)
            embedded = work.embed_all(paths, args.batch_size, progress=True)
        else:
            load = None
            if any("://" in p for p in paths):
                from lookalike.inference.uris import FileReader

                load = FileReader(model.preprocess)
            embedded = embed_files(
                model, paths, batch_size=args.batch_size, progress=True, load=load
            )
    out = save_embeddings(args.out, embedded)
    skipped = dict(embedded.failures)
    for reason in skipped.values():
        print(f"skipped: {reason}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} file(s) skipped", file=sys.stderr)
    print(f"embedded {len(embedded.paths)} images ({model.embedding_dim} dims) -> {out}")
    return 0


def register(sub: Any) -> None:
    """Add ``compare`` and ``embed`` to the sub-command parsers."""
    p = sub.add_parser("compare", help="compare two images (or score a pairs CSV)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="two images")
    p.add_argument("--pairs", metavar="CSV", help="CSV with columns a,b[,label]")
    options.add_out(p, "CSV", "scores CSV for --pairs", required=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--head",
        metavar="FILE",
        help="a head file (.safetensors) trained for this model, e.g. on the static page",
    )
    options.add_batch_size(p)
    options.add_model(p)
    options.add_runtime(p)
    options.add_engine(p)
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("embed", help="embed images into an .npz or .parquet file")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="images or folders (walked recursively), or fsspec URIs (s3://bucket/prefix, "
        "file:///abs/folder)",
    )
    options.add_out(p, "FILE", "output .npz or .parquet")
    options.add_batch_size(p)
    options.add_model(p)
    options.add_runtime(p)
    options.add_engine(p)
    ray_options.add_ray(p)
    p.set_defaults(handler=cmd_embed)
