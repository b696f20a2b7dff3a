"""``lookalike export``: the model as files to ship (standalone ONNX, int8, a static page).

* ``lookalike export MODEL --onnx OUT.onnx`` writes the embedding network (and
  ``OUT.head.onnx`` when the model has a pair head) with its description in the ONNX
  metadata (:func:`lookalike.inference.standalone.export_onnx`);
* ``--int8 --calibration DIR`` quantises it, calibrated on DIR's images, prints the
  agreement with float32 on held-out images and refuses a model below the floor unless
  ``--force`` (:func:`lookalike.inference.quantize.export_int8`);
* ``--web OUT_DIR`` builds the static in-browser page (:mod:`lookalike.web`).

MODEL is a model folder or a registered backbone name (default: the default backbone); the
usual ``--model``/``--backbone`` options work too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lookalike.cli import options
from lookalike.errors import LookalikeError
from lookalike.inference.source import ModelSource


def _source(args: argparse.Namespace) -> ModelSource:
    """The model: the positional MODEL (a folder or a backbone name) or the model options."""
    if args.target is None:
        return options.model_source(args)
    if args.model or args.backbone:
        raise LookalikeError("give the model either as MODEL or with --model/--backbone")
    as_folder = Path(args.target).is_dir()
    base = options.model_source(args)
    return ModelSource(
        folder=args.target if as_folder else None,
        backbone=None if as_folder else args.target,
        pretrained=base.pretrained,
        weights=base.weights,
        image_size=base.image_size,
    )


def _web(args: argparse.Namespace, source: ModelSource) -> None:
    from lookalike.web import build_site

    out = build_site(source, args.web)
    print(f"static page -> {out}")


def cmd_export(args: argparse.Namespace) -> int:
    """``lookalike export``."""
    if not args.onnx and not args.web:
        raise LookalikeError("nothing to export: give --onnx OUT.onnx and/or --web OUT_DIR")
    if args.int8 and not args.onnx:
        raise LookalikeError("--int8 quantises the ONNX file: give --onnx OUT.onnx")
    source = _source(args)
    if args.onnx:
        if args.int8:
            _int8(args, source)
        else:
            from lookalike.inference.export import head_path
            from lookalike.inference.standalone import export_onnx

            out = export_onnx(source, args.onnx)
            print(f"ONNX (float32) -> {out}")
            head = head_path(out)
            if head.is_file():
                print(f"pair head -> {head}")
    if args.web:
        _web(args, source)
    return 0


def _int8(args: argparse.Namespace, source: ModelSource) -> None:
    from lookalike.inference import quantize as Q
    from lookalike.inference.export import head_path
    from lookalike.inference.standalone import export_int8

    if not args.calibration:
        raise LookalikeError("--int8 needs --calibration DIR (images like the ones you embed)")
    settings = Q.Int8Settings(
        count=args.calibration_count,
        held_out=args.held_out,
        seed=args.seed,
        quant_format=args.quant_format,
        per_channel=not args.per_tensor,
        method=args.calibration_method,
        keep_sensitive_float=not args.int8_everywhere,
    )
    floor = Q.Floor(min_mean_cosine=args.min_cosine, max_recall_drop=args.max_recall_drop)

    def report(agreement: Q.Agreement) -> None:
        for line in agreement.lines():
            print(line)

    built = export_int8(
        source,
        args.onnx,
        args.calibration,
        settings=settings,
        floor=floor,
        force=args.force,
        report=report,
    )
    forced = "" if built.agreement.passed else " (forced below the floor; not used by the engine)"
    print(f"ONNX (int8) -> {args.onnx}{forced}")
    head = head_path(args.onnx)
    if head.is_file():
        print(f"pair head (float32) -> {head}")


def register(sub: Any) -> None:
    """Add ``export``."""
    from lookalike.inference import quantize as Q

    p = sub.add_parser("export", help="write the model as standalone ONNX (float32 or int8)")
    p.add_argument("target", nargs="?", metavar="MODEL", help="a model folder or backbone name")
    p.add_argument(
        "--onnx", type=options.output_file, metavar="OUT.onnx", help="write the network here"
    )
    p.add_argument(
        "--web", type=options.output_folder, metavar="OUT_DIR", help="write the static page here"
    )
    q = p.add_argument_group("int8 quantisation")
    q.add_argument("--int8", action="store_true", help="quantise the ONNX file to int8")
    q.add_argument("--calibration", metavar="DIR", help="images to calibrate and check on")
    q.add_argument(
        "--calibration-count",
        type=options.int_in(1, 100_000),
        default=Q.DEFAULT_CALIBRATION,
        metavar="N",
        help="most images calibrated on",
    )
    q.add_argument(
        "--held-out",
        type=options.int_in(Q.MIN_HELD_OUT, 100_000),
        default=Q.DEFAULT_HELD_OUT,
        metavar="N",
        help="most images (not calibrated on) the agreement is measured on",
    )
    q.add_argument("--seed", type=options.seed, default=0, help="seed of the image sampling")
    q.add_argument(
        "--quant-format",
        choices=["qdq", "qoperator"],
        default="qdq",
        help="ONNX Runtime's int8 format: QDQ nodes or QOperator (fused) operators",
    )
    q.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    q.add_argument(
        "--int8-everywhere",
        action="store_true",
        help="quantise the first and the depthwise convolutions too (kept float32 by default: "
        "they lose the most)",
    )
    q.add_argument(
        "--calibration-method",
        choices=["minmax", "percentile", "entropy"],
        default="minmax",
        help="how activation ranges are chosen (minmax did best on mobilenet_v2; the others "
        "are slower)",
    )
    q.add_argument(
        "--min-cosine",
        type=options.cosine,
        default=Q.Floor.min_mean_cosine,
        metavar="C",
        help="floor: least mean cosine between float32 and int8 embeddings",
    )
    q.add_argument(
        "--max-recall-drop",
        type=options.float_in(0, 100),
        default=Q.Floor.max_recall_drop,
        metavar="POINTS",
        help="floor: largest drop of recall@10, in percentage points",
    )
    q.add_argument("--force", action="store_true", help="write it even below the floor")
    options.add_model(p)
    p.set_defaults(handler=cmd_export)
