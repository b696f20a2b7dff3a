"""ONNX export of a model's embedding network, and the cache of exported files.

An exported file maps preprocessed images ``images`` (N, C, H, W) float32 to the final
embeddings ``embeddings`` (N, D) float32 — backbone, pooling, projection and L2
normalisation included; the batch axis is dynamic. The pair head is not in the file: the
ONNX engine runs it in NumPy (:class:`lookalike.inference.NumpyPairHead`).

Exports are cached as ``<cache>/onnx/<key>.onnx`` (``<cache>`` is
:func:`lookalike.model.weights.cache_dir`: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``). The
key is the sha256 of a canonical JSON description of the model, computed **without torch**
where possible so that a warm cache never imports it:

* a model folder (:func:`folder_key`): the ``config.json`` parts that define the network
  (backbone, feature size, pooling, projection, normalisation, head, backbone weights —
  which carry the pretrained sha256 when the backbone is stored by reference), the
  effective preprocessing, and the sha256 of ``model.safetensors``;
* a registry backbone built with its pretrained weights and nothing trained on top
  (:func:`pretrained_key`): backbone name, weights sha256, preprocessing;
* any other in-memory model (:func:`module_key`, needs torch): its config and the bytes of
  every tensor of its state dict.

Every description also holds :data:`EXPORT_FORMAT`, the opset and lookalike's version, so
an upgrade re-exports. Files are written through a temporary file and :func:`os.replace`
(a killed export never leaves a partial file), carry their key in the ONNX metadata, and a
file that does not load or carries another key counts as absent and is exported again.

Only :func:`export_model` and :func:`module_key` import torch (and the exporter needs the
``onnx`` package: ``pip install lookalike[onnx]``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike._io import atomic_write_bytes, sha256_file
from lookalike._version import __version__
from lookalike.errors import ExportError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model.weights import cache_dir

if TYPE_CHECKING:
    from lookalike.model.network import SiameseModel

EXPORT_FORMAT = 1
"""Bumped whenever the exported graph changes for the same model (invalidates the cache)."""

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
META_KEY = "lookalike.key"
META_PREPROCESS = "lookalike.preprocess"

PRETRAINED: dict[str, tuple[str, Preprocess]] = {
    "mobilenet_v2": (
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        Preprocess(),
    ),
    "efficientnet_lite0": (
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    ),
}
"""Torch-free copy of the registry facts (weights sha256, default preprocessing) of the
backbones with offline weights, so their cache key needs no torch. ``lookalike.model.backbones``
imports torch at module level; ``tests/test_engine.py`` checks this table against it.
Other registry backbones are keyed after building them (torch is imported)."""

ARCH_KEYS: tuple[str, ...] = (
    "backbone",
    "feature_dim",
    "pooling",
    "projection",
    "normalize",
    "embedding_dim",
    "head",
    "backbone_weights",
)
"""The ``config.json`` fields that define a folder's network (thresholds, metrics and
provenance do not change the graph and are left out of the key)."""

_PLAIN_ARCH: dict[str, Any] = {"pooling": "avg", "projection": [], "normalize": True}


def _digest(description: dict[str, Any]) -> str:
    """Return the sha256 hex digest of a canonical JSON description.

    Args:
        description: JSON-serialisable model description.

    Returns:
        64 hex characters.
    """
    base = {"export_format": EXPORT_FORMAT, "opset": OPSET, "lookalike": __version__}
    text = json.dumps({**base, **description}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_key(folder: Path, config: dict[str, Any], preprocess: Preprocess) -> str:
    """Cache key of a model folder (torch-free).

    Args:
        folder: The model folder (holds ``model.safetensors``).
        config: Its parsed ``config.json``.
        preprocess: The preprocessing in effect (an ``--image-size`` override changes it).

    Returns:
        The key (sha256 hex).

    Raises:
        OSError: ``model.safetensors`` cannot be read.
    """
    arch = {k: config.get(k) for k in ARCH_KEYS}
    tensors = sha256_file(folder / "model.safetensors")
    return _digest(
        {"kind": "folder", "arch": arch, "preprocess": preprocess.to_dict(), "tensors": tensors}
    )


def pretrained_key(backbone: str, weights_sha256: str, preprocess: Preprocess) -> str:
    """Cache key of a registry backbone with pretrained weights and nothing on top (torch-free).

    The model is ``SiameseModel.create(backbone)``: average pooling, no projection, no
    head, L2-normalised.

    Args:
        backbone: Registry name.
        weights_sha256: Full sha256 of the pretrained weights file.
        preprocess: The preprocessing in effect (input size included).

    Returns:
        The key (sha256 hex).
    """
    return _digest(
        {
            "kind": "pretrained",
            "backbone": backbone,
            "weights_sha256": weights_sha256,
            "preprocess": preprocess.to_dict(),
            **_PLAIN_ARCH,
        }
    )


def module_key(model: SiameseModel) -> str:
    """Cache key of an in-memory model: its config and the bytes of all its tensors.

    Args:
        model: The model (any device).

    Returns:
        The key (sha256 hex).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return _digest(
        {
            "kind": "module",
            "config": model.config(),
            "custom_class": model.custom_class,
            "tensors": digest.hexdigest(),
        }
    )


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

    try:
        import onnx
    except ImportError as exc:
        raise ExportError(
            "ONNX export needs the onnx package: pip install lookalike[onnx]"
        ) from exc
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
    meta = {META_PREPROCESS: json.dumps(model.preprocess.to_dict(), sort_keys=True)}
    if key is not None:
        meta[META_KEY] = key
    for name, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = name, value
    data: bytes = proto.SerializeToString()
    return data
