"""lookalike: image similarity with Siamese networks.

The public API is imported lazily, so ``import lookalike`` is cheap and does not import
torch until a model is needed::

    import lookalike

    model = lookalike.SiameseModel.create()          # MobileNetV2, ImageNet weights, offline
    result = lookalike.compare("a.jpg", "b.jpg", model)
    print(result.cosine, result.euclidean)

Every everyday command is one function here: ``compare``, ``embed_files`` (embed),
``train_model`` (train), ``train_head_on_pairs`` (train-head), ``evaluate`` (eval),
``explain``, ``Index`` (index, search), ``find_duplicates`` (dedup). The rest lives one
level down, one concept per subpackage: :mod:`lookalike.imaging`, :mod:`lookalike.metrics`,
:mod:`lookalike.model`, :mod:`lookalike.data`, :mod:`lookalike.inference`,
:mod:`lookalike.index`, :mod:`lookalike.dedup`, :mod:`lookalike.training`,
:mod:`lookalike.evaluation`, :mod:`lookalike.viz`, :mod:`lookalike.cli`, :mod:`lookalike.server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports
from lookalike._version import __version__
from lookalike.errors import (
    BackboneError,
    DataError,
    ExportError,
    ImageError,
    IndexFolderError,
    LookalikeError,
    ModelFolderError,
    WeightsError,
)

if TYPE_CHECKING:
    from lookalike.data.labelled import LabelledImages
    from lookalike.data.pairs import PairList
    from lookalike.dedup.groups import DuplicateGroup, find_duplicates
    from lookalike.evaluation.evaluate import EvalConfig, EvalResult, evaluate
    from lookalike.imaging.files import iter_image_files
    from lookalike.imaging.images import load_image
    from lookalike.imaging.preprocess import Preprocess
    from lookalike.index.index import Hit, Index
    from lookalike.inference.comparison import Comparison, compare
    from lookalike.inference.embedder import Embedder
    from lookalike.inference.pipeline import EmbedResult, embed_files
    from lookalike.inference.select import load_embedder
    from lookalike.inference.source import ModelSource
    from lookalike.model.backbones import list_backbones
    from lookalike.model.card import ModelCard
    from lookalike.model.layers import PairHead
    from lookalike.model.network import SiameseModel
    from lookalike.training.config import TrainConfig
    from lookalike.training.fewshot import train_head_on_pairs
    from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss
    from lookalike.training.recipes import ModelSpec, train_model
    from lookalike.viz.explain import explain

_LAZY = {
    # models
    "SiameseModel": "lookalike.model.network",
    "ModelCard": "lookalike.model.card",
    "PairHead": "lookalike.model.layers",
    "Preprocess": "lookalike.imaging.preprocess",
    "list_backbones": "lookalike.model.backbones",
    # inference
    "ModelSource": "lookalike.inference.source",
    "load_embedder": "lookalike.inference.select",
    "Embedder": "lookalike.inference.embedder",
    "embed_files": "lookalike.inference.pipeline",
    "EmbedResult": "lookalike.inference.pipeline",
    "compare": "lookalike.inference.comparison",
    "Comparison": "lookalike.inference.comparison",
    # images and data
    "load_image": "lookalike.imaging.images",
    "iter_image_files": "lookalike.imaging.files",
    "LabelledImages": "lookalike.data.labelled",
    "PairList": "lookalike.data.pairs",
    # evaluation
    "evaluate": "lookalike.evaluation.evaluate",
    "EvalConfig": "lookalike.evaluation.evaluate",
    "EvalResult": "lookalike.evaluation.evaluate",
    # training
    "train_model": "lookalike.training.recipes",
    "ModelSpec": "lookalike.training.recipes",
    "TrainConfig": "lookalike.training.config",
    "train_head_on_pairs": "lookalike.training.fewshot",
    "ContrastiveLoss": "lookalike.training.losses",
    "TripletMarginLoss": "lookalike.training.losses",
    "PairBCELoss": "lookalike.training.losses",
    # search and dedup
    "Index": "lookalike.index.index",
    "Hit": "lookalike.index.index",
    "find_duplicates": "lookalike.dedup.groups",
    "DuplicateGroup": "lookalike.dedup.groups",
    # explanations
    "explain": "lookalike.viz.explain",
}

__all__ = [
    "BackboneError",
    "Comparison",
    "ContrastiveLoss",
    "DataError",
    "DuplicateGroup",
    "EmbedResult",
    "Embedder",
    "EvalConfig",
    "EvalResult",
    "ExportError",
    "Hit",
    "ImageError",
    "Index",
    "IndexFolderError",
    "LabelledImages",
    "LookalikeError",
    "ModelCard",
    "ModelFolderError",
    "ModelSource",
    "ModelSpec",
    "PairBCELoss",
    "PairHead",
    "PairList",
    "Preprocess",
    "SiameseModel",
    "TrainConfig",
    "TripletMarginLoss",
    "WeightsError",
    "__version__",
    "compare",
    "embed_files",
    "evaluate",
    "explain",
    "find_duplicates",
    "iter_image_files",
    "list_backbones",
    "load_embedder",
    "load_image",
    "train_head_on_pairs",
    "train_model",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
