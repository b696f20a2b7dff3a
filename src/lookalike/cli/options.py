"""Option groups shared by the sub-commands, and what they turn into.

Every command module imports this one (never ``lookalike.cli`` itself), so the command line
is a DAG: ``cli/__init__`` → ``cli/<command>`` → ``cli/options`` → the library.

* :func:`add_model` → :func:`model_source`: ``--model``/``--backbone``/``--weights``/
  ``--no-pretrained``/``--image-size`` become one :class:`~lookalike.inference.ModelSource`;
* :func:`add_runtime` (``--device``, ``--threads``) and :func:`add_engine` (``--engine``);
* :func:`load_model` (the PyTorch model) and :func:`load_embedder` (an inference engine).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lookalike.errors import LookalikeError
from lookalike.inference.source import ModelSource

if TYPE_CHECKING:
    from lookalike.inference.embedder import BaseEmbedder
    from lookalike.model.network import SiameseModel

MAX_THREADS = 1024
"""Most CPU threads accepted (validated before any native code sees the number)."""


def add_runtime(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``."""
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference")


def add_model(parser: argparse.ArgumentParser) -> None:
    """The options that name a model (see :func:`model_source`)."""
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


def add_engine(parser: argparse.ArgumentParser) -> None:
    """``--engine``."""
    parser.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="inference engine: auto (ONNX Runtime on CPU, its export cached; torch on CUDA)",
    )


def model_named(args: argparse.Namespace) -> bool:
    """Whether any model option was given on the command line."""
    return bool(
        getattr(args, "model", None)
        or getattr(args, "backbone", None)
        or getattr(args, "weights", None)
        or getattr(args, "no_pretrained", False)
        or getattr(args, "image_size", None)
    )


def model_source(args: argparse.Namespace) -> ModelSource:
    """The model the options name (the default backbone when none)."""
    return ModelSource(
        folder=getattr(args, "model", None) or None,
        backbone=getattr(args, "backbone", None) or None,
        pretrained=False if getattr(args, "no_pretrained", False) else None,
        weights=getattr(args, "weights", None) or None,
        image_size=getattr(args, "image_size", None),
    )


def threads(args: argparse.Namespace) -> int | None:
    """``--threads``, validated.

    Raises:
        LookalikeError: Not in 1..:data:`MAX_THREADS`.
    """
    value: int | None = getattr(args, "threads", None)
    if value is not None and not 1 <= value <= MAX_THREADS:
        raise LookalikeError(f"--threads must be between 1 and {MAX_THREADS}, got {value}")
    return value


def load_model(args: argparse.Namespace, source: ModelSource | None = None) -> SiameseModel:
    """The PyTorch model of ``source`` (default: the options' model) on ``--device``."""
    from lookalike.inference.select import build_model
    from lookalike.model.device import set_threads

    set_threads(threads(args))
    model = build_model(source or model_source(args))
    return model.to_device(args.device)


def load_embedder(args: argparse.Namespace, source: ModelSource | None = None) -> BaseEmbedder:
    """``source`` (default: the options' model) as an inference engine.

    ONNX Runtime on CPU never imports torch when the export is cached.
    """
    from lookalike.inference.select import load_embedder as load

    return load(
        source or model_source(args),
        engine=getattr(args, "engine", "auto"),
        device=args.device,
        threads=threads(args),
    )
