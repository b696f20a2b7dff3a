"""The pipelined loader: decode images in threads while the engine embeds the last batch.

:func:`embed_paths` keeps a sliding window of decode jobs (at most ``prefetch + 1``
batches of preprocessed images in memory) running in a thread pool — Pillow releases
the GIL while decoding and resizing, and both engines release it while they compute —
so decoding the next batches overlaps the forward pass of the current one. JPEGs are
decoded in draft mode (the DCT scales straight to about the size the model needs; see
:func:`lookalike.imaging.images.load_image`). Unreadable files are reported (path and reason) and
skipped; embeddings come back in input order.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from lookalike.errors import ImageError
from lookalike.imaging.images import load_image
from lookalike.imaging.preprocess import Preprocess

if TYPE_CHECKING:
    from lookalike.inference.embedder import Embedder


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


def embed_paths(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch: int = 2,
    progress: bool = True,
    draft: bool = True,
) -> EmbedResult:
    """Embed many image files, decoding in parallel with inference.

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

    Returns:
        The embeddings of the readable files, which ones they are, and the failures.

    Raises:
        ValueError: ``batch_size``, ``workers`` or ``prefetch`` out of range.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if prefetch < 0:
        raise ValueError(f"prefetch must be at least 0, got {prefetch}")
    threads = default_workers() if workers is None else workers
    if threads < 1:
        raise ValueError(f"workers must be at least 1, got {threads}")
    from tqdm import tqdm

    names = [os.fspath(p) for p in paths]
    preprocess = embedder.preprocess
    window = (prefetch + 1) * batch_size
    result = EmbedResult(np.zeros((0, embedder.embedding_dim), dtype=np.float32))
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    pending: deque[tuple[int, Future[np.ndarray]]] = deque()
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(names), unit="img", disable=not show, leave=False, smoothing=0.1)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lookalike-decode")
    try:
        queued = 0
        while queued < len(names) or pending or batch:
            while queued < len(names) and len(pending) < window:
                future = pool.submit(load_array, preprocess, names[queued], draft=draft)
                pending.append((queued, future))
                queued += 1
            if pending:
                index, future = pending.popleft()
                try:
                    batch.append(future.result())
                    result.indices.append(index)
                except ImageError as exc:
                    result.failures.append((names[index], str(exc)))
                    bar.update(1)
            if batch and (len(batch) == batch_size or not pending):
                chunks.append(embedder.embed(np.stack(batch), batch_size=batch_size))
                bar.update(len(batch))
                batch = []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    result.paths = [names[i] for i in result.indices]
    if chunks:
        result.embeddings = np.concatenate(chunks).astype(np.float32, copy=False)
    return result
