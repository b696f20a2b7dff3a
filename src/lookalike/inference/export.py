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

Only :func:`export_model` and :func:`module_key` import torch (and the exporter needs the
``onnx`` package: ``pip install lookalike[onnx]``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike._io import atomic_write_bytes
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
    "module_key",
    "write_atomic",
]

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
META_KEY = "lookalike.key"
META_PREPROCESS = "lookalike.preprocess"


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
