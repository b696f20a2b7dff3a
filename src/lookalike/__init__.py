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
    from lookalike.backbones import build_backbone, list_backbones
    from lookalike.engine import Embedder, OnnxEmbedder, TorchEmbedder, load_embedder
    from lookalike.evaluate import EvalConfig, evaluate
    from lookalike.explain import explain
    from lookalike.head import PairHead
    from lookalike.images import load_image
    from lookalike.index import Index
    from lookalike.loader import EmbedResult, embed_paths
    from lookalike.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss
    from lookalike.model import SiameseModel
    from lookalike.preprocess import Preprocess
    from lookalike.scoring import Comparison, compare, embed_files

_LAZY = {
    "SiameseModel": "lookalike.model",
    "PairHead": "lookalike.head",
    "Preprocess": "lookalike.preprocess",
    "load_image": "lookalike.images",
    "compare": "lookalike.scoring",
    "Comparison": "lookalike.scoring",
    "embed_files": "lookalike.scoring",
    "Embedder": "lookalike.engine",
    "OnnxEmbedder": "lookalike.engine",
    "TorchEmbedder": "lookalike.engine",
    "load_embedder": "lookalike.engine",
    "EmbedResult": "lookalike.loader",
    "embed_paths": "lookalike.loader",
    "EvalConfig": "lookalike.evaluate",
    "evaluate": "lookalike.evaluate",
    "explain": "lookalike.explain",
    "Index": "lookalike.index",
    "build_backbone": "lookalike.backbones",
    "list_backbones": "lookalike.backbones",
    "ContrastiveLoss": "lookalike.losses",
    "TripletMarginLoss": "lookalike.losses",
    "PairBCELoss": "lookalike.losses",
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
