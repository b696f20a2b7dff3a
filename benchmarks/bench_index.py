"""Indexing: end-to-end throughput against the model alone, and re-indexing an unchanged folder.

(a) ~1-megapixel JPEGs (quality 90, ``bench_engine.make_photos``) → ``Index.update`` (walk,
    hash, pipelined decode, embed, commit to SQLite, FAISS) versus the same engine's
    model-only throughput at the same batch size, in the same process; for ONNX Runtime and
    PyTorch, and their ratio.
(b) Re-indexing an unchanged folder of 10,000 images (smaller JPEGs, 320×240, so the first
    run takes minutes rather than an hour here): the second run's time as a share of the first.

    bash scripts/dev run python benchmarks/bench_index.py [--photos 192] [--unchanged 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from _report import write_section
from bench_engine import make_photos
from lookalike.index.index import Index
from lookalike.inference import load_embedder
from lookalike.inference.pipeline import load_array

BATCH = 32


def model_only(embedder: Any, paths: list[Path], rounds: int = 2) -> float:
    """Images/s of the engine on already-decoded, preprocessed images (best of rounds)."""
    arrays = np.stack([load_array(embedder.preprocess, str(p)) for p in paths[: BATCH * 3]])
    embedder.embed_batch(arrays[:BATCH])  # warm-up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for s in range(0, len(arrays), BATCH):
            embedder.embed_batch(arrays[s : s + BATCH])
        best = max(best, len(arrays) / (time.perf_counter() - start))
    return best


def index_rate(embedder: Any, root: Path, work: Path) -> float:
    """Images/s of a first ``Index.update`` of ``root``."""
    folder = work / f"idx-{embedder.engine}"
    index = Index.create(folder, root, model_key=str(embedder.key), dim=embedder.embedding_dim)
    with index:
        start = time.perf_counter()
        report = index.update(embedder, batch_size=BATCH, progress=False)
        seconds = time.perf_counter() - start
    return len(report.added) / seconds


def unchanged(embedder: Any, n: int, work: Path) -> tuple[float, float]:
    """Seconds of the first and of a second (unchanged) update of ``n`` small JPEGs."""
    root = work / "small"
    rng = np.random.default_rng(1)
    for i in range(n):
        sub = root / f"d{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((320, 240), Image.Resampling.BILINEAR)
        image.save(sub / f"img{i:05d}.jpg", quality=90)

    with Index.create(
        work / "idx-small", root, model_key=str(embedder.key), dim=embedder.embedding_dim
    ) as index:
        start = time.perf_counter()
        first = index.update(embedder, batch_size=BATCH, progress=False)
        t1 = time.perf_counter() - start
        start = time.perf_counter()
        second = index.update(embedder, batch_size=BATCH, progress=False)
        t2 = time.perf_counter() - start
    assert len(first.added) == n and second.embedded == 0 and second.unchanged == n
    return t1, t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=192)
    parser.add_argument("--unchanged", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "photos"
        root.mkdir()
        paths = make_photos(root, args.photos)
        rows, rates = [], {}
        for engine in ("onnx", "torch"):
            embedder = load_embedder(engine=engine, device="cpu")
            alone = model_only(embedder, paths)
            e2e = index_rate(embedder, root, work)
            rates[engine] = e2e
            rows.append(f"| {engine} | {alone:.1f} | {e2e:.1f} | **{e2e / alone:.2f}** |")
            print(rows[-1], flush=True)
        onnx = load_embedder(engine="onnx", device="cpu")
        t1, t2 = unchanged(onnx, args.unchanged, work)
    body = f"""
(a) {args.photos} photos of 1152×864 (≈1 MP), JPEG quality 90, default `mobilenet_v2` at
224 px, batch {BATCH}: the first `Index.update` (walk, hash, pipelined draft-mode decode,
embed, SQLite commits, FAISS) against the same engine's model-only throughput on
pre-decoded images (target ≥ 0.85):

| engine | model only (img/s) | index end to end (img/s) | ratio |
|---|---|---|---|
{chr(10).join(rows)}

End-to-end ONNX Runtime / PyTorch: **{rates["onnx"] / rates["torch"]:.1f}×**.

(b) Re-indexing an unchanged folder of {args.unchanged:,} JPEGs (320×240): first run
{t1:.1f} s, second run {t2:.2f} s = **{100 * t2 / t1:.1f} %** of the first (target ≤ 5 %;
the second run only lists the folder and compares size and mtime with SQLite).
"""
    write_section("bench_index", "Indexing: end to end vs the model; unchanged re-index", body)
    print(body)


if __name__ == "__main__":
    main()
