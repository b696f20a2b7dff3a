"""ONNX export of a model's embedding network, and the cache of exported files.

An exported file maps preprocessed images ``images`` (N, C, H, W) float32 to the final
embeddings ``embeddings`` (N, D) float32 — backbone, pooling, projection and L2
normalisation included; the batch axis is dynamic. The pair head is not in the file: the
ONNX engine runs it in NumPy (:class:`lookalike.inference.NumpyPairHead`).

Exports are cached as ``<cache>/onnx/<key>.onnx`` (``<cache>`` is
:func:`lookalike.model.weights.cache_dir`: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``).
The key is **the** model key, :meth:`lookalike.model.card.ModelCard.key`, computed without
torch for a model folder (its card and the sha256 of ``model.safetensors``) and for a
registry backbone with its pretrained weights and nothing on top (the torch-free facts of
:mod:`lookalike.model.backbones.specs`). Any other in-memory model is keyed by
:func:`module_key` (needs torch): its card and the bytes of every tensor of its state dict.
Every key holds :data:`~lookalike.model.card.EXPORT_FORMAT`, the opset and lookalike's
version, so an upgrade re-exports. Files are written through a temporary file and
:func:`os.replace` (a killed export never leaves a partial file), carry their key in the
ONNX metadata, and a file that does not load or carries another key counts as absent and
is exported again.

Standalone files (:func:`lookalike.inference.standalone.export_onnx`, also
``lookalike.inference.export_onnx``; ``lookalike export MODEL --onnx OUT.onnx``) are the
same graph with the model's whole description in the ONNX ``metadata_props``, so an ONNX
Runtime user needs nothing from lookalike (``session.get_modelmeta().custom_metadata_map``):

==========================  ==========================================================
``lookalike.format``        :data:`STANDALONE_FORMAT` (``lookalike.onnx/1``)
``lookalike.key``           the model key (sha256 hex; the engine cache's key)
``lookalike.name``          the model's name (a folder path or a backbone name)
``lookalike.preprocess``    JSON: ``input_size`` [H, W] px, ``channels`` (3 RGB, 1 gray),
                            ``mean``/``std`` (one per channel, on pixels scaled to [0, 1]),
                            ``resize`` (``squash``: whole image to H×W; ``center_crop``:
                            shorter side to size/``crop_fraction``, centre crop),
                            ``crop_fraction``, ``interpolation`` (bilinear/bicubic).
                            The input is ``(x / 255 − mean) / std``, NCHW float32.
``lookalike.input``         the input's name, ``images`` (N, C, H, W) float32
``lookalike.output``        the output's name, ``embeddings`` (N, D) float32
``lookalike.embedding_dim`` D
``lookalike.normalized``    ``true`` when the graph L2-normalises the embeddings
``lookalike.thresholds``    JSON ``{score: threshold}``: the model's calibrated thresholds
                            (``cosine``: same when ≥; ``euclidean``: same when ≤;
                            ``probability``: same when ≥; ``dedup``: cosine) or ``{}``
``lookalike.head``          the pair head's file name (``OUT.head.onnx``), or empty
``lookalike.version``       the lookalike version that wrote the file
``lookalike.quantization``  int8 files only: JSON with the scheme, the calibration and
                            the measured agreement with float32
                            (:mod:`lookalike.inference.quantize`)
==========================  ==========================================================

The pair head file (``OUT.head.onnx``) maps ``emb_a``, ``emb_b`` (N, D) float32 to
``probability`` (N,) float32, P(same); its metadata repeats ``lookalike.format``
(:data:`HEAD_FORMAT`), ``lookalike.key`` and ``lookalike.embedding_dim``.

Only :func:`export_model` and :func:`module_key` import torch (and the exporter needs the
``onnx`` package: ``pip install lookalike[onnx]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike._io import atomic_write_bytes
from lookalike._version import __version__
from lookalike.errors import ExportError
from lookalike.model.card import EXPORT_FORMAT, OPSET
from lookalike.model.weights import cache_dir

if TYPE_CHECKING:
    from lookalike.model.network import SiameseModel

__all__ = [
    "EXPORT_FORMAT",
    "INPUT_NAME",
    "META_KEY",
    "META_PREPROCESS",
    "OPSET",
    "OUTPUT_NAME",
    "ExportError",
    "cache_dir",
    "cache_path",
    "export_model",
    "head_onnx",
    "head_path",
    "module_key",
    "read_metadata",
    "with_metadata",
    "write_atomic",
]

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
HEAD_INPUTS = ("emb_a", "emb_b")
HEAD_OUTPUT = "probability"
META_FORMAT = "lookalike.format"
META_KEY = "lookalike.key"
META_NAME = "lookalike.name"
META_PREPROCESS = "lookalike.preprocess"
META_INPUT = "lookalike.input"
META_OUTPUT = "lookalike.output"
META_EMBEDDING_DIM = "lookalike.embedding_dim"
META_NORMALIZED = "lookalike.normalized"
META_THRESHOLDS = "lookalike.thresholds"
META_HEAD = "lookalike.head"
META_VERSION = "lookalike.version"
META_QUANTIZATION = "lookalike.quantization"
STANDALONE_FORMAT = "lookalike.onnx/1"
HEAD_FORMAT = "lookalike.onnx.head/1"


def module_key(model: SiameseModel) -> str:
    """The key of an in-memory model: its card and the bytes of all its tensors.

    Args:
        model: The model (any device).

    Returns:
        ``model.card().key(digest, in_memory=True)`` (sha256 hex), where ``digest`` hashes
        every tensor of the state dict with its name, dtype and shape.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return model.card().key(digest.hexdigest(), in_memory=True)


def cache_path(key: str) -> Path:
    """Return where the export with ``key`` is cached: ``<cache>/onnx/<key>.onnx``."""
    return cache_dir() / "onnx" / f"{key}.onnx"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader sees either the old file or the complete new one, never a partial write.

    Args:
        path: Destination (its folder is created).
        data: The bytes.
    """
    atomic_write_bytes(path, data, mode=0o644)  # the cache is as readable as ~/.cache


def export_model(model: SiameseModel, *, key: str | None = None) -> bytes:
    """Export a model's embedding network to ONNX (imports torch).

    The export traces the model on CPU in float32 with a batch of 2 probe images, keeps
    the batch axis dynamic, and records ``key`` and the preprocessing in the file's
    metadata. The model itself is left unchanged (device and train/eval mode restored).

    Args:
        model: The model.
        key: Cache key recorded in the metadata (``None``: an uncached export).

    Returns:
        The serialised ONNX model.

    Raises:
        ExportError: The ``onnx`` package is missing or the exporter fails.
    """
    import copy

    import torch

    onnx = _onnx()
    net = model if model.device.type == "cpu" else copy.deepcopy(model).cpu()
    was_training = net.training
    net.eval()
    height, width = model.preprocess.input_size
    probe = torch.zeros(2, model.preprocess.channels, height, width)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="lookalike-export-") as tmp,
            warnings.catch_warnings(),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            target = Path(tmp) / "model.onnx"
            torch.onnx.export(
                net,
                (probe,),
                str(target),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
            exported = target.read_bytes()
    except Exception as exc:  # the exporter raises many types on unsupported graphs
        raise ExportError(f"cannot export the model to ONNX: {exc}") from exc
    finally:
        net.train(was_training)
    proto = onnx.load_from_string(exported)
    meta = {
        META_PREPROCESS: json.dumps(model.preprocess.to_dict(), sort_keys=True),
        META_INPUT: INPUT_NAME,
        META_OUTPUT: OUTPUT_NAME,
        META_EMBEDDING_DIM: str(model.embedding_dim),
        META_NORMALIZED: "true" if model.normalize else "false",
        META_VERSION: __version__,
    }
    if key is not None:
        meta[META_KEY] = key
    for name, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = name, value
    data: bytes = proto.SerializeToString()
    return data


def _onnx() -> Any:
    """The ``onnx`` package.

    Raises:
        ExportError: It is not installed.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ExportError(
            "ONNX export needs the onnx package: pip install lookalike[onnx]"
        ) from exc
    return onnx


def with_metadata(data: bytes, meta: Mapping[str, str]) -> bytes:
    """Return the ONNX model ``data`` with ``meta`` set in its ``metadata_props``.

    Entries already present under the same keys are replaced; others are kept.

    Args:
        data: A serialised ONNX model.
        meta: Key → value (strings).

    Returns:
        The serialised model.

    Raises:
        ExportError: The ``onnx`` package is missing or ``data`` is not an ONNX model.
    """
    onnx = _onnx()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ExportError(f"not an ONNX model: {exc}") from exc
    kept = [(e.key, e.value) for e in proto.metadata_props if e.key not in meta]
    del proto.metadata_props[:]
    for name, value in [*kept, *meta.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = name, str(value)
    out: bytes = proto.SerializeToString()
    return out


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (needs ``onnx``; the weights are not loaded).

    Raises:
        ExportError: ``onnx`` is missing or the file is not an ONNX model.
    """
    onnx = _onnx()
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"cannot read ONNX model {path}: {exc}") from exc
    return {e.key: e.value for e in proto.metadata_props}


def head_path(path: str | os.PathLike[str]) -> Path:
    """Where the pair head of the standalone file ``path`` goes (``OUT.head.onnx``)."""
    file = Path(path)
    stem = file.name[: -len(".onnx")] if file.name.endswith(".onnx") else file.name
    return file.with_name(f"{stem}.head.onnx")


def head_onnx(
    layers: Sequence[tuple[np.ndarray, np.ndarray]], *, meta: Mapping[str, str] | None = None
) -> bytes:
    """Build the pair head as an ONNX graph (torch-free).

    ``emb_a``, ``emb_b`` (N, D) float32 → |emb_a − emb_b| → Gemm, Relu, …, Gemm → Sigmoid →
    ``probability`` (N,) float32, exactly :class:`lookalike.inference.NumpyPairHead`.

    Args:
        layers: (weight (out, in), bias (out,)) per Linear layer, first to last; the last
            has one output.
        meta: Metadata to record.

    Returns:
        The serialised ONNX model.

    Raises:
        ExportError: ``onnx`` is missing.
        ValueError: No layers, or the last has more than one output.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if not layers or np.asarray(layers[-1][0]).shape[0] != 1:
        raise ValueError("a pair head needs Linear layers ending in one output")
    dim = int(np.asarray(layers[0][0]).shape[1])
    a, b = HEAD_INPUTS
    nodes = [helper.make_node("Sub", [a, b], ["diff"]), helper.make_node("Abs", ["diff"], ["x0"])]
    inits = []
    for i, (weight, bias) in enumerate(layers):
        w, c = f"w{i}", f"b{i}"
        inits += [
            numpy_helper.from_array(np.asarray(weight, np.float32), w),
            numpy_helper.from_array(np.asarray(bias, np.float32), c),
        ]
        out = f"g{i}" if i < len(layers) - 1 else "logit2d"
        nodes.append(helper.make_node("Gemm", [f"x{i}", w, c], [out], transB=1))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"x{i + 1}"]))
    nodes += [
        helper.make_node("Sigmoid", ["logit2d"], ["p2d"]),
        helper.make_node("Squeeze", ["p2d", "axis1"], [HEAD_OUTPUT]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", dim]) for n in (a, b)]
    output = helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["batch"])
    graph = helper.make_graph(nodes, "lookalike_pair_head", inputs, [output], inits)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lookalike"
    )
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes (opset 17)
    onnx.checker.check_model(proto)
    for name, value in (meta or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = name, value
    data: bytes = proto.SerializeToString()
    return data
