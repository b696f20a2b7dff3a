"""The ``lookalike`` command: a thin shell over the library.

Each sub-command parses its arguments, calls the library, and prints. Anything a user
can get wrong ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lookalike._version import __version__
from lookalike.cli import evaluate, options, serve
from lookalike.cli import explain as explain_command
from lookalike.cli import index as index_command
from lookalike.cli import map as map_command
from lookalike.errors import LookalikeError

EXIT_USER_ERROR = 2
Handler = Callable[[argparse.Namespace], int]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _print_comparison(result: Any) -> None:
    print(f"cosine similarity:  {result.cosine:.4f}")
    print(f"euclidean distance: {result.euclidean:.4f}")
    if result.probability is None:
        print("P(same):            n/a (model has no pair head)")
    else:
        print(f"P(same):            {result.probability:.4f}")
    if result.same is not None:
        verdict = "same" if result.same else "different"
        print(f"decision:           {verdict} ({result.metric} threshold {result.threshold:.4f})")


def cmd_compare(args: argparse.Namespace) -> int:
    """``lookalike compare``: one pair, or every pair of a CSV."""
    from lookalike.inference import comparison as scoring

    if args.pairs:
        if args.images:
            raise LookalikeError("give either two images or --pairs CSV, not both")
        if not args.out:
            raise LookalikeError("--pairs needs --out SCORES.csv")
        model = options.load_embedder(args)
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
        print(
            f"scored {len(scores.comparisons)} pairs -> {out}"
            + (f" ({len(scores.skipped)} skipped)" if scores.skipped else "")
        )
        return 0
    if len(args.images) != 2:
        raise LookalikeError("compare needs exactly two images (or --pairs CSV --out SCORES.csv)")
    model = options.load_embedder(args)
    result = scoring.compare(args.images[0], args.images[1], model)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_comparison(result)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``lookalike embed``: embeddings of files and folders into .npz or .parquet."""
    from lookalike.imaging.images import iter_image_files
    from lookalike.inference import comparison as scoring

    paths: list[str] = []
    for item in args.paths:
        path = Path(item)
        paths.extend(str(p) for p in iter_image_files(path)) if path.is_dir() else paths.append(
            item
        )
    if not paths:
        raise LookalikeError("no images to embed")
    model = options.load_embedder(args)
    embedded, skipped = scoring.embed_files(
        model, paths, batch_size=args.batch_size, progress=sys.stderr.isatty()
    )
    out = scoring.save_embeddings(args.out, embedded, skipped)
    for reason in skipped.values():
        print(f"skipped: {reason}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} file(s) skipped", file=sys.stderr)
    print(f"embedded {len(embedded.paths)} images ({model.embedding_dim} dims) -> {out}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    """``lookalike backbones``: the registry, embedding sizes, offline weight availability."""
    from lookalike.model.backbones import list_backbones

    rows: list[dict[str, Any]] = []
    for spec in list_backbones():
        if spec.weights is None:
            offline = "no weights (train it)"
        else:
            offline = "yes" if spec.weights_offline() else "online only"
        rows.append(
            {
                "name": spec.name,
                "embedding_dim": spec.feature_dim,
                "input_size": list(spec.preprocess.input_size),
                "channels": spec.preprocess.channels,
                "weights_offline": offline,
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'name':20} {'dim':>5}  {'input':9} {'weights offline':22} description")
    for r in rows:
        size = "x".join(str(v) for v in r["input_size"]) + ("" if r["channels"] == 3 else " L")
        print(
            f"{r['name']:20} {r['embedding_dim']:>5}  {size:9} {r['weights_offline']:22} "
            f"{r['description']}"
        )
    print("any timm model: timm:<name> (weights from the online hub)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``lookalike info``: everything a model folder records."""
    from lookalike.model.folder import describe

    info = describe(args.model_dir)
    if args.json:
        print(json.dumps(info))
        return 0
    weights = info.get("backbone_weights", {})
    print(f"model folder:   {args.model_dir}")
    print(
        f"backbone:       {info['backbone']} (feature dim {info['feature_dim']}, "
        f"{'stored' if weights.get('stored') else 'referenced by sha256'})"
    )
    if weights.get("pretrained_sha256"):
        print(f"pretrained:     sha256 {weights['pretrained_sha256']}")
    pre = info["preprocess"]
    print(
        f"preprocess:     {pre['input_size'][0]}x{pre['input_size'][1]}, "
        f"{pre['channels']} channel(s), "
        f"mean {pre['mean']}, std {pre['std']}, {pre['resize']}"
    )
    print(
        f"embedding:      {info['pooling']} pooling, projection {info['projection'] or 'none'}, "
        f"dim {info['embedding_dim']}, L2-normalised: {info['normalize']}"
    )
    print(f"pair head:      {info['head'] or 'none'}")
    print(f"thresholds:     {info.get('thresholds') or 'none (uncalibrated)'}")
    print(f"metrics:        {info.get('metrics') or 'none recorded'}")
    for key, value in info.get("provenance", {}).items():
        print(f"provenance:     {key} = {value}")
    for name, size in info.get("files", {}).items():
        print(f"file:           {name} ({size:,} bytes)")
    return 0


def _widths(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise LookalikeError(
            f"--projection takes comma-separated widths like 128,128, got {text!r}"
        ) from exc


def cmd_train(args: argparse.Namespace) -> int:
    """``lookalike train``: train a model folder from an identity folder or a pairs CSV."""
    from lookalike.data.augment import Augment
    from lookalike.model.device import set_threads
    from lookalike.training.config import TrainConfig
    from lookalike.training.recipes import ModelSpec, load_dataset, train_model

    set_threads(args.threads)
    source = args.data_dir if args.dataset == "mnist" and args.data_dir else args.data
    data = load_dataset(source, dataset=args.dataset)
    spec = ModelSpec(
        backbone=args.backbone,
        pretrained=False if args.no_pretrained else None,
        image_size=args.image_size,
        channels=args.channels,
        pooling=args.pooling,
        projection=_widths(args.projection),
    )
    miner = args.miner or ("semihard" if args.loss == "triplet" else "all")
    try:
        config = TrainConfig(
            loss=args.loss,
            sampling=args.sampling,
            miner=miner,
            margin=args.margin,
            distance=args.distance,
            epochs=args.epochs,
            batch_size=args.batch_size,
            m_per_class=args.m_per_class,
            steps_per_epoch=args.steps_per_epoch,
            lr=args.lr,
            backbone_lr=args.backbone_lr,
            train_fraction=args.train_fraction,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            patience=args.patience,
            seed=args.seed,
            augment=Augment.off() if args.no_augment else Augment(),
        )
    except ValueError as exc:
        raise LookalikeError(str(exc)) from exc
    result = train_model(
        data,
        args.out,
        model_spec=spec,
        config=config,
        split=args.split,
        val_fraction=args.val_split,
        resume=args.resume,
        device=args.device,
        progress=sys.stderr.isatty(),
    )
    best = result.best
    metric = next(iter(result.model.thresholds), "cosine")
    print(
        f"validation pair accuracy: {best.val_accuracy:.4f} (best epoch {result.best_epoch} "
        f"of {result.history[-1].epoch}; {metric} threshold {best.val_threshold:.4f})"
    )
    baselines = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in result.baselines.items())
    print(f"baselines on the same validation pairs: {baselines}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"model folder: {args.out}  (history and plots in {Path(args.out) / 'training'})")
    return 0


def cmd_train_head(args: argparse.Namespace) -> int:
    """``lookalike train-head``: few-shot pair head on a frozen model from labelled pairs."""
    from lookalike.data.pairs import PairList
    from lookalike.training.fewshot import train_head_on_pairs

    pairs = PairList.from_csv(args.pairs_csv)
    model = options.load_model(args)
    report = train_head_on_pairs(
        model,
        pairs.a,
        pairs.b,
        pairs.labels,
        holdout=args.holdout,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
    )
    model.provenance = {"how": f"few-shot pair head from {args.pairs_csv}"}
    model.metrics.update(
        {
            "head_train_accuracy": report.train_accuracy,
            "head_holdout_accuracy": report.holdout_accuracy,
        }
    )
    model.save(args.out, include_backbone=not args.reference_backbone)
    print(
        f"trained pair head on {report.n_train} pairs in {report.seconds:.2f} s: "
        f"train accuracy {report.train_accuracy:.4f}"
    )
    if report.holdout_accuracy is not None:
        print(
            f"held-out accuracy on {report.n_holdout} pairs: {report.holdout_accuracy:.4f} "
            f"(cosine threshold from the same training pairs: {report.cosine_holdout_accuracy:.4f})"
        )
    print(f"model folder: {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``lookalike demo``: seed 003's digit-pair Siamese network, trained and evaluated."""
    from lookalike.model.device import set_threads
    from lookalike.training.demo import run_demo

    set_threads(args.threads)
    result = run_demo(
        args.out, data_dir=args.data_dir, seed=args.seed, progress=sys.stderr.isatty()
    )
    print(f"pair accuracy: {result.pair_accuracy:.4f}")
    print(
        f"  on {result.test_pairs} held-out test pairs of {result.dataset}; cosine threshold "
        f"{result.threshold:.4f} calibrated on validation pairs"
    )
    print(
        f"  mean euclidean distance: same digit {result.mean_distance_same:.3f}, "
        f"different digits {result.mean_distance_different:.3f} (low means same)"
    )
    print(f"  best epoch {result.train.best_epoch}, wall time {result.seconds:.1f} s")
    print("files written:")
    for path in result.files:
        print(f"  {path}")
    print(f"try: lookalike compare A.png B.png --model {Path(args.out) / 'model'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="lookalike", description="Image similarity with Siamese networks."
    )
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compare", help="compare two images (or score a pairs CSV)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="two images")
    p.add_argument("--pairs", metavar="CSV", help="CSV with columns a,b[,label]")
    p.add_argument("--out", metavar="CSV", help="scores CSV for --pairs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch-size", type=int, default=32)
    options.add_model(p)
    options.add_runtime(p)
    options.add_engine(p)
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("embed", help="embed images into an .npz or .parquet file")
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="images or folders (walked recursively)"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output .npz or .parquet")
    p.add_argument("--batch-size", type=int, default=32)
    options.add_model(p)
    options.add_runtime(p)
    options.add_engine(p)
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser("backbones", help="list backbones and whether their weights are offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backbones)

    p = sub.add_parser("info", help="show what a model folder records")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("train", help="train a model from an identity folder or a pairs CSV")
    p.add_argument(
        "data", metavar="DATA", help="identity folder (root/<identity>/<image>) or pairs CSV"
    )
    p.add_argument("--out", required=True, metavar="MODEL_DIR")
    p.add_argument(
        "--dataset", default="auto", choices=["auto", "folder", "pairs", "mnist", "digits"]
    )
    p.add_argument("--data-dir", help="folder of MNIST IDX files for --dataset mnist")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--no-pretrained", action="store_true")
    p.add_argument("--image-size", type=int)
    p.add_argument("--channels", type=int, choices=[1, 3])
    p.add_argument("--pooling", default="avg", choices=["avg", "gem", "max", "flatten"])
    p.add_argument("--projection", metavar="W1,W2", help="projection MLP widths, e.g. 128,128")
    p.add_argument("--loss", default="triplet", choices=["contrastive", "triplet", "bce"])
    p.add_argument("--sampling", default="balanced", choices=["balanced", "pairs", "triplets"])
    p.add_argument(
        "--miner", help="semihard|hard|all|all_active|random (triplet), all|hard (pairs)"
    )
    p.add_argument("--margin", type=float)
    p.add_argument("--distance", default="euclidean", choices=["euclidean", "cosine"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--m-per-class", type=int, default=4)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--backbone-lr", type=float)
    p.add_argument("--train-fraction", type=float, help="share of backbone layers that train")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "step", "none"])
    p.add_argument("--patience", type=int, default=3, help="early stopping patience (epochs)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--split", default="identity", choices=["identity", "image"])
    p.add_argument("--val-split", type=float, default=0.2, help="share held out for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume", action="store_true", help="continue from MODEL_DIR/training/checkpoint.pt"
    )
    options.add_runtime(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("train-head", help="few-shot pair head from 10-100 labelled pairs")
    p.add_argument("pairs_csv", metavar="PAIRS.csv", help="columns a,b,label (1/0, same/different)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR")
    p.add_argument(
        "--holdout", type=float, default=0.25, help="share of pairs held out for the report"
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reference-backbone",
        action="store_true",
        help="store the pretrained backbone by name and sha256 instead of its weights",
    )
    options.add_model(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_train_head)

    p = sub.add_parser("demo", help="train and evaluate seed 003's digit-pair network")
    p.add_argument("--out", default="demo-output", metavar="DIR")
    p.add_argument("--data-dir", metavar="DIR", help="MNIST IDX files instead of sklearn digits")
    p.add_argument("--seed", type=int, default=0)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_demo)

    evaluate.register(sub)
    serve.register(sub)
    explain_command.register(sub)
    map_command.register(sub)
    index_command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except LookalikeError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
