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
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike._version import __version__
from lookalike.errors import BackboneError, ModelFolderError
from lookalike.imaging.preprocess import MAX_INPUT_SIDE, Preprocess
from lookalike.model.backbones.specs import find_spec
from lookalike.model.domain import DomainRecord

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_EMBEDDING_DIM",
    "MAX_INPUT_SIDE",
    "MAX_LAYERS",
    "MAX_WIDTH",
    "OPSET",
    "POOLINGS",
    "BackboneWeights",
    "ModelCard",
    "implied_tensors",
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

MAX_WIDTH = 16384
"""Largest feature size, projection width and pair-head width a card may name."""

MAX_LAYERS = 8
"""Most projection layers and pair-head hidden layers a card may name."""

MAX_EMBEDDING_DIM = 1 << 20
"""Largest embedding size (flatten pooling multiplies the feature size by the map's area)."""


_MAX_TEXT = 300

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
    "domain",
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
        domain: Statistics of the training embeddings, to tell when an input falls outside
            the domain the model was trained on (:mod:`lookalike.model.domain`); ``None`` for
            models saved without them (older folders, plain pretrained backbones).
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
    domain: DomainRecord | None = None
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
        """A copy whose preprocessing uses another input size (an int means a square).

        Another size moves the embeddings, so the copy has no domain record (it was measured
        at the card's own size).
        """
        preprocess = self.preprocess.with_input_size(size)
        domain = self.domain if preprocess == self.preprocess else None
        return replace(self, preprocess=preprocess, domain=domain)

    # -- JSON -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "config.json") -> ModelCard:
        """Read and check a parsed ``config.json``.

        Args:
            data: The parsed JSON object.
            where: What to call it in error messages (usually the file's path).

        Returns:
            The card; keys it does not know are kept in :attr:`extra`.

        Every field is checked before anything is built: its type, its enum, and a bound on
        every size (:data:`MAX_WIDTH`, :data:`MAX_LAYERS`, :data:`MAX_EMBEDDING_DIM`,
        :data:`MAX_INPUT_SIDE`); then the sizes must be the ones the architecture implies
        (the registry's feature size for a registered backbone, ``embedding_dim`` from the
        pooling and projection, the head's input). What the card implies for the tensors
        file is :func:`implied_tensors`.

        Raises:
            ModelFolderError: Not a lookalike model config, written by a newer lookalike, or a
                field missing, of the wrong kind, out of bounds, or inconsistent with the
                architecture (the message names the field).
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ModelFolderError(f"{where} is not a lookalike model config")
        read = _Reader(data, where)
        version = data.get("format_version", 0)
        if _is_int(version) and version > FORMAT_VERSION:
            raise ModelFolderError(
                f"{where} was written by a newer lookalike (format {_short(version)}); "
                "upgrade lookalike to read it"
            )
        version = read.integer("format_version", minimum=0, maximum=FORMAT_VERSION, default=0)
        pooling = read.text("pooling")
        if pooling not in POOLINGS:
            raise read.error("pooling", f"one of {', '.join(POOLINGS)}")
        backbone = read.text("backbone")
        embedding_dim = read.integer("embedding_dim", minimum=1, maximum=MAX_EMBEDDING_DIM)
        card = cls(
            backbone=backbone,
            feature_dim=read.integer("feature_dim", minimum=1, maximum=MAX_WIDTH),
            embedding_dim=embedding_dim,
            preprocess=read.preprocess(),
            pooling=pooling,
            projection=read.widths("projection"),
            normalize=read.flag("normalize"),
            head=None,  # read once the sizes are known to be the architecture's
            backbone_weights=read.backbone_weights(backbone),
            thresholds=read.thresholds(),
            metrics=read.mapping("metrics"),
            provenance=read.mapping("provenance"),
            domain=read.domain(embedding_dim),
            format=FORMAT,
            format_version=version,
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )
        _check_architecture(card, where)
        return replace(card, head=read.head(embedding_dim))

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
            **({} if self.domain is None else {"domain": self.domain.to_dict()}),
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
    """Typed, bounded reads of a parsed ``config.json``; every error names its field."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def error(self, name: str, expected: str) -> ModelFolderError:
        if name not in self.data:
            return ModelFolderError(f"{self.where} lacks the field {name!r} ({expected})")
        return ModelFolderError(
            f"{self.where}: field {name!r} must be {expected}, got {_short(self.data[name])}"
        )

    def _get(self, name: str, default: Any) -> Any:
        if name not in self.data and default is _REQUIRED:
            raise self.error(name, "required")
        return self.data.get(name, default)

    def text(self, name: str) -> str:
        value = self._get(name, _REQUIRED)
        if not _is_name(value):
            raise self.error(name, f"a non-empty string of printable characters (≤ {_MAX_TEXT})")
        return str(value)

    def integer(self, name: str, *, minimum: int, maximum: int, default: Any = None) -> int:
        value = self._get(name, _REQUIRED if default is None else default)
        if not _is_int(value) or not minimum <= value <= maximum:
            raise self.error(name, f"an integer ≥ {minimum} and ≤ {maximum}")
        return int(value)

    def flag(self, name: str) -> bool:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, bool):
            raise self.error(name, "true or false")
        return value

    def widths(self, name: str) -> tuple[int, ...]:
        value = self._get(name, _REQUIRED)
        if not _is_widths(value):
            raise self.error(
                name,
                f"a list of positive integers (at most {MAX_LAYERS} of them, each ≤ {MAX_WIDTH})",
            )
        return tuple(int(w) for w in value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self._get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, "an object")
        return dict(value)

    def preprocess(self) -> Preprocess:
        value = self._get("preprocess", _REQUIRED)
        try:
            return Preprocess.from_dict(value)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise self.error("preprocess", f"a preprocessing record ({exc})") from exc

    def head(self, embedding_dim: int) -> dict[str, Any] | None:
        value = self._get("head", _REQUIRED)
        if value is None:
            return None
        expected = (
            f"the pair head's settings or null: embedding_dim {embedding_dim} (the card's), "
            f"hidden (at most {MAX_LAYERS} widths ≤ {MAX_WIDTH}), dropout in [0, 1)"
        )
        if not isinstance(value, dict) or set(value) != {"embedding_dim", "hidden", "dropout"}:
            raise self.error("head", expected)
        dropout = value["dropout"]
        if (
            value["embedding_dim"] != embedding_dim
            or not _is_int(value["embedding_dim"])
            or not _is_widths(value["hidden"])
            or not _is_number(dropout)
            or not 0.0 <= dropout < 1.0
        ):
            raise self.error("head", expected)
        return {
            "embedding_dim": embedding_dim,
            "hidden": [int(h) for h in value["hidden"]],
            "dropout": float(dropout),
        }

    def backbone_weights(self, backbone: str) -> BackboneWeights:
        value = self._get("backbone_weights", _REQUIRED)
        expected = (
            "an object with stored (true or false), pretrained_sha256 (hex digits or null) and "
            "custom_class (a class name or null; required for backbone 'custom')"
        )
        if not isinstance(value, dict) or not isinstance(value.get("stored"), bool):
            raise self.error("backbone_weights", expected)
        sha, custom = value.get("pretrained_sha256"), value.get("custom_class")
        sha_ok = sha is None or (isinstance(sha, str) and _HEX.fullmatch(sha) is not None)
        custom_ok = (custom is None and backbone != "custom") or _is_name(custom)
        if not sha_ok or not custom_ok:
            raise self.error("backbone_weights", expected)
        return BackboneWeights(value["stored"], sha, custom)

    def domain(self, embedding_dim: int) -> DomainRecord | None:
        value = self._get("domain", None)
        if value is None:
            return None
        try:
            return DomainRecord.from_dict(value, embedding_dim)
        except ValueError as exc:
            raise self.error("domain", str(exc)) from exc

    def thresholds(self) -> dict[str, float]:
        value = self.mapping("thresholds")
        if not all(_is_number(v) for v in value.values()):
            raise self.error("thresholds", "an object of numbers (finite)")
        return {str(k): float(v) for k, v in value.items()}


def _check_architecture(card: ModelCard, where: str) -> None:
    """Cross-field checks: the sizes must be the ones the architecture implies.

    Raises:
        ModelFolderError: The backbone is unknown or its feature size is not the registry's,
            or ``embedding_dim`` is not what pooling and projection produce.
    """
    try:
        spec = find_spec(card.backbone) if card.backbone != "custom" else None
    except BackboneError as exc:
        raise ModelFolderError(f"{where}: field 'backbone': {exc}") from exc
    if spec is not None and card.feature_dim != spec.feature_dim:
        raise ModelFolderError(
            f"{where}: field 'feature_dim' must be {spec.feature_dim} for backbone "
            f"{card.backbone!r}, got {card.feature_dim}"
        )
    if card.projection:
        implied, how = card.projection[-1], "the last projection width"
    elif card.pooling != "flatten":
        implied, how = card.feature_dim, "feature_dim (no projection)"
    else:  # flatten: F × h × w, known once the backbone has seen an input
        height, width = card.preprocess.input_size
        if not card.feature_dim <= card.embedding_dim <= card.feature_dim * height * width:
            raise ModelFolderError(
                f"{where}: field 'embedding_dim' must be between feature_dim and feature_dim "
                f"× input height × width for flatten pooling, got {card.embedding_dim}"
            )
        return
    if card.embedding_dim != implied:
        raise ModelFolderError(
            f"{where}: field 'embedding_dim' must be {implied} ({how}), got {card.embedding_dim}"
        )


def implied_tensors(card: ModelCard) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors a card's own layers hold (everything but the backbone's).

    The names and shapes are those of :class:`lookalike.model.network.SiameseModel`'s state
    dict: ``pool.gem.p`` for GeM, ``projection.{i}.weight/bias`` for the projection MLP,
    ``head.layers.{i}.weight/bias`` for the pair head. A dimension of ``-1`` is not known from
    the card (the projection's input after flatten pooling).

    Args:
        card: The card.

    Returns:
        Tensor name → shape.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    if card.pooling == "gem":
        shapes["pool.gem.p"] = ()
    width = card.feature_dim if card.pooling != "flatten" else -1
    for i, out in enumerate(card.projection):  # Linear, ReLU, Linear, ...: Linears at 0, 2, ...
        shapes[f"projection.{2 * i}.weight"] = (out, width)
        shapes[f"projection.{2 * i}.bias"] = (out,)
        width = out
    if card.head is not None:
        index, width = 0, card.embedding_dim
        for i, out in enumerate(card.head["hidden"]):  # Linear, ReLU (, Dropout after the first)
            shapes[f"head.layers.{index}.weight"] = (out, width)
            shapes[f"head.layers.{index}.bias"] = (out,)
            index += 3 if i == 0 and card.head["dropout"] > 0 else 2
            width = out
        shapes[f"head.layers.{index}.weight"] = (1, width)
        shapes[f"head.layers.{index}.bias"] = (1,)
    return shapes


_REQUIRED: Any = object()
_HEX = re.compile(r"[0-9a-f]{8,64}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite JSON number (an integer as large as 10**400 is not a float)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53
    return isinstance(value, float) and math.isfinite(value)


def _is_widths(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_LAYERS
        and all(_is_int(w) and 1 <= w <= MAX_WIDTH for w in value)
    )


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TEXT and value.isprintable()


def _short(value: Any) -> str:
    """``repr(value)``, cut to one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
