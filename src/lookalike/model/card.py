"""The model card: a model folder's ``config.json`` as a typed record, and **the** model key.

:class:`ModelCard` is the schema of ``config.json`` (format, architecture, preprocessing,
backbone weights, thresholds, metrics, provenance). It reads and writes that JSON
(:meth:`ModelCard.from_dict` / :meth:`ModelCard.to_dict`, unknown keys kept), checks every
field (a :class:`~lookalike.errors.ModelFolderError` names the one that is wrong), and
computes the model key (:meth:`ModelCard.key`): the sha256 of a canonical JSON description of
the network, its effective preprocessing and a digest of its tensors. The key names the
cached ONNX export (:mod:`lookalike.inference.export`) and the model an index was built with,
so every caller that means the same model gets the same key. There are three descriptions,
kept exactly as the export cache has always used them so that existing caches stay valid:

* ``"folder"`` — a model folder: the network fields plus ``backbone_weights``, the effective
  preprocessing, and the sha256 of ``model.safetensors``;
* ``"pretrained"`` — a registry backbone with its pretrained weights and nothing trained on
  top: backbone name, weights sha256, preprocessing (no tensors file to hash);
* ``"module"`` — an in-memory model whose tensors were hashed one by one
  (:func:`lookalike.inference.export.module_key`, the only part that needs torch).

Each description also holds :data:`EXPORT_FORMAT`, :data:`OPSET` and lookalike's version, so
an upgrade re-exports. This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike._version import __version__
from lookalike.errors import ModelFolderError
from lookalike.imaging.preprocess import Preprocess

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT",
    "FORMAT_VERSION",
    "OPSET",
    "POOLINGS",
    "BackboneWeights",
    "ModelCard",
]

FORMAT = "lookalike.model"
FORMAT_VERSION = 1
"""The ``format`` and newest ``format_version`` of ``config.json`` this lookalike reads."""

EXPORT_FORMAT = 1
"""Bumped whenever the exported graph changes for the same model (changes every key)."""

OPSET = 17
"""The ONNX opset exports use (part of every key)."""

POOLINGS: tuple[str, ...] = ("avg", "gem", "max", "flatten")
"""Global poolings a card may name (see :class:`lookalike.model.layers.Pool`)."""

_KNOWN = (
    "format",
    "format_version",
    "backbone",
    "feature_dim",
    "pooling",
    "projection",
    "normalize",
    "embedding_dim",
    "preprocess",
    "head",
    "backbone_weights",
    "thresholds",
    "metrics",
    "provenance",
)


@dataclass(frozen=True)
class BackboneWeights:
    """How a folder holds its backbone's weights.

    Attributes:
        stored: The backbone's tensors are in ``model.safetensors``; ``False`` means they are
            the registry's pretrained weights, referenced by ``pretrained_sha256``.
        pretrained_sha256: sha256 of the pretrained weights the backbone started from, if any.
        custom_class: ``module.QualName`` of a user's own backbone class (backbone ``custom``).
    """

    stored: bool = True
    pretrained_sha256: str | None = None
    custom_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored as ``backbone_weights``."""
        return {
            "stored": self.stored,
            "pretrained_sha256": self.pretrained_sha256,
            "custom_class": self.custom_class,
        }


@dataclass(frozen=True)
class ModelCard:
    """A model's ``config.json``: what the network is, how images are prepared, what is known.

    Attributes:
        backbone: Registry name, ``timm:<name>``, or ``custom`` (a user's own module).
        feature_dim: Channels F of the backbone's feature map.
        embedding_dim: Size D of the embeddings.
        preprocess: The preprocessing the model expects.
        pooling: One of :data:`POOLINGS`.
        projection: Widths of the projection MLP after pooling; empty for none.
        normalize: Embeddings are L2-normalised.
        head: The pair head's constructor arguments (``PairHead.config()``), or ``None``.
        backbone_weights: How the backbone's weights are held.
        thresholds: Calibrated decision thresholds by score name (``{"cosine": 0.8}``).
        metrics: Evaluation figures recorded with the model.
        provenance: How and when the model was made and saved.
        format: Always :data:`FORMAT`.
        format_version: The schema version the card was written with.
        extra: Keys of the JSON this lookalike does not know; written back unchanged.
    """

    backbone: str
    feature_dim: int
    embedding_dim: int
    preprocess: Preprocess
    pooling: str = "avg"
    projection: tuple[int, ...] = ()
    normalize: bool = True
    head: dict[str, Any] | None = None
    backbone_weights: BackboneWeights = field(default_factory=BackboneWeights)
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def pretrained_backbone(
        cls, backbone: str, *, feature_dim: int, weights_sha256: str, preprocess: Preprocess
    ) -> ModelCard:
        """The card of ``SiameseModel.create(backbone)``: pretrained weights, nothing on top.

        Average pooling, no projection, no head, L2-normalised; the backbone is referenced
        by its weights' sha256, so :meth:`key` needs no tensors digest.
        """
        return cls(
            backbone=backbone,
            feature_dim=feature_dim,
            embedding_dim=feature_dim,
            preprocess=preprocess,
            backbone_weights=BackboneWeights(stored=False, pretrained_sha256=weights_sha256),
        )

    def with_input_size(self, size: int | tuple[int, int]) -> ModelCard:
        """A copy whose preprocessing uses another input size (an int means a square)."""
        return replace(self, preprocess=self.preprocess.with_input_size(size))

    # -- JSON -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "config.json") -> ModelCard:
        """Read and check a parsed ``config.json``.

        Args:
            data: The parsed JSON object.
            where: What to call it in error messages (usually the file's path).

        Returns:
            The card; keys it does not know are kept in :attr:`extra`.

        Raises:
            ModelFolderError: Not a lookalike model config, written by a newer lookalike, or a
                field missing or of the wrong kind (the message names the field).
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ModelFolderError(f"{where} is not a lookalike model config")
        read = _Reader(data, where)
        version = read.integer("format_version", minimum=0, default=0)
        if version > FORMAT_VERSION:
            raise ModelFolderError(
                f"{where} was written by a newer lookalike (format {version}); "
                "upgrade lookalike to read it"
            )
        pooling = read.text("pooling")
        if pooling not in POOLINGS:
            raise read.error("pooling", f"one of {', '.join(POOLINGS)}")
        return cls(
            backbone=read.text("backbone"),
            feature_dim=read.integer("feature_dim", minimum=1),
            embedding_dim=read.integer("embedding_dim", minimum=1),
            preprocess=read.preprocess(),
            pooling=pooling,
            projection=read.widths("projection"),
            normalize=read.flag("normalize"),
            head=read.head(),
            backbone_weights=read.backbone_weights(),
            thresholds=read.thresholds(),
            metrics=read.mapping("metrics"),
            provenance=read.mapping("provenance"),
            format=FORMAT,
            format_version=version,
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` object (inverse of :meth:`from_dict`)."""
        network = self.network()
        head = network.pop("head")
        return {
            "format": self.format,
            "format_version": self.format_version,
            **network,
            "preprocess": self.preprocess.to_dict(),
            "head": head,
            "backbone_weights": self.backbone_weights.to_dict(),
            "thresholds": dict(self.thresholds),
            "metrics": dict(self.metrics),
            "provenance": dict(self.provenance),
            **self.extra,
        }

    def network(self) -> dict[str, Any]:
        """The fields that define the network's graph, as JSON (no weights, no preprocessing)."""
        return {
            "backbone": self.backbone,
            "feature_dim": self.feature_dim,
            "pooling": self.pooling,
            "projection": list(self.projection),
            "normalize": self.normalize,
            "embedding_dim": self.embedding_dim,
            "head": None if self.head is None else dict(self.head),
        }

    # -- the model key ----------------------------------------------------------------------

    @property
    def is_plain_pretrained(self) -> bool:
        """A registry backbone's pretrained weights with nothing trained on top."""
        return (
            self.backbone_weights.pretrained_sha256 is not None
            and self.backbone != "custom"
            and (self.pooling, self.projection, self.normalize, self.head)
            == ("avg", (), True, None)
        )

    def key(self, tensors_sha256: str | None = None, *, in_memory: bool = False) -> str:
        """**The** model key (64 hex characters), computed without torch.

        The key covers the network fields, the backbone weights record, the preprocessing
        in effect (an ``--image-size`` override changes it) and a digest of the tensors,
        plus :data:`EXPORT_FORMAT`, :data:`OPSET` and lookalike's version. Thresholds,
        metrics and provenance do not change the network and are left out.

        Args:
            tensors_sha256: The digest of the model's tensors: the sha256 of the folder's
                ``model.safetensors`` (``folder.tensors_sha256``), or with ``in_memory`` the
                tensor-by-tensor digest of a state dict. ``None`` for a plain pretrained
                backbone (:attr:`is_plain_pretrained`), whose tensors are the pretrained
                weights named by ``backbone_weights.pretrained_sha256``.
            in_memory: ``tensors_sha256`` digests an in-memory state dict, not a file.

        Returns:
            The sha256 hex digest of the canonical description.

        Raises:
            ValueError: No tensors digest for a card that is not a plain pretrained backbone.
        """
        if tensors_sha256 is None:
            if not self.is_plain_pretrained:
                raise ValueError(
                    "the key of a model with trained tensors needs their sha256; only a plain "
                    "pretrained backbone is keyed by its weights' sha256 alone"
                )
            description: dict[str, Any] = {
                "kind": "pretrained",
                "backbone": self.backbone,
                "weights_sha256": self.backbone_weights.pretrained_sha256,
                "preprocess": self.preprocess.to_dict(),
                "pooling": self.pooling,
                "projection": list(self.projection),
                "normalize": self.normalize,
            }
        elif in_memory:
            description = {
                "kind": "module",
                "config": {**self.network(), "preprocess": self.preprocess.to_dict()},
                "custom_class": self.backbone_weights.custom_class,
                "tensors": tensors_sha256,
            }
        else:
            description = {
                "kind": "folder",
                "arch": {**self.network(), "backbone_weights": self.backbone_weights.to_dict()},
                "preprocess": self.preprocess.to_dict(),
                "tensors": tensors_sha256,
            }
        base = {"export_format": EXPORT_FORMAT, "opset": OPSET, "lookalike": __version__}
        text = json.dumps({**base, **description}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Reader:
    """Typed reads of a parsed ``config.json``; every error names its field."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def error(self, name: str, expected: str) -> ModelFolderError:
        if name not in self.data:
            return ModelFolderError(f"{self.where} lacks the field {name!r} ({expected})")
        return ModelFolderError(
            f"{self.where}: field {name!r} must be {expected}, got {self.data[name]!r}"
        )

    def _get(self, name: str, default: Any) -> Any:
        if name not in self.data and default is _REQUIRED:
            raise self.error(name, "required")
        return self.data.get(name, default)

    def text(self, name: str) -> str:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, str) or not value:
            raise self.error(name, "a non-empty string")
        return value

    def integer(self, name: str, *, minimum: int, default: Any = None) -> int:
        value = self._get(name, _REQUIRED if default is None else default)
        if not _is_int(value) or value < minimum:
            raise self.error(name, f"an integer ≥ {minimum}")
        return int(value)

    def flag(self, name: str) -> bool:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, bool):
            raise self.error(name, "true or false")
        return value

    def widths(self, name: str) -> tuple[int, ...]:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, list) or not all(_is_int(w) and w >= 1 for w in value):
            raise self.error(name, "a list of positive integers")
        return tuple(int(w) for w in value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self._get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, "an object")
        return dict(value)

    def preprocess(self) -> Preprocess:
        value = self._get("preprocess", _REQUIRED)
        try:
            if not isinstance(value, dict):
                raise TypeError("not an object")
            return Preprocess.from_dict(value)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise self.error("preprocess", f"a preprocessing record ({exc})") from exc

    def head(self) -> dict[str, Any] | None:
        value = self._get("head", _REQUIRED)
        if value is not None and not isinstance(value, dict):
            raise self.error("head", "the pair head's settings or null")
        return None if value is None else dict(value)

    def backbone_weights(self) -> BackboneWeights:
        value = self._get("backbone_weights", _REQUIRED)
        expected = "an object with stored, pretrained_sha256 and custom_class"
        if not isinstance(value, dict) or not isinstance(value.get("stored"), bool):
            raise self.error("backbone_weights", expected)
        sha, custom = value.get("pretrained_sha256"), value.get("custom_class")
        if not all(v is None or isinstance(v, str) for v in (sha, custom)):
            raise self.error("backbone_weights", expected)
        return BackboneWeights(value["stored"], sha, custom)

    def thresholds(self) -> dict[str, float]:
        value = self.mapping("thresholds")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
            raise self.error("thresholds", "an object of numbers")
        return {str(k): float(v) for k, v in value.items()}


_REQUIRED: Any = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
