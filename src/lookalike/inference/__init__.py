"""Inference: a model in, embeddings out, fast.

* :class:`ModelSource` — where a model comes from (a folder, or a backbone plus options), with
  a JSON round trip; the CLI, the server and an index's record of its model all use it;
* :func:`load_embedder` — a source as an engine, chosen by :func:`choose_engine` (the one
  engine policy: ONNX Runtime on CPU, torch on CUDA); :func:`build_model` — its PyTorch model;
* :class:`Embedder` — the one embedder contract (:class:`BaseEmbedder` implements it;
  :data:`EmbedBatch` is one forward pass):
  :class:`TorchEmbedder` (a ``SiameseModel``; fp16 autocast on CUDA) and
  :class:`OnnxEmbedder` (the exported network in ONNX Runtime, the pair head in NumPy:
  :class:`NumpyPairHead`; never imports torch);
* :func:`embed_files` — many files through an engine with parallel decoding, unreadable files
  reported (:class:`EmbedResult`; :func:`iter_embed_files` hands over each forward pass);
  :func:`save_embeddings`;
* :func:`compare` — two images → :class:`Comparison` (cosine, euclidean, P(same), verdict);
* :mod:`lookalike.inference.export` — the ONNX export and its cache keys;
  :func:`export_onnx` — a model as standalone ONNX files (:mod:`lookalike.inference.standalone`).

Names are imported lazily: ``import lookalike.inference`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.errors import ExportError
    from lookalike.inference.comparison import Comparison, compare
    from lookalike.inference.embedder import BaseEmbedder, EmbedBatch, Embedder
    from lookalike.inference.onnx_engine import NumpyPairHead, OnnxEmbedder
    from lookalike.inference.pipeline import (
        EmbedResult,
        embed_files,
        iter_embed_files,
        save_embeddings,
    )
    from lookalike.inference.select import (
        ENGINES,
        EngineName,
        build_model,
        choose_engine,
        load_embedder,
    )
    from lookalike.inference.source import ModelSource
    from lookalike.inference.standalone import export_onnx
    from lookalike.inference.torch_engine import TorchEmbedder

_LAZY = {
    "ModelSource": "lookalike.inference.source",
    "ENGINES": "lookalike.inference.select",
    "EngineName": "lookalike.inference.select",
    "build_model": "lookalike.inference.select",
    "choose_engine": "lookalike.inference.select",
    "load_embedder": "lookalike.inference.select",
    "BaseEmbedder": "lookalike.inference.embedder",
    "EmbedBatch": "lookalike.inference.embedder",
    "Embedder": "lookalike.inference.embedder",
    "ExportError": "lookalike.errors",
    "NumpyPairHead": "lookalike.inference.onnx_engine",
    "OnnxEmbedder": "lookalike.inference.onnx_engine",
    "TorchEmbedder": "lookalike.inference.torch_engine",
    "EmbedResult": "lookalike.inference.pipeline",
    "embed_files": "lookalike.inference.pipeline",
    "iter_embed_files": "lookalike.inference.pipeline",
    "save_embeddings": "lookalike.inference.pipeline",
    "Comparison": "lookalike.inference.comparison",
    "compare": "lookalike.inference.comparison",
    "export_onnx": "lookalike.inference.standalone",
}

__all__ = [
    "ENGINES",
    "BaseEmbedder",
    "Comparison",
    "EmbedBatch",
    "EmbedResult",
    "Embedder",
    "EngineName",
    "ExportError",
    "ModelSource",
    "NumpyPairHead",
    "OnnxEmbedder",
    "TorchEmbedder",
    "build_model",
    "choose_engine",
    "compare",
    "embed_files",
    "export_onnx",
    "iter_embed_files",
    "load_embedder",
    "save_embeddings",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
