"""milvus-lite vs FAISS behind the same ``Index``: build time, recall@10, query latency, memory.

Run: ``python benchmarks/bench_milvus.py`` (100,000 vectors; about 3 minutes on 2 cores;
``--n 1000000`` for a million, ``--n 20000`` for a quick run). Writes the ``bench_milvus``
section of BENCHMARKS.md (``--no-write``: print only).

**What is measured.** Each store builds one index of the same vectors through the real code
path: :class:`~lookalike.index.index.Index` with its vector backend (SQLite is the source of
truth for both; the batches a real ``update`` commits, 2,000 vectors each, then ``finish``).
Build time therefore includes the SQLite writes (the same for every store) and, for Milvus,
the upserts over milvus-lite's in-process gRPC server and the final flush, for FAISS the
structure (IVF: trained from SQLite at ``finish``). Then 300 single-vector queries are timed
one at a time through :meth:`Index.search` (k = 10; the ids are looked up in SQLite for every
store), and recall@10 is measured against an exact search with NumPy. Each store runs in its
own child process, whose peak resident memory is read from ``/proc/self/status`` (``VmHWM``):
milvus-lite 3.2 runs *inside* the process (a gRPC server on threads, no separate process), so
the child's peak is the whole cost of the store plus the client and the benchmark's vectors.

**Data.** ``n`` clustered unit vectors of dimension ``--dim`` (default 256: the size of a
trained projection head, and a fifth of the 1,280 floats per vector the default backbone's
embedding would send through gRPC, which keeps the 100k run within minutes on 2 cores): ``n /
50`` cluster centres uniform on the sphere, each point ``normalise(centre + σ·g)`` with ``σ``
chosen so a point's cosine to its centre is about 0.75 (a point's ten nearest neighbours are
others of its cluster, as with real near-duplicate-rich photo collections); queries are fresh
points of the same clusters.

**Stores and structures.** FAISS ``flat`` (exact) and ``ivf`` (``4·√n`` lists, an eighth of
them probed: lookalike's defaults); milvus-lite ``FLAT`` (exact; lookalike's default on
milvus-lite) and ``IVF_FLAT`` (1,024 lists, 128 probed: lookalike's mapping of ``--kind ivf``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _report import write_section

TITLE = "Milvus-lite vs FAISS behind the Index"
CONFIGS = [
    ("faiss", "flat"),
    ("faiss", "ivf"),
    ("milvus-lite", "flat"),
    ("milvus-lite", "ivf"),
]
QUERIES = 300
BATCH = 2000


def vectors(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clustered unit vectors (n, dim) and ``QUERIES`` fresh queries of the same clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 50), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = 0.88 / np.sqrt(dim)  # cosine to the centre about 0.75

    def draw(count: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), count)] + sigma * rng.normal(size=(count, dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(QUERIES)


def exact_top10(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row numbers of each query's 10 best inner products (QUERIES, 10), in blocks."""
    best_s = np.full((len(queries), 10), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 10), np.int64)
    for start in range(0, len(data), 50_000):
        s = queries @ data[start : start + 50_000].T
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate(
            [best_i, np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)], axis=1
        )
        top = np.argsort(-s_all, axis=1)[:, :10]
        best_s = np.take_along_axis(s_all, top, axis=1)
        best_i = np.take_along_axis(i_all, top, axis=1)
    return best_i


def memory_gib(field: str = "VmHWM") -> float:
    """A memory line of this process's ``/proc/self/status``, GiB: ``VmHWM`` (peak resident
    memory since start or since :func:`reset_peak`) or ``VmRSS`` (resident now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def reset_peak() -> None:
    """Start ``VmHWM`` again from the resident memory now (Linux ≥ 4.0: ``clear_refs`` 5), so
    the peak measured is the store's, not the data generation's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def run_one(store: str, kind: str, n: int, dim: int) -> dict[str, Any]:
    """Build, query and measure one store in this process."""
    from lookalike.index.index import Index
    from lookalike.index.update import Changes

    data, queries = vectors(n, dim)
    truth = exact_top10(data, queries)
    gc.collect()
    held = memory_gib("VmRSS")  # the data, the ground truth, lookalike and its libraries
    reset_peak()
    with tempfile.TemporaryDirectory(prefix="bench-milvus-") as tmp:
        spec = None if store == "faiss" else f"milvus-lite:{tmp}/vectors.db"
        index = Index.create(
            Path(tmp) / "idx",
            Path(tmp) / "photos",
            model_key="bench",
            dim=dim,
            kind=kind,
            store=spec,
        )
        started = time.perf_counter()
        backend = index.backend
        rows: dict[str, Any] = {}
        with backend.writer():
            backend.begin()
            for start in range(0, n, BATCH):
                batch = Changes()
                for i in range(start, min(start + BATCH, n)):
                    digest = f"{i:032x}"
                    batch.vectors[digest] = data[i]
                    batch.upserts.append((f"v{i:07d}.png", 1, 1, digest))
                backend.commit(batch, rows)
            backend.finish()
        kind_name = index.kind  # FAISS: loads the structure written by finish
        build = time.perf_counter() - started
        index.search(queries[:5], 10)  # warm up
        latencies, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            hits = index.search(q, 10)[0]
            latencies.append(time.perf_counter() - t0)
            found.append([h.id - 1 for h in hits])  # ids are 1, 2, … in insertion order
        pairs = zip(found, truth.tolist(), strict=True)
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in pairs]))
        index.close()
    ms = np.asarray(latencies) * 1000
    return {
        "store": store,
        "kind": kind_name,
        "build_s": build,
        "recall": recall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "peak_gib": memory_gib(),
        "held_gib": held,
    }


def table(results: list[dict[str, Any]], n: int, dim: int, threads: int) -> str:
    """The Markdown section."""
    base = next(r for r in results if r["store"] == "faiss" and r["kind"] == "flat")
    lines = [
        f"{n:,} clustered unit vectors of dimension {dim}, {QUERIES} single-vector queries "
        "(k = 10) through `Index.search`; each store in its own process (peak memory: `VmHWM`, "
        "which for milvus-lite includes its in-process server, reset after the data are made: "
        "*above data* is the peak during build and queries minus the resident memory before "
        f"the build, which holds the {n * dim * 4 / 2**20:.0f} MiB of float32 data); {threads} "
        "OpenMP/BLAS thread(s) per process. Ratios are to FAISS flat, measured in the same run.",
        "",
        "| store | structure | build s (×) | recall@10 | p50 ms (×) | p99 ms | peak GiB "
        "| above data GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        build, p50 = r["build_s"], r["p50_ms"]
        lines.append(
            f"| {r['store']} | {r['kind']} | {build:.1f} ({build / base['build_s']:.1f}×) "
            f"| {r['recall']:.3f} | {p50:.2f} ({p50 / base['p50_ms']:.2f}×) "
            f"| {r['p99_ms']:.2f} | {r['peak_gib']:.2f} | {r['peak_gib'] - r['held_gib']:.2f} |"
        )
    lines += [
        "",
        "Build includes the SQLite transactions every store shares (2,000 vectors per batch, "
        "as `lookalike index` commits them). Run: `python benchmarks/bench_milvus.py` "
        "(`--n 1000000` for a million).",
    ]
    return "\n".join(lines)


def main() -> None:
    global QUERIES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenMP/BLAS threads per store (default 1: single-query latency on a shared "
        "machine is otherwise dominated by OpenMP spinning against other work)",
    )
    parser.add_argument("--queries", type=int, default=QUERIES, help="single-vector queries timed")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    parser.add_argument("--one", nargs=2, metavar=("STORE", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    QUERIES = args.queries
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.n, args.dim)))
        return
    results = []
    for store, kind in CONFIGS:
        started = time.perf_counter()
        argv = ["--one", store, kind, "--n", str(args.n), "--dim", str(args.dim)]
        argv += ["--queries", str(args.queries)]
        threads = str(args.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, __file__, *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            sys.exit(f"{store} {kind} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{store} {kind}: {result} ({time.perf_counter() - started:.0f} s)", flush=True)
    body = table(results, args.n, args.dim, args.threads)
    print(body)
    if not args.no_write:
        key = "bench_milvus" if args.n == 100_000 else f"bench_milvus_{args.n}"
        write_section(key, f"{TITLE} ({args.n:,} vectors)", body)


if __name__ == "__main__":
    main()
