"""Embedding many files on a Ray cluster with Ray Data.

lookalike describes the work; Ray does the distributing. :class:`RayEmbedding` turns a list
of files into a Ray Data pipeline:

1. a dataset of ``(path, index)`` rows (one block per batch, at most :data:`MAX_BLOCKS`);
2. ``map_batches`` **tasks** (CPU) read each file once, hash those bytes (when a hashing
   reader is given, as the index does) and decode + preprocess them to the model's input;
3. ``map_batches`` with an **actor pool** (:class:`_EmbedActor`, ``ActorPoolStrategy``): each
   actor loads the model *once* from a serialisable description (:class:`ModelLoader`: the
   :class:`~lookalike.inference.source.ModelSource` and the engine, loaded on the node by
   :func:`~lookalike.inference.select.load_embedder` exactly as it is locally: ONNX Runtime
   from the cached export on CPU nodes, torch when the actor holds a GPU) and embeds batches;
4. the driver iterates the results (``iter_batches``) and gets, per batch, an
   :class:`~lookalike.inference.pipeline.EmbedResult` plus ``{path: (hash, size)}`` of the
   bytes each vector was computed from. The index commits each one as it arrives, so a killed
   job keeps what was committed and a rerun embeds only the rest.

Files are local paths or object-store URIs (``s3://bucket/prefix/a.jpg``, ``gs://…``,
``file:///abs/a.jpg``) read through fsspec (:mod:`lookalike.inference.uris`); every
node must reach them. The workers must be able to import lookalike (installed on every node,
or shipped with a ``runtime_env``). Nothing here imports Ray at module level: without
``--ray`` lookalike never imports it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lookalike.errors import ImageError, LookalikeError
from lookalike.imaging.preprocess import Preprocess
from lookalike.inference.pipeline import EmbedResult
from lookalike.inference.ray_session import import_ray, ray_session
from lookalike.inference.source import ModelSource
from lookalike.inference.uris import FileReader, RecordingReader

if TYPE_CHECKING:
    from lookalike.inference.embedder import Embedder

__all__ = [
    "MAX_BLOCKS",
    "ModelLoader",
    "RayEmbedding",
    "RayOptions",
    "actor_plan",
    "ray_session",
]

T = TypeVar("T")

MAX_BLOCKS = 1000
"""Most blocks the file list is split into (one per batch below that)."""
ACTOR_MEMORY = 512 << 20
"""Memory (bytes) each embedding actor asks Ray for: a model and a batch of inputs."""


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelLoader:
    """A serialisable description of the model an actor loads (once) on its node.

    Calling it runs :func:`~lookalike.inference.select.load_embedder` there, so an actor
    loads the model the way a local run does: ONNX Runtime from the cached export on a CPU
    node (exported and cached on that node the first time), torch on CUDA when the actor was
    given a GPU (``engine="auto"``, ``device="auto"``).

    Attributes:
        source: Where the model comes from (the model folder or weights file must exist at
            the same path on every node).
        engine: ``"auto"``, ``"torch"``, ``"onnx"`` or ``"onnx-int8"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        threads: CPU threads per actor (``None``: the CPUs Ray gives it, at least 1).
    """

    source: ModelSource
    engine: str = "auto"
    device: str = "auto"
    threads: int | None = None

    def __call__(self) -> Embedder:
        """Load the model (on the worker)."""
        from lookalike.inference.select import load_embedder

        return load_embedder(
            self.source, engine=self.engine, device=self.device, threads=self.threads
        )


@dataclass(frozen=True)
class RayOptions:
    """How to embed on Ray.

    Attributes:
        model: A picklable zero-argument callable that returns the model on a worker,
            usually a :class:`ModelLoader`; called once per actor.
        workers: Most embedding actors (``None``: one per GPU on a GPU cluster, else half
            the cluster's CPUs, at least 1).
        gpus: Give each actor a GPU (``None``: when the cluster has GPUs and the model's
            device is not ``"cpu"``).
        verbose: Let Ray Data print its own progress and log lines.
    """

    model: Callable[[], Embedder]
    workers: int | None = None
    gpus: bool | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise LookalikeError(f"--ray-workers must be at least 1, got {self.workers}")


# --------------------------------------------------------------------------- the pipeline


class RayEmbedding:
    """Hashing and embedding files on Ray (the index's ``Work``; ``lookalike embed --ray``).

    Args:
        options: The model description and the pool size.
        preprocess: The model's preprocessing (run in the decode tasks).
        dim: The embedding size D (of the zero rows beside failures).
        reader: Makes the per-task file reader from ``preprocess``: one that hashes what it
            decodes (the index's ``VerifiedReader``) or :class:`FileReader`.
        hasher: ``name → (hash, "") or (None, reason)``, for :meth:`hash_files`.
        key: The model key on the driver (the one the index records): an actor whose
            model loads with another key (other files at the same path on a node) refuses
            to start. ``None``: not checked.
    """

    def __init__(
        self,
        options: RayOptions,
        preprocess: Preprocess,
        dim: int,
        *,
        reader: Callable[[Preprocess], RecordingReader] = FileReader,
        hasher: Callable[[str], tuple[str | None, str]] | None = None,
        key: str | None = None,
    ) -> None:
        self.options = options
        self.preprocess = preprocess
        self.dim = dim
        self.reader = reader
        self.hasher = hasher
        self.key = key

    def hash_files(
        self, names: Sequence[str], advance: Callable[[int], object] | None = None
    ) -> dict[str, tuple[str | None, str]]:
        """Hash files in Ray tasks: ``{name: (hash, "") or (None, reason)}``; ``advance(n)``
        is called as each batch of ``n`` comes back (a progress bar on the driver).

        Raises:
            ValueError: No ``hasher`` was given.
        """
        if self.hasher is None:
            raise ValueError("RayEmbedding.hash_files needs a hasher")
        if not names:
            return {}
        out: dict[str, tuple[str | None, str]] = {}
        with self._session():
            ray = import_ray()
            batch = max(1, math.ceil(len(names) / min(MAX_BLOCKS, 4 * _cpus(ray))))
            dataset = _rows(ray, names, batch).map_batches(
                _hash_batch,
                fn_kwargs={"hasher": self.hasher},
                batch_format="numpy",
                batch_size=batch,
            )
            for done in _worded(dataset.iter_batches(batch_size=None, batch_format="numpy")):
                for name, digest, reason in zip(
                    done["path"], done["digest"], done["error"], strict=True
                ):
                    out[str(name)] = (str(digest) or None, str(reason))
                if advance is not None:
                    advance(len(done["path"]))
        return out

    def _session(self) -> AbstractContextManager[None]:
        """The Ray in use, or a local one for this call (:func:`ray_session`)."""
        return ray_session(None, workers=self.options.workers, verbose=self.options.verbose)

    def embed_stream(
        self, names: Sequence[str], batch_size: int
    ) -> Iterator[tuple[EmbedResult, dict[str, tuple[str, int]]]]:
        """Read, hash, decode and embed the files, yielding each batch as it comes back.

        Args:
            names: Local paths or URIs every node can read.
            batch_size: Images per forward pass (and per result).

        Yields:
            ``(EmbedResult, {path: (hash, size)})`` per batch, in completion order;
            ``indices`` are positions in ``names``; rows are raw model outputs (the caller
            checks and normalises them).

        Raises:
            LookalikeError: Ray is missing or the model cannot be loaded on a worker.
        """
        if not names:
            return
        with self._session():
            for done in _worded(self._dataset(names, batch_size)):
                yield _result(done, self.dim)

    def _dataset(self, names: Sequence[str], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """The pipeline's output batches (Ray connected)."""
        ray = import_ray()
        pool, per_actor = actor_plan(ray.cluster_resources(), self.options)
        pool = min(pool, _blocks(len(names), batch_size))  # no idle actors on a short list
        model = self.options.model
        if isinstance(model, ModelLoader) and model.threads is None:
            model = replace(model, threads=max(1, int(per_actor.get("num_cpus", 1))))
        dataset = (
            _rows(ray, names, batch_size)
            .map_batches(
                _decode_batch,
                fn_kwargs={"preprocess": self.preprocess, "reader": self.reader},
                batch_format="numpy",
                batch_size=batch_size,
                num_cpus=1,
            )
            .map_batches(
                _EmbedActor,
                fn_constructor_kwargs={"model": model, "dim": self.dim, "key": self.key},
                compute=ray.data.ActorPoolStrategy(size=pool),
                batch_format="numpy",
                batch_size=batch_size,
                memory=ACTOR_MEMORY,
                **per_actor,
            )
        )
        batches: Iterator[dict[str, np.ndarray]] = dataset.iter_batches(
            batch_size=None, batch_format="numpy"
        )
        return batches

    def embed_all(self, names: Sequence[str], batch_size: int, *, progress: bool) -> EmbedResult:
        """Every file's embedding in input order (``lookalike embed --ray``).

        Args:
            names: Local paths or URIs.
            batch_size: Images per forward pass.
            progress: A bar on the driver (on a terminal).

        Returns:
            As :func:`~lookalike.inference.pipeline.embed_files`: rows in input order, the
            unreadable files in ``failures`` (input order).
        """
        from lookalike._progress import bar

        rows: dict[int, np.ndarray] = {}
        failed: dict[int, tuple[str, str]] = {}
        position = {name: i for i, name in enumerate(names)}
        with bar(desc="embedding", total=len(names), unit="img", progress=progress) as shown:
            for chunk, _ in self.embed_stream(names, batch_size):
                rows.update(zip(chunk.indices, chunk.embeddings, strict=True))
                failed.update({position[name]: (name, why) for name, why in chunk.failures})
                shown.update(len(chunk.indices) + len(chunk.failures))
        order = sorted(rows)
        embeddings = (
            np.stack([rows[i] for i in order]).astype(np.float32)
            if order
            else np.zeros((0, self.dim), np.float32)
        )
        return EmbedResult(
            embeddings,
            paths=[names[i] for i in order],
            indices=order,
            failures=[failed[i] for i in sorted(failed)],
        )


def actor_plan(resources: Mapping[str, float], options: RayOptions) -> tuple[int, dict[str, float]]:
    """How many embedding actors, and what each asks Ray for.

    On a cluster with GPUs (unless ``options.gpus`` is ``False``, or the model is pinned to
    the CPU or to an ONNX engine) each actor takes one GPU and one CPU, one actor per GPU by
    default. Otherwise each takes up to one CPU, half the CPUs' worth of actors by default,
    leaving at least one CPU for the read/hash/decode tasks (a share down to 0.25 CPU).

    Args:
        resources: ``ray.cluster_resources()`` (``"CPU"``, ``"GPU"`` counts).
        options: The pool size and GPU wish; ``options.model``'s ``device`` and ``engine``
            when it has them (a :class:`ModelLoader`).

    Returns:
        ``(actors, {"num_cpus": …[, "num_gpus": 1.0]})``.
    """
    cpus, gpus = float(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    device = getattr(options.model, "device", "auto")
    engine = getattr(options.model, "engine", "auto")
    use_gpu = options.gpus if options.gpus is not None else gpus > 0
    if use_gpu and device != "cpu" and engine in ("auto", "torch"):
        return options.workers or max(1, gpus), {"num_gpus": 1.0, "num_cpus": 1.0}
    pool = options.workers or max(1, int(cpus) // 2)
    share = (cpus - 1) / pool  # leave one CPU for reading and decoding
    return pool, {"num_cpus": float(min(1.0, max(0.25, share)))}


def _cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _blocks(rows: int, batch: int) -> int:
    """Blocks a list of ``rows`` is split into: one per ``batch``, 1 to :data:`MAX_BLOCKS`."""
    return max(1, min(MAX_BLOCKS, math.ceil(rows / batch)))


def _rows(ray: Any, names: Sequence[str], batch: int) -> Any:
    """A dataset of ``{"path", "index"}`` rows, one block per ``batch`` (capped)."""
    items = [{"path": str(name), "index": i} for i, name in enumerate(names)]
    return ray.data.from_items(items, override_num_blocks=_blocks(len(names), batch))


_WORKER_ERROR = re.compile(r"lookalike\.errors\.\w+: (.+)")


def _worded(batches: Iterator[T]) -> Iterator[T]:
    """The batches; a lookalike error raised on a worker is raised here as itself (one line)."""
    try:
        yield from batches
    except LookalikeError:
        raise
    except Exception as exc:
        cause = _user_error(exc)
        if cause is None:
            raise
        raise LookalikeError(cause) from None


def _user_error(exc: BaseException) -> str | None:
    """The message of a lookalike error raised on a worker (Ray wraps it), else ``None``.

    Ray wraps an error raised in a task as its cause; one raised while an actor starts (a
    model folder missing on a node) only as text in the actor's death message.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, LookalikeError):
            return str(current)
        cause = getattr(current, "cause", None)
        current = (
            cause
            if isinstance(cause, BaseException)
            else (current.__cause__ or current.__context__)
        )
    found = _WORKER_ERROR.findall(str(exc))
    return found[-1].strip() if found else None


# --------------------------------------------------------------------------- on the workers


def _hash_batch(
    batch: dict[str, np.ndarray], hasher: Callable[[str], tuple[str | None, str]]
) -> dict[str, np.ndarray]:
    """Ray task: hash each file of a batch."""
    digests, errors = [], []
    for name in batch["path"]:
        digest, reason = hasher(str(name))
        digests.append(digest or "")
        errors.append(reason)
    return {"path": batch["path"], "digest": np.array(digests), "error": np.array(errors)}


def _input_shape(preprocess: Preprocess) -> tuple[int, int, int]:
    """The model input (C, H, W)."""
    height, width = preprocess.input_size
    return preprocess.channels, height, width


def _decode_batch(
    batch: dict[str, np.ndarray],
    preprocess: Preprocess,
    reader: Callable[[Preprocess], RecordingReader],
) -> dict[str, np.ndarray]:
    """Ray task: read (and hash) each file once and decode it to the model's input.

    Returns:
        Columns ``path``, ``index``, ``digest`` and ``size`` (of the bytes read; ``""`` and
        ``-1`` when unread), ``error`` (``""`` when decoded) and ``image`` float32
        (N, C, H, W), zeros where the file failed.
    """
    read = reader(preprocess)
    names = [str(n) for n in batch["path"]]
    images = np.zeros((len(names), *_input_shape(preprocess)), dtype=np.float32)
    errors = []
    for i, name in enumerate(names):
        try:
            images[i] = read(name)
            errors.append("")
        except ImageError as exc:
            errors.append(str(exc))
    info = [read.read.get(name, ("", -1)) for name in names]
    return {
        "path": batch["path"],
        "index": batch["index"],
        "digest": np.array([digest for digest, _ in info]),
        "size": np.array([size for _, size in info], dtype=np.int64),
        "error": np.array(errors),
        "image": images,
    }


class _EmbedActor:
    """Ray actor: loads the model once, then embeds the decoded batches it is handed."""

    def __init__(self, model: Callable[[], Embedder], dim: int, key: str | None) -> None:
        self.embedder = model()
        self.dim = dim
        loaded = getattr(self.embedder, "key", None)
        if key is not None and loaded is not None and loaded != key:
            raise LookalikeError(
                f"the model a Ray worker loaded (key {loaded}) is not the driver's (key {key}); "
                "every node needs the same model files at the same paths"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Columns of the decode step, ``image`` replaced by ``vector`` (N, D) raw outputs."""
        ok = batch["error"] == ""
        out = {k: v for k, v in batch.items() if k != "image"}
        vectors = np.zeros((len(ok), self.dim), dtype=np.float32)
        if ok.any():
            images = batch["image"][ok]
            rows = np.asarray(self.embedder.embed(images, batch_size=len(images)), np.float32)
            if rows.ndim != 2 or len(rows) != len(images):
                raise ValueError(
                    f"the embedder returned {rows.shape} for {len(images)} images; it "
                    "must return one row per image, in order"
                )
            if rows.shape[1] != self.dim:
                vectors = np.zeros((len(ok), rows.shape[1]), dtype=np.float32)
            vectors[ok] = rows
        out["vector"] = vectors
        return out


def _result(
    done: dict[str, np.ndarray], dim: int
) -> tuple[EmbedResult, dict[str, tuple[str, int]]]:
    """One batch back on the driver: the embedded files, the failures, what was read."""
    names = [str(n) for n in done["path"]]
    ok = done["error"] == ""
    vectors = np.asarray(done["vector"], dtype=np.float32)
    result = EmbedResult(
        vectors[ok] if ok.any() else np.zeros((0, vectors.shape[-1] or dim), np.float32),
        paths=[n for n, good in zip(names, ok, strict=True) if good],
        indices=[int(i) for i, good in zip(done["index"], ok, strict=True) if good],
        failures=[
            (n, str(e)) for n, e, good in zip(names, done["error"], ok, strict=True) if not good
        ],
    )
    read = {
        n: (str(d), int(s))
        for n, d, s in zip(names, done["digest"], done["size"], strict=True)
        if str(d)
    }
    return result, read
