"""``lookalike map``: a picture of a collection, each image placed by its embedding."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookalike.cli import options
from lookalike.errors import LookalikeError


def cmd_map(args: argparse.Namespace) -> int:
    """``lookalike map DIR --out map.png``: thumbnails (or labelled points) on a 2-D map."""
    from lookalike.viz.maps import map_folder, require_method

    if bool(args.folder) == bool(args.index):
        raise LookalikeError("give either an image folder or --index INDEX_DIR")
    require_method(args.method)
    if args.thumb_size < 8:
        raise LookalikeError(f"--thumb-size must be at least 8 pixels, got {args.thumb_size}")
    if args.index:
        result = _map_index(args)
    else:
        model = options.load_model(args)
        result = map_folder(
            args.folder,
            args.out,
            model,
            method=args.method,
            style=args.style,
            thumb_px=args.thumb_size,
            batch_size=args.batch_size,
            progress=sys.stderr.isatty(),
            seed=args.seed,
        )
    for reason in result.skipped.values():
        print(f"skipped: {reason}", file=sys.stderr)
    if result.skipped:
        print(f"{len(result.skipped)} file(s) skipped", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "map": str(result.path),
                    "images": len(result.paths),
                    "identities": None if result.labels is None else len(set(result.labels)),
                    "method": result.method,
                    "style": result.style,
                    "skipped": sorted(result.skipped),
                }
            )
        )
        return 0
    labelled = "" if result.labels is None else f", {len(set(result.labels))} identities"
    print(
        f"mapped {len(result.paths)} images{labelled} ({result.method.upper()}, "
        f"{result.style}) -> {result.path}"
    )
    return 0


def _map_index(args: argparse.Namespace) -> Any:
    """Map the vectors stored in an index folder, without embedding anything again."""
    from lookalike.index.index import Index
    from lookalike.viz.maps import identity_labels, map_vectors

    if args.model or args.backbone:
        raise LookalikeError("--index maps the index's stored vectors: drop --model/--backbone")
    with Index.open(args.index) as index:
        snapshot = index.vectors()
        files = [str(index.resolve(path)) for path in snapshot.paths]
    # labels set in the index win; else identities from an identity-folder layout
    labels: Sequence[str | None] | None = snapshot.labels
    if all(label is None for label in snapshot.labels):
        labels = identity_labels(snapshot.paths)
    return map_vectors(
        snapshot.vectors,
        files,
        args.out,
        labels=labels,
        method=args.method,
        style=args.style,
        thumb_px=args.thumb_size,
        seed=args.seed,
        title=f"Embedding map of index {Path(args.index).name}",
    )


def register(sub: Any) -> None:
    """Add ``map`` to the sub-command parsers."""
    p = sub.add_parser("map", help="draw a folder's images on a 2-D embedding map")
    p.add_argument(
        "folder",
        nargs="?",
        metavar="DIR",
        help="images (an identity folder root/<identity>/<image> colours them by identity)",
    )
    p.add_argument("--index", metavar="INDEX_DIR", help="map an index's stored vectors instead")
    options.add_out(p, "PNG", "the map to write")
    p.add_argument(
        "--method", default="pca", choices=["pca", "tsne", "umap"], help="2-D projection"
    )
    style = p.add_mutually_exclusive_group()
    style.add_argument(
        "--thumbnails",
        dest="style",
        action="store_const",
        const="thumbnails",
        help="draw the images themselves (default)",
    )
    style.add_argument(
        "--labels",
        dest="style",
        action="store_const",
        const="points",
        help="draw points coloured and named by identity",
    )
    p.set_defaults(style="thumbnails")
    p.add_argument(
        "--thumb-size",
        type=options.int_in(8, 512),
        default=64,
        metavar="PX",
        help="thumbnail side, 8 to 512",
    )
    options.add_batch_size(p)
    p.add_argument("--seed", type=options.seed, default=0, help="random seed of t-SNE / UMAP")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    options.add_model(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_map)
