"""``lookalike explain``: where two images agree and differ, as a heatmap PNG."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli import options
from lookalike.errors import LookalikeError


def cmd_explain(args: argparse.Namespace) -> int:
    """``lookalike explain A B --out diff.png``: scores, heatmaps and the least-alike region."""
    from lookalike.viz.explain import explain, render_explanation

    if args.heatmap_size is not None and args.heatmap_size < 32:
        raise LookalikeError(f"--heatmap-size must be at least 32 pixels, got {args.heatmap_size}")
    model = options.load_model(args)
    result = explain(args.a, args.b, model, mode=args.mode, input_size=args.heatmap_size)
    out = render_explanation(result, args.a, args.b, args.out)
    if args.json:
        print(json.dumps(_json(result, args.a, args.b, out)))
        return 0
    _print(result)
    print(f"heatmap:            {out}")
    return 0


def _json(result: Any, a: str, b: str, heatmap: Any) -> dict[str, Any]:
    """The ``--json`` object: the pair's scores, then the same keys for each image.

    ``image_a``/``image_b``, ``lowest_similarity_a``/``_b`` and ``lowest_region_a``/``_b``
    (``[x0, y0, x1, y1]`` in that image's pixels, or ``null`` when uniform) are symmetric;
    the library's ``lowest_region`` (image B's) is not repeated under its old name.
    """
    report = result.to_dict()
    region_b = report.pop("lowest_region")
    keys = ("cosine", "euclidean", "probability", "same", "mode")
    return {
        **{key: report[key] for key in keys},
        "image_a": a,
        "image_b": b,
        "lowest_similarity_a": report["lowest_similarity_a"],
        "lowest_similarity_b": report["lowest_similarity_b"],
        "lowest_region_a": report["lowest_region_a"],
        "lowest_region_b": region_b,
        "heatmap": str(heatmap),
    }


def _print(result: Any) -> None:
    print(f"cosine similarity:  {result.cosine:.4f}")
    print(f"euclidean distance: {result.euclidean:.4f}")
    if result.probability is not None:
        print(f"P(same):            {result.probability:.4f}")
    if result.same is not None:
        print(f"decision:           {'same' if result.same else 'different'}")
    for which in ("a", "b"):
        box = result.lowest_region(which)
        low = float((result.similarity_a if which == "a" else result.similarity_b).min())
        where = "nowhere (uniform)" if box is None else f"x {box[0]}-{box[2]}, y {box[1]}-{box[3]}"
        print(f"least alike in {which.upper()}:   {where} (local similarity {low:.2f})")


def register(sub: Any) -> None:
    """Add ``explain`` to the sub-command parsers."""
    p = sub.add_parser("explain", help="heatmaps of where two images agree and differ")
    p.add_argument("a", metavar="A", help="first image")
    p.add_argument("b", metavar="B", help="second image")
    options.add_out(p, "PNG", "the heatmap figure to write")
    p.add_argument(
        "--mode",
        default="best_match",
        choices=["best_match", "aligned"],
        help="best_match: each part against its best match anywhere (default; moved content "
        "agrees); aligned: against the same place (registered images)",
    )
    p.add_argument(
        "--heatmap-size",
        type=options.int_in(32, options.MAX_IMAGE_SIZE),
        metavar="PX",
        help=f"input size for the heatmaps only, 32 to {options.MAX_IMAGE_SIZE} "
        "(finer maps when larger, e.g. 448; default: the model's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    options.add_model(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_explain)
