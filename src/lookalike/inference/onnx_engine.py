"""The ONNX Runtime engine: the exported embedding network on CPU, the pair head in NumPy.

Nothing here imports torch except :meth:`OnnxEmbedder.from_model` (which exports a model
it is given) and its check of the export against torch.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike._limits import check_threads
from lookalike._progress import done, showing
from lookalike.errors import ExportError, LookalikeError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference import export as X
from lookalike.inference.embedder import BaseEmbedder

if TYPE_CHECKING:
    import onnxruntime

    from lookalike.model.network import SiameseModel


class NumpyPairHead:
    """Seed 000's pair head in NumPy: |e_a − e_b| → Dense ReLU → … → Dense(1) → sigmoid.

    Dropout is inactive at inference, so the layers are the head's Linear layers in order
    with ReLU between them (:class:`lookalike.model.layers.PairHead`).

    Args:
        layers: (weight (out, in), bias (out,)) per Linear layer, first to last.
    """

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        if not layers or layers[-1][0].shape[0] != 1:
            raise ValueError("a pair head needs Linear layers ending in one output")
        self.layers = [
            (np.asarray(w, np.float32).T.copy(), np.asarray(b, np.float32)) for w, b in layers
        ]

    @classmethod
    def from_state(cls, state: Mapping[str, Any], prefix: str = "head.layers.") -> NumpyPairHead:
        """Build from a state dict (``head.layers.<i>.weight``/``.bias``, NumPy or tensors).

        Raises:
            ValueError: No head tensors under ``prefix``.
        """
        indices = sorted(
            {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
        )
        layers = [
            (np.asarray(state[f"{prefix}{i}.weight"]), np.asarray(state[f"{prefix}{i}.bias"]))
            for i in indices
        ]
        return cls(layers)

    def probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """P(same) in [0, 1], float32 (N,), for embeddings (N, D), (N, D)."""
        x = np.abs(np.atleast_2d(emb_a).astype(np.float32) - np.atleast_2d(emb_b))
        for i, (weight_t, bias) in enumerate(self.layers):
            x = x @ weight_t + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        logit = x[:, 0].astype(np.float64)
        small = np.exp(-np.abs(logit))  # never overflows
        out: np.ndarray = np.where(logit >= 0, 1.0 / (1.0 + small), small / (1.0 + small))
        return out.astype(np.float32)


def _session(model: str | bytes, threads: int | None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (``None``: one per core).

    Idle intra-op threads sleep instead of spin-waiting: the pipelined loader's decode
    threads need those cycles, and on shared 2-core machines this was faster for inference
    alone too (about 87 vs 72 images/s for mobilenet_v2, batch 32).

    Raises:
        LookalikeError: ``threads`` out of range (see :mod:`lookalike._limits`).
    """
    import onnxruntime as ort

    check_threads(threads)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxEmbedder(BaseEmbedder):
    """The exported embedding network in ONNX Runtime (CPU) and the pair head in NumPy.

    Build one with :meth:`open` (a file), :meth:`from_model` (export a model, cached by
    its key) or :func:`load_embedder`.

    Args:
        session: The ONNX Runtime session of an export from :mod:`lookalike.inference.export`.
        preprocess: The preprocessing the export expects.
        name, key, thresholds: As for :class:`BaseEmbedder`.
        head: The pair head, if the model has one.
        path: The file the session was loaded from, if any.
    """

    engine = "onnx"

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        preprocess: Preprocess,
        *,
        name: str = "model",
        key: str | None = None,
        thresholds: Mapping[str, float] | None = None,
        head: NumpyPairHead | None = None,
        path: Path | None = None,
    ) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if [i.name for i in inputs] != [X.INPUT_NAME] or outputs[0].name != X.OUTPUT_NAME:
            raise LookalikeError(f"{path or 'the ONNX model'} is not a lookalike export")
        expected = [preprocess.channels, *preprocess.input_size]
        if list(inputs[0].shape[1:]) != expected:
            raise LookalikeError(
                f"{path or 'the ONNX model'} takes input {inputs[0].shape[1:]}, "
                f"the preprocessing makes {expected}"
            )
        super().__init__(
            name=name,
            preprocess=preprocess,
            embedding_dim=int(outputs[0].shape[1]),
            thresholds=thresholds,
            device="cpu",
            key=key,
        )
        self.session = session
        self.head = head
        self.path = path
        self._data: bytes | None = None  # the serialised model when it has no file

    def onnx_bytes(self) -> bytes:
        """The serialised ONNX model this engine runs (from its file, or kept in memory).

        Raises:
            LookalikeError: It has neither (a session built by hand from bytes).
        """
        if self._data is not None:
            return self._data
        if self.path is None:
            raise LookalikeError("this ONNX engine was built without a file or bytes")
        return self.path.read_bytes()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        preprocess: Preprocess | None = None,
        *,
        threads: int | None = None,
        expect_key: str | None = None,
        **kwargs: Any,
    ) -> OnnxEmbedder:
        """Load an exported file.

        Args:
            path: The ``.onnx`` file.
            preprocess: Its preprocessing; ``None`` reads the one recorded in the file.
            threads: ONNX Runtime intra-op threads (``None``: one per physical core).
            expect_key: Refuse a file whose recorded key differs (a stale cache entry).
            **kwargs: ``name``, ``thresholds``, ``head`` (see the class).

        Raises:
            LookalikeError: The file does not load, is not a lookalike export, or carries
                another key.
        """
        file = Path(path)
        try:
            session = _session(str(file), threads)
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise LookalikeError(f"cannot load ONNX model {file}: {exc}") from exc
        meta = session.get_modelmeta().custom_metadata_map
        if expect_key is not None and meta.get(X.META_KEY) != expect_key:
            raise LookalikeError(f"{file} was exported for another model (key mismatch)")
        if preprocess is None:
            if X.META_PREPROCESS not in meta:
                raise LookalikeError(f"{file} records no preprocessing; pass preprocess=")
            preprocess = Preprocess.from_dict(json.loads(meta[X.META_PREPROCESS]))
        return cls(session, preprocess, key=meta.get(X.META_KEY), path=file, **kwargs)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        preprocess: Preprocess,
        *,
        threads: int | None = None,
        **kwargs: Any,
    ) -> OnnxEmbedder:
        """Run a serialised model held in memory (kept, so :meth:`onnx_bytes` returns it).

        Args:
            data: A serialised lookalike export.
            preprocess: The preprocessing it expects.
            threads: ONNX Runtime intra-op threads.
            **kwargs: ``name``, ``key``, ``thresholds``, ``head`` (see the class).

        Raises:
            ExportError: ONNX Runtime cannot load it.
        """
        try:
            session = _session(data, threads)
        except LookalikeError:
            raise
        except Exception as exc:  # onnxruntime raises its own types for bad models
            raise ExportError(f"ONNX Runtime cannot run the model: {exc}") from exc
        embedder = cls(session, preprocess, **kwargs)
        embedder._data = data
        return embedder

    @classmethod
    def from_model(
        cls,
        model: SiameseModel,
        *,
        key: str | None = None,
        cache: bool = True,
        threads: int | None = None,
        name: str = "model",
    ) -> OnnxEmbedder:
        """Export a model (or reuse its cached export) and run it in ONNX Runtime.

        Args:
            model: The model; left unchanged.
            key: Its cache key; ``None`` computes :func:`~lookalike.inference.export.module_key`
                from its tensors when ``cache`` is on.
            cache: Read and write the cache (off: export in memory only).
            threads: ONNX Runtime intra-op threads.
            name: What to call it.

        Raises:
            ExportError: The model cannot be exported, or the export disagrees with torch.
        """
        if cache and key is None:
            key = X.module_key(model)
        head = None
        if model.head is not None:
            state = {k: v.detach().cpu().numpy() for k, v in model.head.state_dict().items()}
            head = NumpyPairHead.from_state(state, prefix="layers.")
        common: dict[str, Any] = {"name": name, "thresholds": model.thresholds, "head": head}
        path = X.cache_path(key) if cache and key is not None else None
        if path is not None and path.is_file():
            try:
                return cls.open(path, model.preprocess, threads=threads, expect_key=key, **common)
            except LookalikeError:
                pass  # corrupt or stale: export again below
        # The first use of a model exports it (seconds): say so on a terminal, then how long.
        shown, start = showing(True), time.perf_counter()
        if shown:
            print(
                f"{name}: exporting to ONNX Runtime (once; later runs reuse it)…", file=sys.stderr
            )
        data = X.export_model(model, key=key)
        try:
            session = _session(data, threads)
        except Exception as exc:
            raise ExportError(f"ONNX Runtime cannot run the exported model: {exc}") from exc
        embedder = cls(session, model.preprocess, key=key, **common)
        _check_export(model, embedder)
        if shown:
            done(f"{name}: exported and checked against PyTorch", time.perf_counter() - start)
        if path is not None:
            try:
                X.write_atomic(path, data)
                embedder.path = path
            except OSError as exc:  # a read-only or full cache costs speed, not the result
                warnings.warn(
                    f"cannot cache the ONNX export in {path.parent}: {exc}", RuntimeWarning, 2
                )
        if embedder.path is None:
            embedder._data = data
        return embedder

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed one preprocessed batch (N, C, H, W) to float32 (N, D)."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        out = self.session.run([X.OUTPUT_NAME], {X.INPUT_NAME: x})[0]
        return np.asarray(out, dtype=np.float32)

    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        """P(same) (N,) from the NumPy pair head; ``None`` without one."""
        return None if self.head is None else self.head.probability(emb_a, emb_b)


def _check_export(model: SiameseModel, embedder: OnnxEmbedder, tolerance: float = 1e-3) -> None:
    """Compare the export with torch on two random probe images.

    Raises:
        ExportError: Some embedding differs by more than ``tolerance`` (max abs).
    """
    height, width = model.preprocess.input_size
    rng = np.random.default_rng(0)
    probe = rng.standard_normal((2, model.preprocess.channels, height, width)).astype(np.float32)
    expected = model.embed(probe, amp=False)
    got = embedder.embed_batch(probe)
    error = float(np.abs(expected - got).max()) if expected.size else 0.0
    if not error <= tolerance * max(1.0, float(np.abs(expected).max())):
        raise ExportError(f"the ONNX export differs from torch by {error:.3g}; use torch")
