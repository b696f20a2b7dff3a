"""Micro-batching of concurrent inference requests into one forward pass.

Requests from FastAPI's threadpool hand their preprocessed images to one worker thread,
which takes whatever has queued up (up to ``max_batch`` images) and embeds it in one
call. Nothing waits on a timer: while one batch runs the next one gathers, so a lone
client is served at once and many clients share forward passes. On a GPU that is where
the throughput comes from; on CPU, where a bigger batch is barely cheaper per image, the
point is that only this thread runs the forward pass, so sixteen concurrent requests never
start sixteen multi-threaded forward passes that fight over the cores.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from lookalike.inference.embedder import EmbedBatch


@dataclass
class _Request:
    images: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class EmbedBatcher:
    """Embed (N, C, H, W) arrays from many threads, batching them together.

    Args:
        embed: Embeds a preprocessed batch (B, C, H, W) into (B, D).
        max_batch: Most images per forward pass (a single larger request still runs whole).
    """

    def __init__(self, embed: EmbedBatch, *, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._embed = embed
        self.max_batch = max_batch
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.images = 0

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed preprocessed images (N, C, H, W); blocks until done.

        Returns:
            float32 (N, D).

        Raises:
            RuntimeError: The batcher is closed.
            Exception: Whatever the embedding function raised for this batch.
        """
        request = _Request(images)
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference worker has shut down")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="lookalike-inference", daemon=True
                )
                self._thread.start()
            self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        """Finish queued work and stop the worker thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first.images)
            while size < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
                size += len(more.images)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        try:
            stacked = np.concatenate([r.images for r in batch])
            out = self._embed(stacked)
        except BaseException as exc:  # handed to every waiting request, raised there
            for request in batch:
                request.error = exc
                request.done.set()
            return
        self.batches += 1
        self.images += len(stacked)
        start = 0
        for request in batch:
            request.result = out[start : start + len(request.images)]
            start += len(request.images)
            request.done.set()
