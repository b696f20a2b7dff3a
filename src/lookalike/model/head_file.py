"""Head files: a trained pair head on its own, in one safetensors file.

A head file moves a :class:`~lookalike.model.layers.PairHead` between the places that train
and use one: the static page (``lookalike export MODEL --web``, trained in the browser with
TensorFlow.js), Python (:func:`HeadFile.from_pair_head`), ``lookalike compare --model MODEL
--head FILE``, ``lookalike serve --head FILE`` and :func:`lookalike.inference.heads.attach_head`.
It is refused by a model whose key differs from the one it was trained on, because its
input is that model's embeddings.

Layout (safetensors, little-endian float32, no pickle)::

    tensors        the PairHead's state dict, names as in PyTorch:
                   layers.0.weight (256, D), layers.0.bias (256,)     Dense 256, ReLU
                   (layers.2 is the Dropout 0.25: no tensors)
                   layers.3.weight (64, 256), layers.3.bias (64,)     Dense 64, ReLU
                   layers.5.weight (1, 64),   layers.5.bias (1,)      Dense 1 → sigmoid = P(same)
    __metadata__   (strings)  format        "lookalike.head"
                              format_version "1"
                              model_key     the model key (sha256 hex) of the embedding model
                              head          JSON {"embedding_dim": D, "hidden": [256, 64],
                                            "dropout": 0.25} (PairHead's constructor arguments)
                              thresholds    JSON {"probability": t}: same when P(same) ≥ t
                              metrics       JSON {...} (training accuracy etc., optional)
                              how           free text: who trained it, on how many pairs

Weights are ``(out, in)`` as in ``torch.nn.Linear`` (TensorFlow.js kernels are the transpose).
Reading and writing never import torch; only :meth:`HeadFile.from_pair_head` and
:meth:`HeadFile.pair_head` do.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike._io import atomic_write_bytes
from lookalike.errors import ModelFolderError

if TYPE_CHECKING:
    from lookalike.model.layers import PairHead
    from lookalike.model.network import SiameseModel

__all__ = [
    "HEAD_FILE_FORMAT",
    "HEAD_FILE_VERSION",
    "HeadFile",
    "linear_names",
    "read_head_file",
    "write_head_file",
]

HEAD_FILE_FORMAT = "lookalike.head"
HEAD_FILE_VERSION = 1
MAX_HEAD_BYTES = 256 * 2**20
"""Largest head file read (a 1280-d seed-000 head is about 1.4 MB)."""

_KEY = re.compile(r"^[0-9a-f]{64}$")


def linear_names(hidden: Sequence[int], dropout: float) -> list[str]:
    """The state-dict prefixes of a PairHead's Linear layers, first to last.

    ``PairHead`` is ``Linear, ReLU, [Dropout], Linear, ReLU, …, Linear`` in one
    ``nn.Sequential`` named ``layers``; the Dropout (after the first hidden layer only, when
    ``dropout > 0``) takes an index too. Seed 000's head gives ``layers.0``, ``layers.3``,
    ``layers.5``.
    """
    names, index = [], 0
    for i in range(len(hidden)):
        names.append(f"layers.{index}")
        index += 2 + (1 if i == 0 and dropout > 0 else 0)
    names.append(f"layers.{index}")
    return names


@dataclass(frozen=True)
class HeadFile:
    """A pair head with the key of the model whose embeddings it compares.

    Attributes:
        model_key: The model key (sha256 hex) of the embedding model it was trained on.
        embedding_dim: D, the size of the embeddings it compares.
        hidden: Widths of the hidden layers (seed 000: (256, 64)).
        dropout: Dropout after the first hidden layer (inactive at inference).
        tensors: The PairHead state dict: name → float32 array (weights (out, in)).
        threshold: P(same) at or above which a pair is "same".
        metrics: Training figures, as the trainer reported them.
        how: Who trained it, and on what.
    """

    model_key: str
    embedding_dim: int
    hidden: tuple[int, ...]
    dropout: float
    tensors: Mapping[str, np.ndarray]
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    how: str = ""

    def __post_init__(self) -> None:
        where = "head file"
        if not _KEY.match(self.model_key):
            raise ModelFolderError(f"{where}: model_key must be a sha256 hex digest")
        if self.embedding_dim < 1 or not self.hidden or min(self.hidden) < 1:
            raise ModelFolderError(f"{where}: sizes must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelFolderError(f"{where}: dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.threshold < 1.0:
            raise ModelFolderError(f"{where}: threshold must be in (0, 1), got {self.threshold}")
        expected = self.shapes()
        if set(self.tensors) != set(expected):
            raise ModelFolderError(
                f"{where}: tensors {sorted(self.tensors)} are not a PairHead's {sorted(expected)}"
            )
        for name, shape in expected.items():
            array = self.tensors[name]
            if array.shape != shape or array.dtype != np.float32:
                raise ModelFolderError(
                    f"{where}: {name} is {array.dtype} {array.shape}, expected float32 {shape}"
                )
            if not np.isfinite(array).all():
                raise ModelFolderError(f"{where}: {name} holds NaN or infinite values")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name → shape, from the configuration."""
        widths = [self.embedding_dim, *self.hidden, 1]
        out: dict[str, tuple[int, ...]] = {}
        for i, name in enumerate(linear_names(self.hidden, self.dropout)):
            out[f"{name}.weight"] = (widths[i + 1], widths[i])
            out[f"{name}.bias"] = (widths[i + 1],)
        return out

    def config(self) -> dict[str, Any]:
        """PairHead's constructor arguments (``PairHead(**config)``)."""
        return {
            "embedding_dim": self.embedding_dim,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
        }

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight (out, in), bias (out,)) per Linear layer, first to last."""
        return [
            (np.asarray(self.tensors[f"{n}.weight"]), np.asarray(self.tensors[f"{n}.bias"]))
            for n in linear_names(self.hidden, self.dropout)
        ]

    def check_key(self, key: str | None, *, what: str = "this model") -> None:
        """Refuse a model whose key differs from the one the head was trained on.

        Raises:
            ModelFolderError: ``key`` is ``None`` (a model without a key, e.g. random
                weights) or differs from :attr:`model_key`.
        """
        if key != self.model_key:
            raise ModelFolderError(
                f"the head was trained on the embeddings of model {self.model_key[:12]}…, "
                f"not {what} ({(key or 'no key')[:12]}…): train a head for this model"
            )

    # -- bytes ----------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The safetensors file (see the module notes)."""
        from safetensors.numpy import save

        metadata = {
            "format": HEAD_FILE_FORMAT,
            "format_version": str(HEAD_FILE_VERSION),
            "model_key": self.model_key,
            "head": json.dumps(self.config()),
            "thresholds": json.dumps({"probability": self.threshold}),
            "metrics": json.dumps(self.metrics),
            "how": self.how,
        }
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.tensors.items()}
        data: bytes = save(tensors, metadata=metadata)
        return data

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "head file") -> HeadFile:
        """Parse and check a head file.

        Raises:
            ModelFolderError: Not a safetensors file, not a lookalike head file, a newer
                format, or a field or tensor that is missing or malformed (named).
        """
        from safetensors.numpy import load

        metadata = _metadata(data, where)
        if metadata.get("format") != HEAD_FILE_FORMAT:
            raise ModelFolderError(
                f"{where} is not a lookalike head file (format {HEAD_FILE_FORMAT!r})"
            )
        try:
            version = int(metadata.get("format_version", ""))
        except ValueError:
            version = -1
        if not 1 <= version <= HEAD_FILE_VERSION:
            raise ModelFolderError(
                f"{where} has head format version {metadata.get('format_version')!r}; this "
                f"lookalike reads up to {HEAD_FILE_VERSION} (upgrade lookalike)"
            )
        try:
            config = json.loads(metadata["head"])
            thresholds = json.loads(metadata.get("thresholds", "{}"))
            metrics = json.loads(metadata.get("metrics", "{}"))
            threshold = float(thresholds.get("probability", 0.5))
            embedding_dim = int(config["embedding_dim"])
            hidden = tuple(int(h) for h in config["hidden"])
            dropout = float(config["dropout"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFolderError(f"{where}: malformed metadata ({exc})") from exc
        if not math.isfinite(threshold) or not isinstance(metrics, dict):
            raise ModelFolderError(f"{where}: malformed thresholds or metrics")
        try:
            tensors = load(data)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFolderError(f"{where} is not a readable safetensors file: {exc}") from exc
        try:
            return cls(
                model_key=str(metadata.get("model_key", "")),
                embedding_dim=embedding_dim,
                hidden=hidden,
                dropout=dropout,
                tensors=tensors,
                threshold=threshold,
                metrics=metrics,
                how=str(metadata.get("how", "")),
            )
        except ModelFolderError as exc:
            raise ModelFolderError(str(exc).replace("head file", where, 1)) from exc

    # -- torch ----------------------------------------------------------------------------------

    @classmethod
    def from_pair_head(
        cls,
        head: PairHead,
        *,
        model_key: str,
        threshold: float = 0.5,
        metrics: Mapping[str, Any] | None = None,
        how: str = "",
    ) -> HeadFile:
        """A head trained in Python as a head file (imports torch).

        Args:
            head: The trained head.
            model_key: The key of the model whose embeddings it compares
                (``load_embedder(MODEL).key``).
            threshold: P(same) threshold (the model's ``thresholds["probability"]``).
            metrics, how: Recorded as they are.
        """
        tensors = {
            k: v.detach().cpu().float().contiguous().numpy() for k, v in head.state_dict().items()
        }
        return cls(
            model_key=model_key,
            embedding_dim=head.embedding_dim,
            hidden=head.hidden,
            dropout=head.dropout,
            tensors=tensors,
            threshold=threshold,
            metrics=dict(metrics or {}),
            how=how,
        )

    def pair_head(self) -> PairHead:
        """The head as a :class:`~lookalike.model.layers.PairHead` in eval mode (imports torch)."""
        import torch

        from lookalike.model.layers import PairHead

        head = PairHead(self.embedding_dim, self.hidden, self.dropout)
        head.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.tensors.items()})
        return head.eval()

    def attach_to(self, model: SiameseModel, *, key: str | None) -> None:
        """Give ``model`` this head and its P(same) threshold, after checking the key.

        Args:
            model: The model (its head, if any, is replaced).
            key: ``model``'s key (:attr:`lookalike.inference.BaseEmbedder.key`).

        Raises:
            ModelFolderError: Another model's head, or another embedding size.
        """
        self.check_key(key)
        if model.embedding_dim != self.embedding_dim:
            raise ModelFolderError(
                f"the head compares {self.embedding_dim}-d embeddings; the model makes "
                f"{model.embedding_dim}-d ones"
            )
        model.head = self.pair_head().to(model.device)
        model.thresholds["probability"] = self.threshold


def _metadata(data: bytes, where: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (strings)."""
    if len(data) < 8:
        raise ModelFolderError(f"{where} is not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(len(data) - 8, 2**24):
        raise ModelFolderError(f"{where} is not a safetensors file (bad header size)")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{where} is not a safetensors file ({exc})") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFolderError(f"{where} is not a lookalike head file (no metadata)")
    return metadata


def read_head_file(path: str | os.PathLike[str]) -> HeadFile:
    """Read and check a head file (torch-free).

    Raises:
        ModelFolderError: Missing, too large, or not a valid head file (see
            :meth:`HeadFile.from_bytes`).
    """
    file = Path(path)
    try:
        if file.stat().st_size > MAX_HEAD_BYTES:
            raise ModelFolderError(f"{file} is too large for a head file")
        data = file.read_bytes()
    except OSError as exc:
        raise ModelFolderError(f"cannot read head file {file}: {exc.strerror or exc}") from exc
    return HeadFile.from_bytes(data, where=str(file))


def write_head_file(path: str | os.PathLike[str], head: HeadFile) -> Path:
    """Write a head file atomically (readable by all, like a model folder's files).

    Returns:
        The path written.
    """
    file = Path(path)
    atomic_write_bytes(file, head.to_bytes(), mode=0o644)
    return file
