"""The server's inference worker: concurrent requests batched, results and errors routed back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lookalike.server.batcher import EmbedBatcher


def test_concurrent_requests_get_their_own_rows_in_shared_batches() -> None:
    sizes: list[int] = []
    entered, gate = threading.Event(), threading.Event()

    def embed(batch: np.ndarray) -> np.ndarray:
        entered.set()
        gate.wait(10)  # hold the first batch so the others queue up behind it
        sizes.append(len(batch))
        return batch[:, :, 0, 0] * 2.0

    batcher = EmbedBatcher(embed, max_batch=4)
    inputs = [np.full((2, 1, 1, 1), float(k), dtype=np.float32) for k in range(8)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.embed, inputs[0])]
        assert entered.wait(10)
        futures += [pool.submit(batcher.embed, x) for x in inputs[1:]]
        deadline = time.monotonic() + 10
        while batcher._queue.qsize() < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    for k, out in enumerate(results):
        np.testing.assert_array_equal(out, np.full((2, 1), 2.0 * k))
    assert sizes == [2, 4, 4, 4, 2]  # the 7 waiting requests shared 4 forward passes
    assert batcher.batches == len(sizes) and batcher.images == 16
    batcher.close()
    with pytest.raises(RuntimeError, match="shut down"):
        batcher.embed(inputs[0])


def test_an_error_reaches_every_request_of_its_batch_and_the_worker_survives() -> None:
    calls = 0

    def embed(batch: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("broken batch")
        return batch[:, :, 0, 0]

    batcher = EmbedBatcher(embed)
    with pytest.raises(ValueError, match="broken batch"):
        batcher.embed(np.zeros((1, 1, 1, 1), np.float32))
    np.testing.assert_array_equal(batcher.embed(np.ones((1, 1, 1, 1), np.float32)), [[1.0]])
    batcher.close()
    with pytest.raises(ValueError, match="max_batch"):
        EmbedBatcher(embed, max_batch=0)
