"""lookalike: image similarity with Siamese networks.

The public API is imported lazily, so ``import lookalike`` is cheap and does not import
torch until a model is needed::

    import lookalike

    model = lookalike.SiameseModel.create()          # MobileNetV2, ImageNet weights, offline
    result = lookalike.compare("a.jpg", "b.jpg", model)
    print(result.cosine, result.euclidean)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lookalike._version import __version__
from lookalike.errors import (
    BackboneError,
    DataError,
    ImageError,
    LookalikeError,
    ModelFolderError,
    WeightsError,
)

if TYPE_CHECKING:
    from lookalike.evaluation.evaluate import EvalConfig, evaluate
    from lookalike.imaging.images import load_image
    from lookalike.imaging.preprocess import Preprocess
    from lookalike.index.index import Index
    from lookalike.inference import Embedder, OnnxEmbedder, TorchEmbedder, load_embedder
    from lookalike.inference.compare import Comparison, compare, embed_files
    from lookalike.inference.pipeline import EmbedResult, embed_paths
    from lookalike.model.backbones import build_backbone, list_backbones
    from lookalike.model.layers import PairHead
    from lookalike.model.network import SiameseModel
    from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss
    from lookalike.viz.explain import explain

_LAZY = {
    "SiameseModel": "lookalike.model.network",
    "PairHead": "lookalike.model.layers",
    "Preprocess": "lookalike.imaging.preprocess",
    "load_image": "lookalike.imaging.images",
    "compare": "lookalike.inference.compare",
    "Comparison": "lookalike.inference.compare",
    "embed_files": "lookalike.inference.compare",
    "Embedder": "lookalike.inference",
    "OnnxEmbedder": "lookalike.inference",
    "TorchEmbedder": "lookalike.inference",
    "load_embedder": "lookalike.inference",
    "EmbedResult": "lookalike.inference.pipeline",
    "embed_paths": "lookalike.inference.pipeline",
    "EvalConfig": "lookalike.evaluation.evaluate",
    "evaluate": "lookalike.evaluation.evaluate",
    "explain": "lookalike.viz.explain",
    "Index": "lookalike.index.index",
    "build_backbone": "lookalike.model.backbones",
    "list_backbones": "lookalike.model.backbones",
    "ContrastiveLoss": "lookalike.training.losses",
    "TripletMarginLoss": "lookalike.training.losses",
    "PairBCELoss": "lookalike.training.losses",
}

__all__ = [
    "BackboneError",
    "Comparison",
    "ContrastiveLoss",
    "DataError",
    "EmbedResult",
    "Embedder",
    "EvalConfig",
    "ImageError",
    "Index",
    "LookalikeError",
    "ModelFolderError",
    "OnnxEmbedder",
    "PairBCELoss",
    "PairHead",
    "Preprocess",
    "SiameseModel",
    "TorchEmbedder",
    "TripletMarginLoss",
    "WeightsError",
    "__version__",
    "build_backbone",
    "compare",
    "embed_files",
    "embed_paths",
    "evaluate",
    "explain",
    "list_backbones",
    "load_embedder",
    "load_image",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
