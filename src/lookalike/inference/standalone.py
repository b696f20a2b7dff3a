"""Standalone ONNX files: a model as files any ONNX Runtime user can run without lookalike.

:func:`export_onnx` writes ``OUT.onnx`` (the embedding network: ``images`` (N, C, H, W)
float32 → L2-normalised ``embeddings`` (N, D) float32) and, when the model has a pair head,
``OUT.head.onnx`` (``emb_a``, ``emb_b`` (N, D) → ``probability`` (N,), P(same)). The model's
description (preprocessing, embedding size, thresholds, model key, ...) is in each file's
ONNX ``metadata_props``; the keys are listed in :mod:`lookalike.inference.export`.
:func:`standalone_export` gives the same bytes in memory; :func:`export_int8` quantises them
(:mod:`lookalike.inference.quantize`) and refuses a model below the agreement floor.

The graph is the engine's cached export (:mod:`lookalike.inference.export`), so a warm export
imports no torch; a cold one exports once, checks the result against torch and caches it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike._io import atomic_write_bytes
from lookalike._version import __version__
from lookalike.errors import ExportError
from lookalike.inference import export as X
from lookalike.inference import quantize as Q
from lookalike.inference.onnx_engine import OnnxEmbedder
from lookalike.inference.select import load_embedder
from lookalike.inference.source import ModelSource
from lookalike.model.folder import read_card

if TYPE_CHECKING:
    from torch import nn

    from lookalike.model.network import SiameseModel

__all__ = ["StandaloneExport", "export_int8", "export_onnx", "standalone_export"]


@dataclass
class StandaloneExport:
    """A model's standalone ONNX files, in memory (:func:`standalone_export`).

    Attributes:
        model: The embedding network, serialised, with the full metadata (module docstring).
        head: The pair head, serialised, or ``None`` when the model has none.
        metadata: The embedding file's ``lookalike.*`` metadata.
        embedder: The float32 network in ONNX Runtime (to measure against).
    """

    model: bytes
    head: bytes | None
    metadata: dict[str, str]
    embedder: OnnxEmbedder


def standalone_export(
    source: ModelSource | str | os.PathLike[str] | None = None,
    *,
    model: SiameseModel | None = None,
    module: nn.Module | None = None,
    head_file: str = "",
) -> StandaloneExport:
    """Export a model's embedding network (and pair head) with its whole description.

    Reuses the engine's cached export when there is one (then torch is not imported),
    otherwise exports once (checked against torch) and caches it.

    Args:
        source: The model: a :class:`~lookalike.inference.ModelSource`, a model folder, or
            ``None`` (the default backbone).
        model: The source's model, already built (used instead of building it).
        module: An instance of the custom backbone class, for folders that hold one.
        head_file: The file name the head will have, recorded as ``lookalike.head``.

    Raises:
        ExportError: onnx/onnxruntime missing, or the model cannot be exported.
        LookalikeError: A bad model folder or unavailable weights.
    """
    source = ModelSource.of(source)
    embedder = load_embedder(source, model=model, module=module, engine="onnx", device="cpu")
    if not isinstance(embedder, OnnxEmbedder):
        raise ExportError("lookalike export needs onnxruntime: pip install lookalike[onnx]")
    if source.folder is not None:
        name, normalize = Path(source.folder).name, read_card(source.folder).normalize
    else:
        name = source.backbone_name
        normalize = model.normalize if model is not None else True
    meta = {
        X.META_FORMAT: X.STANDALONE_FORMAT,
        X.META_KEY: embedder.key or "",
        X.META_NAME: name,
        X.META_PREPROCESS: json.dumps(embedder.preprocess.to_dict(), sort_keys=True),
        X.META_INPUT: X.INPUT_NAME,
        X.META_OUTPUT: X.OUTPUT_NAME,
        X.META_EMBEDDING_DIM: str(embedder.embedding_dim),
        X.META_NORMALIZED: "true" if normalize else "false",
        X.META_THRESHOLDS: json.dumps(embedder.thresholds, sort_keys=True),
        X.META_HEAD: head_file if embedder.head is not None else "",
        X.META_VERSION: __version__,
    }
    data = X.with_metadata(embedder.onnx_bytes(), meta)
    head = None
    if embedder.head is not None:
        layers = [(w.T, b) for w, b in embedder.head.layers]
        head_meta = {
            X.META_FORMAT: X.HEAD_FORMAT,
            X.META_KEY: embedder.key or "",
            X.META_EMBEDDING_DIM: str(embedder.embedding_dim),
            X.META_VERSION: __version__,
        }
        head = X.head_onnx(layers, meta=head_meta)
    return StandaloneExport(data, head, meta, embedder)


def export_onnx(
    source: ModelSource | str | os.PathLike[str] | None,
    path: str | os.PathLike[str],
    *,
    model: SiameseModel | None = None,
    module: nn.Module | None = None,
) -> Path:
    """Write a model's standalone ONNX file (and ``OUT.head.onnx`` when it has a pair head).

    The file maps ``images`` (N, C, H, W) float32 to L2-normalised ``embeddings`` (N, D)
    float32 and carries the preprocessing, embedding size, thresholds and model key in its
    metadata (see the module docstring), so plain ONNX Runtime can run it. Files are written
    atomically; a stale head file from an earlier export is removed when the model has none.

    Args:
        source: The model (a :class:`~lookalike.inference.ModelSource`, a model folder, or
            ``None``: the default backbone).
        path: Where to write the embedding network (``OUT.onnx``).
        model: The source's model, already built.
        module: An instance of the custom backbone class, for folders that hold one.

    Returns:
        ``path``; the head, if any, is at :func:`~lookalike.inference.export.head_path` of it.

    Raises:
        ExportError: onnx/onnxruntime missing, or the model cannot be exported.
        LookalikeError: A bad model folder or unavailable weights.
        OSError: The file cannot be written.
    """
    out = Path(path)
    head_out = X.head_path(out)
    export = standalone_export(source, model=model, module=module, head_file=head_out.name)
    atomic_write_bytes(out, export.model, mode=0o644)
    if export.head is not None:
        atomic_write_bytes(head_out, export.head, mode=0o644)
    else:
        head_out.unlink(missing_ok=True)
    return out


def export_int8(
    source: ModelSource | str | os.PathLike[str] | None,
    path: str | os.PathLike[str],
    calibration: str | os.PathLike[str],
    *,
    settings: Q.Int8Settings | None = None,
    floor: Q.Floor | None = None,
    force: bool = False,
    report: Callable[[Q.Agreement], None] | None = None,
    model: SiameseModel | None = None,
    module: nn.Module | None = None,
) -> Q.Int8Model:
    """Write a model's int8 standalone file, calibrated and checked on a folder's images.

    The float32 standalone export (:func:`standalone_export`) is quantised
    (:func:`lookalike.inference.quantize.quantize_embedder`); the agreement with float32 on
    held-out images is recorded in the file's ``lookalike.quantization`` metadata. A model
    that passes is also cached for ``--engine onnx-int8``. The pair head, when the model has
    one, is written in float32 beside it (``OUT.head.onnx``).

    Args:
        source: The model.
        path: Where to write the int8 embedding network.
        calibration: The folder of images to calibrate and check on.
        settings: Scheme and sampling (default :class:`~lookalike.inference.quantize.Int8Settings`).
        floor: The least agreement written (default :class:`~lookalike.inference.quantize.Floor`).
        force: Write it even below the floor (it is then never used by the engine).
        report: Called with the agreement before anything is written or refused.
        model, module: As for :func:`export_onnx`.

    Returns:
        The int8 model and its agreement.

    Raises:
        ExportError: Below the floor without ``force`` (nothing written), or quantisation fails.
        DataError: Too few readable images.
    """
    out = Path(path)
    head_out = X.head_path(out)
    base = standalone_export(source, model=model, module=module, head_file=head_out.name)
    built = Q.quantize_embedder(
        base.embedder, calibration, data=base.model, settings=settings, floor=floor
    )
    if report is not None:
        report(built.agreement)
    a = built.agreement
    if not a.passed and not force:
        raise ExportError(
            f"int8 model not written: mean cosine {a.mean_cosine:.4f} (floor "
            f"{a.floor.min_mean_cosine}), recall@10 change {a.recall_change:+.1f} points (floor "
            f"-{a.floor.max_recall_drop}); --force writes it anyway"
        )
    atomic_write_bytes(out, built.data, mode=0o644)
    if base.head is not None:
        atomic_write_bytes(head_out, base.head, mode=0o644)
    else:
        head_out.unlink(missing_ok=True)
    if a.passed and base.embedder.key:
        try:
            Q.store_cached(base.embedder.key, built, calibration)
        except OSError as exc:  # the file is written; only the engine's shortcut is lost
            warnings.warn(f"cannot cache the int8 model: {exc}", RuntimeWarning, stacklevel=2)
    return built
