"""What a running ``lookalike serve`` holds: the served model, pairs, jobs, index, trained head.

**Model snapshots.** ``ServerState.model`` is one :class:`SiameseModel`, used read-only by
every request. Head training never touches it: the job trains a deep copy, and when it is
done the copy replaces the served model in one reference assignment. A request reads
``state.model`` once and uses that object throughout, so it never sees half of an old head and
half of a new one. The backbone weights are the same in every snapshot (head training keeps
the backbone frozen), so the shared inference worker may embed with whichever snapshot is
current.

**The trained head survives a restart**: it is written to ``DATA_DIR/head/`` with a
fingerprint of the model it was trained on (architecture and every non-head tensor), and
attached again at start-up only when the served model has the same fingerprint.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import DataError, LookalikeError
from lookalike.model.folder import read_config, write_json_atomic
from lookalike.model.layers import PairHead
from lookalike.model.network import SiameseModel
from lookalike.server.batcher import EmbedBatcher, EmbedFn
from lookalike.server.jobs import Job, JobRunner
from lookalike.server.pairs_store import Pair, PairStore
from lookalike.server.search import IndexService

log = logging.getLogger("lookalike.server")

MIN_PAIRS = 4
"""Fewest labelled pairs head training accepts (and at least one of each label)."""

CPU_MAX_BATCH = 4
GPU_MAX_BATCH = 32
"""Most images the inference worker embeds in one forward pass, on CPU and on CUDA."""

HEAD_FILE = "head.safetensors"
HEAD_META = "head.json"


class ServerState:
    """The served model and everything the API works with.

    Args:
        model: The model to serve (used read-only).
        name: What to call it (the model folder's name, or the backbone's).
        reference_backbone: The backbone is an unchanged pretrained one, so a downloaded
            model folder may reference it by name and sha256 instead of storing it.
        data_dir: Where labelled pairs and the trained head are kept.
        index_dir: An index folder to search, or ``None``.
        engine: What computes the embeddings of requests: ``"torch"`` (the served model),
            ``"onnx"`` (its ONNX Runtime export, CPU only) or ``"auto"`` (ONNX Runtime on
            CPU when it is installed and the export works, else torch).
        threads: ONNX Runtime intra-op threads (``None``: its default); torch's are set
            process-wide with :func:`lookalike.model.device.set_threads`.

    Raises:
        LookalikeError: An unknown ``engine``, or ``"onnx"`` where it cannot run.
    """

    def __init__(
        self,
        model: SiameseModel,
        *,
        name: str,
        reference_backbone: bool,
        data_dir: str | os.PathLike[str],
        index_dir: str | os.PathLike[str] | None = None,
        engine: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.reference_backbone = reference_backbone
        self.data_dir = Path(data_dir)
        self.pairs = PairStore(self.data_dir)
        self.jobs = JobRunner()
        self.head_dir = self.data_dir / "head"
        self._swap_lock = threading.Lock()
        self._fingerprint = fingerprint(model)
        self._model = model
        self._restore_head()
        embed, self.engine = self._engine(engine, threads)
        # On a GPU a bigger batch is nearly free; on CPU it buys little (eager torch even
        # slows down per image), so there a batch holds about two requests.
        on_cpu = self._model.device.type == "cpu"
        self.batcher = EmbedBatcher(embed, max_batch=CPU_MAX_BATCH if on_cpu else GPU_MAX_BATCH)
        self.render_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe
        self.index = (
            IndexService(index_dir, embedding_dim=model.embedding_dim)
            if index_dir is not None
            else None
        )

    @property
    def model(self) -> SiameseModel:
        """The current snapshot; read it once per request."""
        return self._model

    def _embed_current(self, batch: np.ndarray) -> np.ndarray:
        return self._model.embed(batch, batch_size=max(1, len(batch)))

    def _engine(self, engine: str, threads: int | None) -> tuple[EmbedFn, str]:
        """The embedding function of the inference worker, and the engine's name.

        Head training never changes the backbone, so one export serves every snapshot.
        """
        if engine not in ("auto", "torch", "onnx"):
            raise LookalikeError(f"engine must be auto, torch or onnx, got {engine!r}")
        on_cpu = self._model.device.type == "cpu"
        if engine == "torch" or (engine == "auto" and not on_cpu):
            return self._embed_current, "torch"
        if not on_cpu:
            raise LookalikeError("the ONNX engine runs on CPU; use --engine torch for CUDA")
        if importlib.util.find_spec("onnxruntime") is None:
            if engine == "onnx":
                raise LookalikeError("--engine onnx needs onnxruntime: pip install lookalike[onnx]")
            return self._embed_current, "torch"
        try:
            from lookalike.inference import OnnxEmbedder

            onnx = OnnxEmbedder.from_model(self._model, name=self.name, threads=threads)
        except (ImportError, LookalikeError) as exc:
            if engine == "onnx":
                raise
            log.warning("serving with the torch engine: the ONNX export failed: %s", exc)
            return self._embed_current, "torch"
        return onnx.embed_batch, "onnx"

    def close(self) -> None:
        """Stop the inference worker, wait for a running job, close the index."""
        self.batcher.close()
        self.jobs.wait(timeout=60)
        if self.index is not None:
            self.index.close()

    # -- head training --------------------------------------------------------------------------

    def start_training(self, *, steps: int, lr: float) -> Job:
        """Start head training on every stored pair.

        Raises:
            DataError: Fewer than :data:`MIN_PAIRS` pairs, or only one label.
            JobRunningError: A training job is running.
        """
        pairs = self.pairs.list()
        same = sum(p.label == "same" for p in pairs)
        if len(pairs) < MIN_PAIRS or same == 0 or same == len(pairs):
            raise DataError(
                f"head training needs at least {MIN_PAIRS} labelled pairs with both labels; "
                f"there are {len(pairs)} ({same} same, {len(pairs) - same} different)"
            )
        return self.jobs.start(lambda job: self._train(job, pairs, steps, lr), total=steps)

    def _train(self, job: Job, pairs: list[Pair], steps: int, lr: float) -> dict[str, Any]:
        from lookalike.training.fewshot import train_head_on_pairs

        work = copy.deepcopy(self._model)  # the served snapshot is never modified
        a = [str(self.pairs.image_path(p, "a")) for p in pairs]
        b = [str(self.pairs.image_path(p, "b")) for p in pairs]
        labels = np.array([1.0 if p.label == "same" else 0.0 for p in pairs], dtype=np.float32)
        holdout = 0.25 if len(pairs) >= 8 else 0.0
        report = train_head_on_pairs(
            work, a, b, labels, holdout=holdout, steps=steps, lr=lr, on_step=job.progress
        )
        work.metrics.update(
            head_train_accuracy=report.train_accuracy,
            head_holdout_accuracy=report.holdout_accuracy,
            head_pairs=len(pairs),
        )
        work.provenance = {
            **self._model.provenance,
            "how": f"few-shot pair head trained by lookalike serve on {len(pairs)} labelled pairs",
        }
        self._save_head(work)
        with self._swap_lock:
            self._model = work
        return {
            "n_train": report.n_train,
            "n_holdout": report.n_holdout,
            "train_accuracy": report.train_accuracy,
            "holdout_accuracy": report.holdout_accuracy,
            "cosine_holdout_accuracy": report.cosine_holdout_accuracy,
        }

    # -- trained head on disk -------------------------------------------------------------------

    def _save_head(self, model: SiameseModel) -> None:
        from safetensors.torch import save_file

        assert model.head is not None
        self.head_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        fd, tmp = tempfile.mkstemp(dir=self.head_dir, prefix=".head.", suffix=".tmp")
        os.close(fd)
        save_file(state, tmp)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        Path(tmp).replace(self.head_dir / HEAD_FILE)
        # The JSON is written last and names the tensors' sha256: it is the commit record.
        meta = {
            "fingerprint": self._fingerprint,
            "head": model.head.config(),
            "tensors_sha256": digest,
            "thresholds": {"probability": model.thresholds.get("probability", 0.5)},
            "metrics": {k: v for k, v in model.metrics.items() if k.startswith("head_")},
            "how": model.provenance.get("how"),
        }
        write_json_atomic(self.head_dir / HEAD_META, meta)

    def _restore_head(self) -> None:
        from safetensors.torch import load_file

        meta_path, tensors = self.head_dir / HEAD_META, self.head_dir / HEAD_FILE
        if not meta_path.is_file() or not tensors.is_file():
            return
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("fingerprint") != self._fingerprint:
                log.info("not restoring the head in %s: trained on another model", self.head_dir)
                return
            if hashlib.sha256(tensors.read_bytes()).hexdigest() != meta["tensors_sha256"]:
                log.warning("not restoring the head in %s: tensors do not match", self.head_dir)
                return
            head = PairHead(**meta["head"])
            head.load_state_dict(load_file(str(tensors)))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            log.warning("not restoring the head in %s: %s", self.head_dir, exc)
            return
        head.eval()
        self._model.head = head.to(self._model.device)
        self._model.thresholds.update({k: float(v) for k, v in meta["thresholds"].items()})
        self._model.metrics.update(meta.get("metrics", {}))
        if meta.get("how"):
            self._model.provenance["how"] = meta["how"]
        log.info("restored the pair head trained earlier from %s", self.head_dir)


def fingerprint(model: SiameseModel) -> str:
    """sha256 of a model's architecture and every tensor except the pair head's."""
    digest = hashlib.sha256()
    config = {k: v for k, v in model.config().items() if k != "head"}
    digest.update(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("head."):
            continue
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_served_model(
    model_dir: str | os.PathLike[str] | None, device: str | None = None
) -> tuple[SiameseModel, str, bool]:
    """Load the model ``lookalike serve`` runs.

    Args:
        model_dir: A model folder, or ``None`` for the default pretrained backbone.
        device: ``None``/``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.

    Returns:
        (model, display name, whether its backbone is an unchanged pretrained one).

    Raises:
        ModelFolderError, WeightsError: The model cannot be loaded.
    """
    if model_dir is None:
        model = SiameseModel.create().to_device(device)
        return model, model.backbone_name, model.weights_sha256 is not None
    config = read_config(model_dir)
    stored = bool(config.get("backbone_weights", {}).get("stored", True))
    model = SiameseModel.load(model_dir, device=device)
    name = Path(model_dir).resolve().name or model.backbone_name
    return model, name, not stored and model.weights_sha256 is not None
