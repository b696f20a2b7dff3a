"""int8 models: static quantisation calibrated on the user's images, and its agreement check.

A float32 export (:mod:`lookalike.inference.export`) is quantised with
``onnxruntime.quantization.quantize_static``: QDQ format, int8 weights per output channel,
uint8 activations with ranges from MinMax calibration on the user's images; convolutions,
matrix products, residual additions and their ReLU/ReLU6 are quantised, except the two kinds of
convolution that lose the most to one activation range per tensor: the first one (it reads
the image) and depthwise ones (one filter per channel). The pooling and the L2 normalisation
stay float32. On mobilenet_v2 (``benchmarks/bench_int8.py``, 100 held-out photos) quantising
ReLU6 with its convolution took the mean cosine to float32 from 0.896 to 0.953 and keeping
those convolutions float to 0.971 (worst 0.923, from 0.665), at the same ~2× speed; the
percentile and entropy calibrations, QOperator and per-tensor weights did no better.

**Calibration and held-out images.** :func:`sample_images` shuffles a folder's images with a
seed and takes disjoint sets: up to ``held_out`` images (100 by default) to check on, then up
to ``count`` (200) to calibrate on. The check never sees a calibration image.

**Agreement** (:class:`Agreement`), measured on the held-out images: the cosine between each
image's float32 and int8 embeddings (mean and worst), and recall@10 of a search: for each
held-out image, its true nearest neighbour is the float32 nearest neighbour among the other
held-out images; recall@10 is the share of images whose true neighbour is among the 10 results
of the int8 search. It is measured for int8 queries against the float32 embeddings (an index
built in float32 and searched in int8) and for int8 against int8 (an index built in int8);
float32 scores 100% on both by construction, so the change is ``100 × (1 − recall)`` points,
and the worse of the two is held against the floor. A model below :class:`Floor` is refused
unless forced; the figures are written into the int8 file's metadata
(``lookalike.quantization``) either way.

**The engine's cache.** The int8 file of a model calibrated on a set of images is cached as
``<cache>/onnx/<key>.int8-<calibration>.onnx`` (``<calibration>``: a digest of the sampled
images' bytes and the settings), and ``<cache>/onnx/<key>.int8.json`` points at the newest
one with the folder it was calibrated on, so ``--engine onnx-int8`` finds it without being
told the folder again (:func:`lookalike.inference.select.load_embedder`).

Needs ``onnx`` and ``onnxruntime`` (``pip install lookalike[onnx]``); never imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lookalike._io import atomic_write_bytes
from lookalike.errors import DataError, ExportError, LookalikeError
from lookalike.imaging.files import iter_image_files
from lookalike.inference import export as X
from lookalike.inference.onnx_engine import OnnxEmbedder
from lookalike.inference.pipeline import embed_files
from lookalike.model.weights import cache_dir

__all__ = [
    "DEFAULT_CALIBRATION",
    "DEFAULT_HELD_OUT",
    "MIN_HELD_OUT",
    "Agreement",
    "Floor",
    "Int8Model",
    "Int8Settings",
    "calibration_digest",
    "find_cached",
    "int8_cache_path",
    "measure_agreement",
    "quantize_embedder",
    "recorded_agreement",
    "sample_images",
    "sensitive_nodes",
    "store_cached",
]

DEFAULT_CALIBRATION = 200
"""Images calibrated on by default."""
DEFAULT_HELD_OUT = 100
"""Held-out images the agreement is measured on by default."""
MIN_HELD_OUT = 12
"""Fewest held-out images accepted (recall@10 needs more than 11 to mean anything)."""
RECALL_K = 10
QUANTIZED_OPS = ("Conv", "Clip", "Relu", "MatMul", "Gemm", "Add")
"""What is quantised: convolutions, matrix products, residual additions and the activations
after them (quantising ``Clip``/``Relu`` lets a convolution's output range be the clipped one:
on mobilenet_v2 mean cosine 0.896 → 0.953 and 1.6× → 1.9× faster than without)."""
INT8_FORMAT = 2
"""Version of the int8 scheme; part of the calibration digest, so a change re-quantises."""


@dataclass(frozen=True)
class Int8Settings:
    """How a model is quantised and checked.

    Attributes:
        count: Most calibration images (sampled from the folder).
        held_out: Most held-out images the agreement is measured on.
        seed: Seed of the sampling (the same folder and seed sample the same images).
        quant_format: ``"qdq"`` (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime
            fuses into int8 kernels) or ``"qoperator"`` (QLinearConv and friends).
        per_channel: int8 weights with one scale per output channel (else per tensor).
        method: Calibration of the activation ranges: ``"minmax"``, ``"percentile"`` or
            ``"entropy"``.
        keep_sensitive_float: Keep the first and the depthwise convolutions in float32.
        batch_size: Images per calibration and check batch.
    """

    count: int = DEFAULT_CALIBRATION
    held_out: int = DEFAULT_HELD_OUT
    seed: int = 0
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    per_channel: bool = True
    method: Literal["minmax", "percentile", "entropy"] = "minmax"
    keep_sensitive_float: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.count < 1:
            raise LookalikeError(f"the calibration count must be at least 1, got {self.count}")
        if self.held_out < MIN_HELD_OUT:
            raise LookalikeError(
                f"the held-out count must be at least {MIN_HELD_OUT}, got {self.held_out}"
            )
        if self.quant_format not in ("qdq", "qoperator"):
            raise LookalikeError(f"unknown quantisation format {self.quant_format!r}")
        if self.method not in ("minmax", "percentile", "entropy"):
            raise LookalikeError(f"unknown calibration method {self.method!r}")
        if self.batch_size < 1:
            raise LookalikeError(f"batch_size must be at least 1, got {self.batch_size}")

    def scheme(self) -> dict[str, Any]:
        """What determines the int8 graph besides the images (recorded and digested)."""
        return {
            "dtype": "int8",
            "format": self.quant_format,
            "per_channel": self.per_channel,
            "method": self.method,
            "activations": "uint8",
            "weights": "int8",
            "ops": list(QUANTIZED_OPS),
            "float32": ["first conv", "depthwise conv"] if self.keep_sensitive_float else [],
            "version": INT8_FORMAT,
        }


@dataclass(frozen=True)
class Floor:
    """The least agreement an int8 model must reach to be written or used.

    Attributes:
        min_mean_cosine: Lowest mean cosine between float32 and int8 embeddings.
        max_recall_drop: Largest drop of recall@10, in percentage points.
    """

    min_mean_cosine: float = 0.99
    max_recall_drop: float = 1.0

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_mean_cosine <= 1.0:
            raise LookalikeError(f"the cosine floor must be in [-1, 1], got {self.min_mean_cosine}")
        if not 0.0 <= self.max_recall_drop <= 100.0:
            raise LookalikeError(
                f"the recall drop must be in [0, 100] points, got {self.max_recall_drop}"
            )


@dataclass(frozen=True)
class Agreement:
    """How closely an int8 model follows its float32 original, on held-out images.

    Attributes:
        images: Held-out images measured (none of them calibrated on).
        calibration_images: Images calibrated on.
        mean_cosine: Mean cosine between the float32 and int8 embedding of an image.
        worst_cosine: The lowest of those cosines.
        recall_vs_float: recall@10 (0..1) of int8 queries against float32 embeddings, with
            float32 nearest neighbours as the truth (float32 itself scores 1).
        recall_int8: recall@10 of int8 queries against int8 embeddings, same truth.
        floor: The floor it was held against.
    """

    images: int
    calibration_images: int
    mean_cosine: float
    worst_cosine: float
    recall_vs_float: float
    recall_int8: float
    floor: Floor = field(default_factory=Floor)

    @property
    def recall_drop(self) -> float:
        """The larger of the two recall@10 drops, in percentage points."""
        return 100.0 * (1.0 - min(self.recall_vs_float, self.recall_int8))

    @property
    def recall_change(self) -> float:
        """``-recall_drop`` (points; never ``-0.0``), as the figures print it."""
        return 0.0 - self.recall_drop + 0.0

    @property
    def passed(self) -> bool:
        """Whether it reaches the floor."""
        return (
            self.mean_cosine >= self.floor.min_mean_cosine
            and self.recall_drop <= self.floor.max_recall_drop + 1e-9
        )

    def lines(self) -> list[str]:
        """The agreement in words, one figure per line."""
        verdict = "passes" if self.passed else "FAILS"
        return [
            f"int8 vs float32 on {self.images} held-out images "
            f"(calibrated on {self.calibration_images} others):",
            f"  cosine: mean {self.mean_cosine:.4f}, worst {self.worst_cosine:.4f}",
            f"  recall@{RECALL_K} (float32 nearest neighbour found): "
            f"int8 queries vs float32 {100 * self.recall_vs_float:.1f}%, "
            f"int8 vs int8 {100 * self.recall_int8:.1f}% (float32: 100%); "
            f"change {self.recall_change:+.1f} points",
            f"  floor: mean cosine >= {self.floor.min_mean_cosine}, recall@{RECALL_K} drop <= "
            f"{self.floor.max_recall_drop} points: {verdict}",
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields plus ``recall_drop_points`` and ``passed``."""
        data = asdict(self)
        data["recall_drop_points"] = self.recall_drop
        data["passed"] = self.passed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Agreement:
        """Inverse of :meth:`to_dict` (derived fields are recomputed).

        Raises:
            LookalikeError: Missing or malformed fields.
        """
        try:
            return cls(
                images=int(data["images"]),
                calibration_images=int(data["calibration_images"]),
                mean_cosine=float(data["mean_cosine"]),
                worst_cosine=float(data["worst_cosine"]),
                recall_vs_float=float(data["recall_vs_float"]),
                recall_int8=float(data["recall_int8"]),
                floor=Floor(**data["floor"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LookalikeError(f"not an int8 agreement record: {exc}") from exc


@dataclass
class Int8Model:
    """A quantised model and how it agrees with float32.

    Attributes:
        data: The serialised int8 ONNX model, its metadata including ``lookalike.quantization``.
        agreement: The check on held-out images.
        digest: The calibration digest (:func:`calibration_digest`).
        record: The ``lookalike.quantization`` metadata (JSON-ready).
    """

    data: bytes
    agreement: Agreement
    digest: str
    record: dict[str, Any]


def sample_images(
    folder: str | os.PathLike[str], settings: Int8Settings
) -> tuple[list[str], list[str]]:
    """Sample disjoint calibration and held-out images from a folder, reproducibly.

    The folder's images (recursively, sorted) are shuffled with ``settings.seed``; the first
    ``min(held_out, n // 3)`` are held out (at least :data:`MIN_HELD_OUT`), the next
    ``count`` are calibrated on.

    Returns:
        (calibration paths, held-out paths).

    Raises:
        DataError: Not a folder, or fewer than ``MIN_HELD_OUT + 1`` images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of calibration images")
    paths = sorted(str(p) for p in iter_image_files(root))
    if len(paths) < MIN_HELD_OUT + 1:
        raise DataError(
            f"{root} has {len(paths)} images; int8 calibration needs at least "
            f"{MIN_HELD_OUT + 1} (some to calibrate on, {MIN_HELD_OUT} or more to check on)"
        )
    random.Random(settings.seed).shuffle(paths)
    held = max(MIN_HELD_OUT, min(settings.held_out, len(paths) // 3))
    return paths[held : held + settings.count], paths[:held]


def calibration_digest(calibration: Sequence[str], settings: Int8Settings) -> str:
    """A digest of the calibration images' bytes (in order) and the int8 scheme (hex)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(settings.scheme(), sort_keys=True).encode())
    for path in calibration:
        digest.update(hashlib.blake2b(Path(path).read_bytes(), digest_size=16).digest())
    return digest.hexdigest()


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over preprocessed batches."""

    def __init__(self, batches: Iterator[np.ndarray]) -> None:
        self._batches = batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {X.INPUT_NAME: batch}


def _batches(embedder: OnnxEmbedder, paths: Sequence[str], size: int) -> Iterator[np.ndarray]:
    """Preprocessed float32 batches (size, C, H, W) of the readable ones among ``paths``.

    Every batch has ``size`` images (the histogram calibrators need equal shapes): the last
    one is filled up with the first images again.
    """
    chunk: list[np.ndarray] = []
    first: list[np.ndarray] = []
    for path in paths:
        try:
            image = embedder.preprocess.load(path)
        except LookalikeError:
            continue  # an unreadable file does not calibrate anything
        chunk.append(image)
        if len(first) < size:
            first.append(image)
        if len(chunk) == size:
            yield np.stack(chunk).astype(np.float32)
            chunk = []
    if chunk:
        filler = (first * size)[: size - len(chunk)]
        yield np.stack(chunk + filler).astype(np.float32)


def sensitive_nodes(data: bytes) -> list[str]:
    """Names of the convolutions kept float32: the one reading the input, and depthwise ones.

    A convolution is depthwise when its ``group`` equals its input channels (its weight is
    (C, 1, kh, kw) with ``group`` = C > 1).
    """
    onnx = X._onnx()
    proto = onnx.load_from_string(data)
    shapes = {init.name: tuple(init.dims) for init in proto.graph.initializer}
    names = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1], ())
        depthwise = group > 1 and len(weight) == 4 and weight[1] == 1
        if node.input[0] == X.INPUT_NAME or depthwise:
            names.append(node.name)
    return names


def _quantize(data: bytes, batches: Iterator[np.ndarray], settings: Int8Settings) -> bytes:
    """Run ``quantize_static`` on a serialised float32 model; returns the int8 model."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    quiet = _Quiet()
    root = logging.getLogger()
    root.addFilter(quiet)  # its advice to pre-process: the graph is already optimised
    with (
        tempfile.TemporaryDirectory(prefix="lookalike-int8-") as tmp,
        contextlib.redirect_stdout(io.StringIO()),  # the histogram calibrators print
    ):
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(data)
        try:
            quantize_static(
                str(source),
                str(target),
                _Reader(batches),
                quant_format=QuantFormat.QDQ
                if settings.quant_format == "qdq"
                else QuantFormat.QOperator,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=settings.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[settings.method],
                nodes_to_exclude=sensitive_nodes(data) if settings.keep_sensitive_float else [],
                extra_options={"CalibTensorRangeSymmetric": False},
            )
        except Exception as exc:  # onnxruntime raises many types for unsupported graphs
            raise ExportError(f"int8 quantisation failed: {exc}") from exc
        finally:
            root.removeFilter(quiet)
        return target.read_bytes()


class _Quiet(logging.Filter):
    """Drops onnxruntime.quantization's advice to run its pre-processing first."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: np.ndarray = rows / np.maximum(norms, 1e-12)
    return out


def _recall(truth: np.ndarray, queries: np.ndarray, database: np.ndarray) -> float:
    """Share of rows whose ``truth`` neighbour is among the top 10 of ``queries @ database``
    (each row's own entry excluded)."""
    scores = queries @ database.T
    np.fill_diagonal(scores, -np.inf)
    k = min(RECALL_K, len(database) - 1)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean([truth[i] in top[i] for i in range(len(truth))]))


def measure_agreement(
    float_emb: np.ndarray,
    int8_emb: np.ndarray,
    *,
    calibration_images: int,
    floor: Floor | None = None,
) -> Agreement:
    """Compare the float32 and int8 embeddings of the same held-out images.

    Args:
        float_emb: float32 embeddings (N, D) of the held-out images, N ≥ 2.
        int8_emb: The int8 model's embeddings (N, D) of the same images, same order.
        calibration_images: How many images were calibrated on (recorded).
        floor: The floor to hold it against (default :class:`Floor`).

    Returns:
        The agreement (see the module docstring for the recall@10 definition).
    """
    if float_emb.shape != int8_emb.shape or len(float_emb) < 2:
        raise ValueError(
            f"need two equal (N>=2, D) arrays, got {float_emb.shape}, {int8_emb.shape}"
        )
    a, b = _unit(float_emb.astype(np.float64)), _unit(int8_emb.astype(np.float64))
    cosines = np.sum(a * b, axis=1)
    scores = a @ a.T
    np.fill_diagonal(scores, -np.inf)
    truth = np.argmax(scores, axis=1)
    return Agreement(
        images=len(a),
        calibration_images=calibration_images,
        mean_cosine=float(cosines.mean()),
        worst_cosine=float(cosines.min()),
        recall_vs_float=_recall(truth, b, a),
        recall_int8=_recall(truth, b, b),
        floor=floor or Floor(),
    )


def quantize_embedder(
    embedder: OnnxEmbedder,
    calibration_dir: str | os.PathLike[str],
    *,
    data: bytes | None = None,
    settings: Int8Settings | None = None,
    floor: Floor | None = None,
) -> Int8Model:
    """Quantise a float32 ONNX engine's model, calibrated and checked on a folder's images.

    Args:
        embedder: The float32 model in ONNX Runtime (the reference the check compares with).
        calibration_dir: The folder sampled for calibration and held-out images
            (:func:`sample_images`).
        data: The float32 model to quantise (default: the embedder's own bytes); a standalone
            export's bytes keep its metadata in the int8 file.
        settings: The scheme and the sampling (default :class:`Int8Settings`).
        floor: The agreement floor (default :class:`Floor`).

    Returns:
        The int8 model with its agreement, whether or not it passes the floor (the caller
        decides; :attr:`Agreement.passed`).

    Raises:
        DataError: Too few readable images in the folder.
        ExportError: Quantisation fails.
    """
    settings = settings or Int8Settings()
    floor = floor or Floor()
    calibration, held_out = sample_images(calibration_dir, settings)
    float_result = embed_files(embedder, held_out, batch_size=settings.batch_size)
    readable = list(float_result.paths)
    if len(readable) < MIN_HELD_OUT:
        raise DataError(f"only {len(readable)} held-out images could be read; need {MIN_HELD_OUT}")
    seen = [0]

    def counted() -> Iterator[np.ndarray]:
        for batch in _batches(embedder, calibration, settings.batch_size):
            seen[0] = min(seen[0] + len(batch), len(calibration))
            yield batch

    if not calibration:
        raise DataError(f"{calibration_dir} leaves no images to calibrate on after the held-out")
    int8 = _quantize(data if data is not None else embedder.onnx_bytes(), counted(), settings)
    if seen[0] == 0:
        raise DataError(f"none of the calibration images in {calibration_dir} could be read")
    candidate = OnnxEmbedder.from_bytes(int8, embedder.preprocess)
    int8_emb = embed_files(candidate, readable, batch_size=settings.batch_size).embeddings
    agreement = measure_agreement(
        float_result.embeddings, int8_emb, calibration_images=seen[0], floor=floor
    )
    digest = calibration_digest(calibration, settings)
    record = {
        **settings.scheme(),
        "calibration": {
            "images": seen[0],
            "seed": settings.seed,
            "digest": digest,
            "folder": str(Path(calibration_dir).absolute()),
        },
        "agreement": agreement.to_dict(),
    }
    int8 = X.with_metadata(int8, {X.META_QUANTIZATION: json.dumps(record, sort_keys=True)})
    return Int8Model(int8, agreement, digest, record)


# -- the engine's cache -------------------------------------------------------------------------


def int8_cache_path(key: str, digest: str) -> Path:
    """``<cache>/onnx/<key>.int8-<digest>.onnx``."""
    return cache_dir() / "onnx" / f"{key}.int8-{digest}.onnx"


def _pointer(key: str) -> Path:
    return cache_dir() / "onnx" / f"{key}.int8.json"


def store_cached(key: str, model: Int8Model, calibration_dir: str | os.PathLike[str]) -> Path:
    """Cache an int8 model that passed its check, and point the model's key at it.

    Returns:
        The cached file.

    Raises:
        LookalikeError: It did not pass (a forced model is never used by the engine).
        OSError: The cache cannot be written.
    """
    if not model.agreement.passed:
        raise LookalikeError("an int8 model below the agreement floor is not cached")
    path = int8_cache_path(key, model.digest)
    atomic_write_bytes(path, model.data, mode=0o644)
    pointer = {"file": path.name, "calibration": str(Path(calibration_dir).absolute())}
    atomic_write_bytes(_pointer(key), json.dumps(pointer).encode(), mode=0o644)
    return path


def find_cached(key: str) -> tuple[Path | None, str | None]:
    """The newest cached int8 file of a model (or ``None``) and the folder it was calibrated on.

    The file is returned only when it exists and its recorded check passed.
    """
    try:
        pointer = json.loads(_pointer(key).read_text())
        file, folder = str(pointer["file"]), str(pointer["calibration"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    path = _pointer(key).parent / Path(file).name
    if not path.is_file():
        return None, folder
    return path, folder


def recorded_agreement(meta: dict[str, str]) -> Agreement | None:
    """The agreement recorded in an int8 file's metadata, or ``None`` when absent/malformed."""
    try:
        record = json.loads(meta[X.META_QUANTIZATION])
        return Agreement.from_dict(record["agreement"])
    except (KeyError, ValueError, TypeError, LookalikeError):
        return None
