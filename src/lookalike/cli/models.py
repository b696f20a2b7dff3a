"""``lookalike backbones`` and ``info``: which backbones exist, what a model folder records."""

from __future__ import annotations

import argparse
import json
from typing import Any


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


def readable(value: Any, *, nested: bool = False) -> str:
    """A recorded value for people: numbers to 4 significant digits, lists and dicts inline.

    ``0.7213456789`` → ``0.7213``; ``[0.485, 0.456, 0.406]`` → ``[0.485, 0.456, 0.406]``;
    ``{"cosine": 0.72}`` → ``cosine 0.72`` (``{cosine 0.72}`` when ``nested`` in another
    value); ``12345`` → ``12,345``.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(readable(v, nested=True) for v in value) + "]"
    if isinstance(value, dict):
        text = ", ".join(f"{k} {readable(v, nested=True)}" for k, v in value.items())
        return "{" + text + "}" if nested else text
    return str(value)


def cmd_info(args: argparse.Namespace) -> int:
    """``lookalike info``: everything a model folder records."""
    from lookalike.model.folder import describe, folder_files, read_card

    if args.json:
        print(json.dumps(describe(args.model_dir)))
        return 0
    card = read_card(args.model_dir)
    weights, pre = card.backbone_weights, card.preprocess
    print(f"model folder:   {args.model_dir}")
    print(
        f"backbone:       {card.backbone} (feature dim {card.feature_dim}, "
        f"{'stored' if weights.stored else 'referenced by sha256'})"
    )
    if weights.pretrained_sha256:
        print(f"pretrained:     sha256 {weights.pretrained_sha256}")
    print(
        f"preprocess:     {pre.input_size[0]}x{pre.input_size[1]}, "
        f"{pre.channels} channel(s), "
        f"mean {readable(list(pre.mean))}, std {readable(list(pre.std))}, {pre.resize}"
    )
    print(
        f"embedding:      {card.pooling} pooling, "
        f"projection {list(card.projection) or 'none'}, "
        f"dim {card.embedding_dim}, L2-normalised: {card.normalize}"
    )
    print(f"pair head:      {card.head or 'none'}")
    thresholds = readable(dict(card.thresholds)) if card.thresholds else "none (uncalibrated)"
    print(f"thresholds:     {thresholds}")
    domain = card.domain.summary() if card.domain else "not recorded (inputs are not checked)"
    print(f"domain:         {domain}")
    if not card.metrics:
        print("metrics:        none recorded")
    for key, value in card.metrics.items():
        print(f"metric:         {key} = {readable(value)}")
    for key, value in card.provenance.items():
        print(f"provenance:     {key} = {readable(value)}")
    for name, size in folder_files(args.model_dir).items():
        print(f"file:           {name} ({size:,} bytes)")
    return 0


def register(sub: Any) -> None:
    """Add ``backbones`` and ``info`` to the sub-command parsers."""
    p = sub.add_parser("backbones", help="list backbones and whether their weights are offline")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_backbones)

    p = sub.add_parser("info", help="show what a model folder records")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a lookalike model folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_info)
