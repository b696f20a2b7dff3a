"""Inference engines: the same embeddings from PyTorch or from ONNX Runtime.

* :class:`Embedder` — the protocol scoring, the loader and the CLI use
  (:class:`~lookalike.model.network.SiameseModel` satisfies it);
* :class:`TorchEmbedder` — a ``SiameseModel`` (on CUDA: fp16 autocast, pinned memory;
  float32 out);
* :class:`OnnxEmbedder` — the exported embedding network in ONNX Runtime on CPU, the pair
  head in NumPy (:class:`NumpyPairHead`); never imports torch;
* :func:`load_embedder` — picks one (``engine="auto"``: ONNX Runtime on CPU, torch on
  CUDA) and, on CPU with a warm export cache, builds it without importing torch;
* :mod:`lookalike.inference.export` — the ONNX export and its cache keys.
"""

from __future__ import annotations

from lookalike.inference.embedder import BaseEmbedder, Embedder
from lookalike.inference.export import ExportError
from lookalike.inference.onnx_engine import NumpyPairHead, OnnxEmbedder
from lookalike.inference.select import ENGINES, EngineName, load_embedder
from lookalike.inference.torch_engine import TorchEmbedder

__all__ = [
    "ENGINES",
    "BaseEmbedder",
    "Embedder",
    "EngineName",
    "ExportError",
    "NumpyPairHead",
    "OnnxEmbedder",
    "TorchEmbedder",
    "load_embedder",
]
