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
from lookalike.errors import LookalikeError

EXIT_USER_ERROR = 2
Handler = Callable[[argparse.Namespace], int]


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference")


def _add_model(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", metavar="DIR", help="a lookalike model folder")
    group.add_argument(
        "--backbone", metavar="NAME", help="a registered backbone (default mobilenet_v2)"
    )
    parser.add_argument("--weights", metavar="FILE", help="explicit pretrained weights file")
    parser.add_argument(
        "--no-pretrained", action="store_true", help="random backbone weights (explicit choice)"
    )
    parser.add_argument("--image-size", type=int, metavar="PX", help="model input size in pixels")


def _load_model(args: argparse.Namespace) -> Any:
    from lookalike.device import set_threads
    from lookalike.model import SiameseModel

    set_threads(args.threads)
    if args.model:
        model = SiameseModel.load(args.model, device=args.device)
        if args.image_size:
            model.preprocess = model.preprocess.with_input_size(args.image_size)
        return model
    model = SiameseModel.create(
        args.backbone or "mobilenet_v2",
        pretrained=False if args.no_pretrained else None,
        weights_file=args.weights,
        input_size=args.image_size,
    )
    return model.to_device(args.device)


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
    from lookalike import scoring

    if args.pairs:
        if args.images:
            raise LookalikeError("give either two images or --pairs CSV, not both")
        if not args.out:
            raise LookalikeError("--pairs needs --out SCORES.csv")
        model = _load_model(args)
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
    model = _load_model(args)
    result = scoring.compare(args.images[0], args.images[1], model)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_comparison(result)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``lookalike embed``: embeddings of files and folders into .npz or .parquet."""
    from lookalike import scoring
    from lookalike.images import iter_image_files

    paths: list[str] = []
    for item in args.paths:
        path = Path(item)
        paths.extend(str(p) for p in iter_image_files(path)) if path.is_dir() else paths.append(
            item
        )
    if not paths:
        raise LookalikeError("no images to embed")
    model = _load_model(args)
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
    from lookalike.backbones import list_backbones

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
    from lookalike.folder import describe

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


def cmd_demo(args: argparse.Namespace) -> int:
    """``lookalike demo``: compare the bundled sample photos with the default pretrained model."""
    from lookalike import scoring
    from lookalike.samples import sample_paths

    samples = sample_paths()
    model = _load_model(args)
    pairs = [("chelsea", "chelsea_edited"), ("chelsea", "coffee"), ("chelsea_edited", "coffee")]
    print(f"model: {model.backbone_name} (pretrained, {model.embedding_dim}-d embeddings)")
    for a, b in pairs:
        r = scoring.compare(samples[a], samples[b], model)
        print(f"{a:>15} vs {b:<15} cosine {r.cosine:.4f}  euclidean {r.euclidean:.4f}")
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
    _add_model(p)
    _add_runtime(p)
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("embed", help="embed images into an .npz or .parquet file")
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="images or folders (walked recursively)"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output .npz or .parquet")
    p.add_argument("--batch-size", type=int, default=32)
    _add_model(p)
    _add_runtime(p)
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser("backbones", help="list backbones and whether their weights are offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backbones)

    p = sub.add_parser("info", help="show what a model folder records")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("demo", help="compare the bundled sample photos")
    _add_model(p)
    _add_runtime(p)
    p.set_defaults(handler=cmd_demo)
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
