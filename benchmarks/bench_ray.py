"""Indexing on Ray: 1 against 2 embedding actors, and the overhead against one process.

A folder of ``--photos`` generated ~1-megapixel JPEGs (``bench_engine.make_photos``) is
indexed from scratch with ``mobilenet_v2`` in ONNX Runtime on CPU, batch 32, by a first
``Index.update``:

* in one process (decode threads + the engine; the default path, no Ray);
* on a local Ray (started once, with 3 CPUs: 2 actors + 1 for the read/hash/decode tasks)
  with ``RayOptions(workers=1)`` and ``workers=2`` — each actor loads the model once and runs
  it with 1 thread.

Each run gets a fresh index; the runs alternate for ``--rounds`` rounds and the best of each
counts. Ray's start-up (``ray.init`` of the local cluster) is timed on its own and left out
of the Ray rates; the actors' start and model load are in them (every update starts its
pool). Writes its section of BENCHMARKS.md:

    PYTHONPATH=$PWD/src python benchmarks/bench_ray.py [--photos 400] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import write_section
from bench_engine import make_photos
from lookalike.index.index import Index
from lookalike.inference import ModelSource, load_embedder
from lookalike.inference.ray_data import ModelLoader, RayOptions, ray_session

BATCH = 32


def first_update(embedder: Any, root: Path, folder: Path, ray: RayOptions | None) -> float:
    """Images/s of a first ``Index.update`` of ``root`` into a fresh index at ``folder``."""
    key, dim = str(embedder.key), embedder.embedding_dim
    with Index.create(folder, root, model_key=key, dim=dim, overwrite=True) as index:
        start = time.perf_counter()
        report = index.update(embedder, batch_size=BATCH, progress=False, ray=ray)
        seconds = time.perf_counter() - start
    assert not report.skipped and report.embedded == len(report.added), report.summary()
    return len(report.added) / seconds


def measure(work: Path, photos: int, rounds: int) -> str:
    """Run the comparison in ``work``; the Markdown section."""
    root = work / "photos"
    root.mkdir()
    make_photos(root, photos)
    past = time.time() - 60  # nothing "racily" recent
    for path in root.iterdir():
        os.utime(path, (past, past))
    source = ModelSource()
    embedder = load_embedder(source, engine="onnx", device="cpu")  # also caches the export
    loader = ModelLoader(source, engine="onnx", device="cpu")
    rates: dict[str, float] = {"single": 0.0, "ray1": 0.0, "ray2": 0.0}
    start = time.perf_counter()
    with ray_session(None, workers=2):
        startup = time.perf_counter() - start
        for _ in range(rounds):
            for name, ray in (
                ("single", None),
                ("ray1", RayOptions(loader, workers=1)),
                ("ray2", RayOptions(loader, workers=2)),
            ):
                rates[name] = max(rates[name], first_update(embedder, root, work / name, ray))
    single, ray1, ray2 = rates["single"], rates["ray1"], rates["ray2"]
    return f"""
{photos} generated photos of 1152×864 (≈1 MP, JPEG quality 90), `mobilenet_v2` at 224 px in
ONNX Runtime on CPU, batch {BATCH}, a first `Index.update` into a fresh index each time, best
of {rounds} alternated round(s), one machine ({os.cpu_count()} cores):

| run | images/s | vs one process |
|---|---:|---:|
| one process (no Ray) | {single:.1f} | 1.00 |
| Ray, 1 actor | {ray1:.1f} | {ray1 / single:.2f} |
| Ray, 2 actors | {ray2:.1f} | {ray2 / single:.2f} |

**2 actors / 1 actor: {ray2 / ray1:.2f}×.** Starting the local Ray (3 CPUs, no dashboard)
took {startup:.1f} s, not counted above; each Ray update also starts its actor pool (each
actor loads the cached ONNX export once) and runs two Ray Data pipelines (hashing, then
read + hash + decode tasks feeding the actors), which a {photos}-photo job does not amortise.
On one small machine Ray can only add overhead (its workers share the same cores with the
decode tasks and the driver); it pays off when the cluster has more cores or GPUs than one
machine.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("LOOKALIKE_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        body = measure(Path(tmp), args.photos, args.rounds)
    print(body)
    write_section("bench_ray", "Indexing on Ray: 1 vs 2 actors, and against one process", body)


if __name__ == "__main__":
    main()
