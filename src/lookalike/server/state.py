"""What a running ``lookalike serve`` holds: the served model, pairs, jobs, index, trained head.

**Model snapshots.** ``ServerState.model`` is one :class:`SiameseModel`, used read-only by
every request. Head training never touches it: the job trains a deep copy, and when it is
done the copy replaces the served model in one reference assignment. A request reads
``state.model`` once and uses that object throughout, so it never sees half of an old head and
half of a new one. The backbone weights are the same in every snapshot (head training keeps
the backbone frozen), so the shared inference worker may embed with whichever snapshot is
current.

**One model identity.** The engine is chosen by :func:`lookalike.inference.choose_engine` and
built by :func:`lookalike.inference.load_embedder` from the same
:class:`~lookalike.inference.ModelSource` the CLI uses, so the server and the CLI share one
ONNX export and one model key; an index built with another model is refused with the CLI's
message.

**The trained head survives a restart**: it is written to ``DATA_DIR/head/`` with the key of
the model it was trained on, and attached again at start-up only when the served model has
the same key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lookalike._io import atomic_write_bytes, atomic_write_json, sha256_file
from lookalike.errors import DataError, LookalikeError
from lookalike.inference.embedder import BaseEmbedder, EmbedBatch
from lookalike.inference.onnx_engine import OnnxEmbedder
from lookalike.inference.select import build_model, choose_engine, load_embedder
from lookalike.inference.source import ModelSource
from lookalike.model.folder import read_card
from lookalike.model.layers import PairHead
from lookalike.model.network import SiameseModel
from lookalike.server.batcher import EmbedBatcher
from lookalike.server.jobs import Job, JobRunner
from lookalike.server.limits import ServeLimits
from lookalike.server.pairs_store import Pair, PairStore
from lookalike.server.redact import Redactor
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
        source: Where ``model`` comes from (``None``: an in-memory model, keyed by its
            tensors).
        data_dir: Where labelled pairs and the trained head are kept.
        index_dir: An index folder to search, or ``None``.
        engine: What computes the embeddings of requests: ``"torch"`` (the served model),
            ``"onnx"`` (its ONNX Runtime export, CPU only) or ``"auto"`` (ONNX Runtime on
            CPU when it is installed and the export works, else torch).
        threads: ONNX Runtime intra-op threads (``None``: its default); torch's are set
            process-wide with :func:`lookalike.model.device.set_threads`.
        limits: The bounds of the pair store (``max_pairs``, ``max_pair_bytes``).

    Attributes:
        redact: Rewrites the server's paths out of messages sent to clients.

    Raises:
        LookalikeError: An unknown ``engine``, or ``"onnx"`` where it cannot run.
    """

    def __init__(
        self,
        model: SiameseModel,
        *,
        name: str,
        reference_backbone: bool,
        source: ModelSource | None = None,
        data_dir: str | os.PathLike[str],
        index_dir: str | os.PathLike[str] | None = None,
        engine: str = "auto",
        threads: int | None = None,
        limits: ServeLimits | None = None,
    ) -> None:
        self.name = name
        self.reference_backbone = reference_backbone
        self.data_dir = Path(data_dir)
        limits = limits or ServeLimits()
        self.pairs = PairStore(
            self.data_dir, max_pairs=limits.max_pairs, max_bytes=limits.max_pair_bytes
        )
        self.jobs = JobRunner()
        self.head_dir = self.data_dir / "head"
        self._swap_lock = threading.Lock()
        self.source = source
        self._model = model
        embed, self.engine, self.model_key = self._engine(engine, threads)
        self._restore_head()
        # On a GPU a bigger batch is nearly free; on CPU it buys little (eager torch even
        # slows down per image), so there a batch holds about two requests.
        on_cpu = self._model.device.type == "cpu"
        self.batcher = EmbedBatcher(embed, max_batch=CPU_MAX_BATCH if on_cpu else GPU_MAX_BATCH)
        self.render_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe
        self.index = (
            IndexService(
                index_dir,
                embedding_dim=model.embedding_dim,
                model_key=self.model_key,
                model_source=source,
            )
            if index_dir is not None
            else None
        )
        self.redact = Redactor(
            {
                "DATA_DIR": self.data_dir,
                "INDEX_DIR": index_dir,
                "INDEX_ROOT": self.index.root if self.index is not None else None,
                "MODEL_DIR": source.folder if source is not None else None,
            }
        )

    @property
    def model(self) -> SiameseModel:
        """The current snapshot; read it once per request."""
        return self._model

    def _embed_current(self, batch: np.ndarray) -> np.ndarray:
        return self._model.embed(batch, batch_size=max(1, len(batch)))

    def _engine(self, engine: str, threads: int | None) -> tuple[EmbedBatch, str, str]:
        """The inference worker's embedding function, the engine's name, and the model key.

        Head training never changes the backbone, so one export serves every snapshot.
        """
        device = "cpu" if self._model.device.type == "cpu" else str(self._model.device)
        choice = choose_engine(engine, device)
        if self.source is None:  # an in-memory model: keyed by its tensors
            from lookalike.inference.export import module_key

            key = module_key(self._model)
            if choice == "torch":
                return self._embed_current, "torch", key
            embedder: BaseEmbedder = OnnxEmbedder.from_model(
                self._model, key=key, name=self.name, threads=threads
            )
        else:
            embedder = load_embedder(
                self.source, model=self._model, engine=engine, device=device, threads=threads
            )
            key = str(embedder.key or embedder.name)
        if isinstance(embedder, OnnxEmbedder):
            return embedder.embed_batch, "onnx", key
        if engine == "onnx":
            raise LookalikeError("the ONNX engine could not be used for this model")
        return self._embed_current, "torch", key

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
        # The better of the two on the held-out pairs serves: a head that did worse than
        # plain cosine is not used (nor saved), and the served model stays as it was.
        worse = (
            report.holdout_accuracy is not None
            and report.cosine_holdout_accuracy is not None
            and report.holdout_accuracy < report.cosine_holdout_accuracy
        )
        if not worse:
            self._save_head(work)
            with self._swap_lock:
                self._model = work
        return {
            "n_train": report.n_train,
            "n_holdout": report.n_holdout,
            "train_accuracy": report.train_accuracy,
            "holdout_accuracy": report.holdout_accuracy,
            "cosine_holdout_accuracy": report.cosine_holdout_accuracy,
            "used": "cosine" if worse else "head",
        }

    # -- trained head on disk -------------------------------------------------------------------

    def _save_head(self, model: SiameseModel) -> None:
        from safetensors.torch import save

        assert model.head is not None
        state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        data = save(state)
        digest = hashlib.sha256(data).hexdigest()
        atomic_write_bytes(self.head_dir / HEAD_FILE, data)
        # The JSON is written last and names the tensors' sha256: it is the commit record.
        meta = {
            "model_key": self.model_key,
            "head": model.head.config(),
            "tensors_sha256": digest,
            "thresholds": {"probability": model.thresholds.get("probability", 0.5)},
            "metrics": {k: v for k, v in model.metrics.items() if k.startswith("head_")},
            "how": model.provenance.get("how"),
        }
        atomic_write_json(self.head_dir / HEAD_META, meta)

    def _restore_head(self) -> None:
        from safetensors.torch import load_file

        meta_path, tensors = self.head_dir / HEAD_META, self.head_dir / HEAD_FILE
        if not meta_path.is_file() or not tensors.is_file():
            return
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("model_key") != self.model_key:
                log.info("not restoring the head in %s: trained on another model", self.head_dir)
                return
            if sha256_file(tensors) != meta["tensors_sha256"]:
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


def load_served_model(
    source: ModelSource, device: str | None = None
) -> tuple[SiameseModel, str, bool]:
    """Load the model ``lookalike serve`` runs.

    Args:
        source: The model.
        device: ``None``/``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.

    Returns:
        (model, display name, whether its backbone is an unchanged pretrained one).

    Raises:
        ModelFolderError, WeightsError: The model cannot be loaded.
    """
    model = build_model(source).to_device(device)
    if source.folder is None:
        return model, model.backbone_name, model.weights_sha256 is not None
    card = read_card(source.folder)
    name = Path(source.folder).name or model.backbone_name
    return model, name, not card.backbone_weights.stored and model.weights_sha256 is not None
