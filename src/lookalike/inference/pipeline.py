"""Many image files through an embedder: decode in threads while the engine embeds.

:func:`embed_files` is the one embedding loop for files: ``lookalike embed``, ``search``,
``dedup``, :meth:`lookalike.index.index.Index.update` (through :func:`iter_embed_files`, which
hands over each forward pass as it is done), ``score_pairs`` and the thumbnail maps all go
through it.

It keeps a sliding window of decode jobs (at most ``prefetch + 1`` batches of preprocessed
images in memory) running in a thread pool — Pillow releases the GIL while decoding and
resizing, and both engines release it while they compute — so decoding the next batches
overlaps the forward pass of the current one. JPEGs are decoded in draft mode (the DCT scales
straight to about the size the model needs; see :func:`lookalike.imaging.images.load_image`).
Unreadable files are reported (path and reason) and skipped; embeddings come back in input
order. :func:`save_embeddings` writes the result to ``.npz`` or ``.parquet``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from lookalike.errors import DataError, ImageError
from lookalike.imaging.images import load_image
from lookalike.imaging.preprocess import Preprocess

if TYPE_CHECKING:
    from lookalike.inference.embedder import Embedder

__all__ = [
    "EmbedResult",
    "LoadFn",
    "default_workers",
    "embed_files",
    "iter_embed_files",
    "load_array",
    "save_embeddings",
]

LoadFn = Callable[[str], np.ndarray]
"""Opens one file as a preprocessed float32 (C, H, W) array; raises ``ImageError`` if it cannot."""


@dataclass
class EmbedResult:
    """Embeddings of the readable files among many.

    Attributes:
        embeddings: float32 (N, D); row i belongs to ``paths[i]``.
        paths: The files embedded, in input order.
        indices: Their positions in the input.
        failures: (path, reason) for each file skipped, in input order; the reason is
            the :class:`~lookalike.errors.ImageError` message (it names the file).
    """

    embeddings: np.ndarray
    paths: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def default_workers() -> int:
    """Default decode threads: the CPU count, at least 2 (decoding also waits on I/O), at most 8."""
    return max(2, min(8, os.cpu_count() or 1))


def load_array(preprocess: Preprocess, path: str, *, draft: bool = True) -> np.ndarray:
    """Open and preprocess one image file.

    Args:
        preprocess: The model's preprocessing.
        path: The file.
        draft: Decode JPEGs in draft mode (as :meth:`Preprocess.load` does); off decodes
            every pixel first.

    Returns:
        float32 (C, H, W).

    Raises:
        ImageError: The file cannot be read.
    """
    if draft:
        return preprocess.load(path)
    mode: Literal["RGB", "L"] = "L" if preprocess.channels == 1 else "RGB"
    return preprocess.image_to_array(load_image(path, mode=mode))


def iter_embed_files(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch: int = 2,
    draft: bool = True,
    load: LoadFn | None = None,
) -> Generator[EmbedResult, None, None]:
    """Embed many image files, yielding each forward pass as soon as it is done.

    The pipeline of :func:`embed_files`, for callers that use each batch at once (the index
    commits it): decoding of the next batches goes on while the caller works. Close the
    iterator (or exhaust it) to stop the decode threads.

    Args:
        embedder, paths, batch_size, workers, prefetch, draft, load: As for :func:`embed_files`.

    Yields:
        One :class:`EmbedResult` per forward pass (at most ``batch_size`` files) with the
        failures met since the previous one, and a last one with failures only when files
        after the last batch could not be read. ``indices`` are positions in ``paths``;
        concatenated, the results are :func:`embed_files`'s.

    Raises:
        ValueError: ``batch_size``, ``workers`` or ``prefetch`` out of range, or the embedder
            returned another number of rows than images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if prefetch < 0:
        raise ValueError(f"prefetch must be at least 0, got {prefetch}")
    threads = default_workers() if workers is None else workers
    if threads < 1:
        raise ValueError(f"workers must be at least 1, got {threads}")
    return _pipeline(
        embedder, [os.fspath(p) for p in paths], batch_size, threads, prefetch, draft, load
    )


def _pipeline(
    embedder: Embedder,
    names: list[str],
    batch_size: int,
    threads: int,
    prefetch: int,
    draft: bool,
    load: LoadFn | None,
) -> Generator[EmbedResult, None, None]:
    """The decode window and the forward passes (arguments checked by the caller)."""
    preprocess = embedder.preprocess
    window = (prefetch + 1) * batch_size
    batch: list[np.ndarray] = []
    done = EmbedResult(_empty(embedder))
    pending: deque[tuple[int, Future[np.ndarray]]] = deque()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lookalike-decode")
    try:
        queued = 0
        while queued < len(names) or pending or batch:
            while queued < len(names) and len(pending) < window:
                if load is None:
                    future = pool.submit(load_array, preprocess, names[queued], draft=draft)
                else:
                    future = pool.submit(load, names[queued])
                pending.append((queued, future))
                queued += 1
            if pending:
                index, future = pending.popleft()
                try:
                    batch.append(future.result())
                    done.indices.append(index)
                except ImageError as exc:
                    done.failures.append((names[index], str(exc)))
            if batch and (len(batch) == batch_size or not pending):
                rows = embedder.embed(np.stack(batch), batch_size=batch_size)
                if len(rows) != len(batch):
                    raise ValueError(
                        f"the embedder returned {len(rows)} rows for {len(batch)} images; it "
                        "must return one row per path, in order"
                    )
                done.embeddings = np.asarray(rows, dtype=np.float32)
                done.paths = [names[i] for i in done.indices]
                yield done
                batch, done = [], EmbedResult(_empty(embedder))
        if done.failures:
            yield done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def embed_files(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch: int = 2,
    progress: bool = False,
    draft: bool = True,
    load: LoadFn | None = None,
) -> EmbedResult:
    """Embed many image files, decoding in parallel with inference; skip unreadable ones.

    Args:
        embedder: Any :class:`~lookalike.inference.Embedder` (an engine or a SiameseModel).
        paths: Image files.
        batch_size: Images per forward pass.
        workers: Decode threads (``None``: :func:`default_workers`).
        prefetch: Batches decoded ahead of the one being embedded (memory bound: at most
            ``(prefetch + 1) * batch_size`` preprocessed images at a time).
        progress: Show a tqdm bar with images/s on stderr (only when stderr is a terminal).
        draft: JPEG draft-mode decoding (faster; embeddings within about 0.99 cosine of
            full decoding for photos several times larger than the model input).
        load: Opens one file as the model's input (C, H, W), in the decode threads, raising
            :class:`~lookalike.errors.ImageError` when it cannot (``None``:
            :func:`load_array` with the embedder's preprocessing and ``draft``). A caller
            that keeps something else of each decoded image (a thumbnail) passes its own.

    Returns:
        The embeddings of the readable files, which ones they are, and the failures.

    Raises:
        ValueError: ``batch_size``, ``workers`` or ``prefetch`` out of range, or the embedder
            returned another number of rows than images.
    """
    from lookalike._progress import bar

    chunks = iter_embed_files(
        embedder,
        paths,
        batch_size=batch_size,
        workers=workers,
        prefetch=prefetch,
        draft=draft,
        load=load,
    )
    result = EmbedResult(_empty(embedder))
    rows: list[np.ndarray] = []
    shown = bar(desc="embedding", total=len(paths), unit="img", progress=progress)
    with closing(chunks), shown:
        for chunk in chunks:
            rows.append(chunk.embeddings)
            result.paths += chunk.paths
            result.indices += chunk.indices
            result.failures += chunk.failures
            shown.update(len(chunk.indices) + len(chunk.failures))
    if rows:
        result.embeddings = np.concatenate(rows).astype(np.float32, copy=False)
    return result


def save_embeddings(path: str | os.PathLike[str], result: EmbedResult) -> Path:
    """Write embeddings with their paths to ``.npz`` or ``.parquet``.

    The .npz holds ``embeddings`` (N, D) float32, ``paths`` (N,) and ``skipped`` (the files
    that could not be read, sorted); the Parquet file holds columns ``path`` and ``embedding``.

    Args:
        path: The file to write (its folder is created).
        result: From :func:`embed_files`.

    Returns:
        The path written.

    Raises:
        DataError: Unsupported extension, or Parquet without pyarrow.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(
            out,
            embeddings=result.embeddings,
            paths=np.asarray(result.paths, dtype=str),
            skipped=np.asarray(sorted({p for p, _ in result.failures}), dtype=str),
        )
    elif out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DataError("Parquet output needs pyarrow: pip install lookalike[parquet]") from exc
        table = pa.table(
            {"path": result.paths, "embedding": list(result.embeddings.astype(np.float32))}
        )
        pq.write_table(table, out)
    else:
        raise DataError(f"--out must end in .npz or .parquet, got {out.name}")
    return out


def _empty(embedder: Embedder) -> np.ndarray:
    """No embeddings: float32 (0, D)."""
    return np.zeros((0, embedder.embedding_dim), dtype=np.float32)
