"""A million vectors: search and dedup on the compressed IVF structure (IVF-SQ8).

Run: ``bash scripts/dev run python benchmarks/bench_million.py`` (about 10 minutes on 2 cores;
about 7 GB of disk in a temporary folder, deleted at the end). ``--n 50000`` is a quick run.
Writes the ``bench_million`` section of BENCHMARKS.md at the full size (or with ``--write``;
``--save-json`` / ``--from-json`` keep the figures and render them again).

**Data.** ``n`` synthetic unit vectors of the default model's dimension (1,280): ``n / 50``
cluster centres uniform on the unit sphere (20,000 for a million); each point is
``normalise(centre + σ·g)`` with ``g ~ N(0, I)`` and ``σ = 0.025`` for a random centre
(cosine to its centre ≈ 0.75; two points of one cluster ≈ 0.56 ± 0.02, of different clusters
0 ± 0.03, so a point's ten nearest neighbours are others of its cluster). Then ``n / 100``
near-duplicate groups are planted: an original (a random point) and one, two or three copies
(half, a third and a sixth of the groups); a quarter of the copies exact, the others
``normalise(original + τ·g)`` with ``τ`` uniform in [0.004, 0.012] (cosine to the original
0.91–0.99; the default model's edited copies score 0.71–0.99). The copies are part of the
``n``. Queries are fresh points from the same generator, not in the index. Vectors are stored
as float16 in a temporary file, read back in chunks and widened to float32: every method sees
the same values, and no float32 copy of all ``n`` (5.1 GB) is ever held.

**Memory.** The benchmark process peaks at about 3 GB (the structure, the k-means sample and a
few chunks). Dedup and the rebuild from SQLite run in child processes, whose peak is read from
``VmHWM`` (see :func:`hwm_gib`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from _report import write_section
from lookalike.dedup.calibrate import DEFAULT_DEDUP_THRESHOLD
from lookalike.dedup.groups import dedup_index
from lookalike.index import faiss_structures as vi
from lookalike.index.index import DB_NAME, Index
from lookalike.index.store import Store

TITLE = "A million vectors: search and dedup"
DIM = 1280
CHUNK = 50_000
SIGMA, COPY_NOISE = 0.025, (0.004, 0.012)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rss_gib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss``: this process's peak resident memory, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def hwm_gib() -> float:
    """``VmHWM``: the peak resident memory of this process's own address space, GiB.

    Unlike ``ru_maxrss``, which Linux carries across ``fork`` + ``exec`` (a child started by a
    large parent reports the parent's peak until it exceeds it), this starts afresh at exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


@dataclass
class Generator:
    """The clustered generator described in the module docstring."""

    n: int
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        self.n_centres = max(1, self.n // 50)
        self.centres = unit(rng.standard_normal((self.n_centres, DIM), dtype=np.float32))

    def points(self, rows: int, stream: int) -> np.ndarray:
        """``rows`` fresh points (float32 unit rows) from random stream ``stream``."""
        rng = np.random.default_rng([self.seed, 1, stream])
        labels = rng.integers(0, self.n_centres, rows)
        noise = rng.standard_normal((rows, DIM), dtype=np.float32)
        noise *= SIGMA
        noise += self.centres[labels]
        return unit(noise)


@dataclass
class Data:
    """The vectors on disk (float16) and the planted groups (row numbers, original first)."""

    path: Path
    n: int
    groups: list[list[int]]

    def read(self, start: int, count: int) -> np.ndarray:
        raw = np.fromfile(self.path, np.float16, count * DIM, offset=start * DIM * 2)
        return raw.reshape(count, DIM).astype(np.float32)

    def chunks(self, size: int = CHUNK) -> Any:
        for start in range(0, self.n, size):
            yield start, self.read(start, min(size, self.n - start))

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Selected rows (any order), read chunk by chunk."""
        rows = np.asarray(rows)
        out = np.zeros((len(rows), DIM), np.float32)
        order = np.argsort(rows)
        for start, x in self.chunks():
            sel = order[(rows[order] >= start) & (rows[order] < start + len(x))]
            out[sel] = x[rows[sel] - start]
        return out


def generate(gen: Generator, path: Path) -> Data:
    """Write ``gen.n`` rows: base points, then the planted copies (see the docstring)."""
    rng = np.random.default_rng([gen.seed, 2])
    n_groups = max(1, gen.n // 100)
    sizes = rng.choice([1, 2, 3], n_groups, p=[1 / 2, 1 / 3, 1 / 6])
    n_copies = int(sizes.sum())
    base = gen.n - n_copies
    with path.open("wb") as fp:
        for k, start in enumerate(range(0, base, CHUNK)):
            gen.points(min(CHUNK, base - start), stream=k).astype(np.float16).tofile(fp)
    data = Data(path, base, [])
    originals = np.sort(rng.choice(base, n_groups, replace=False))
    orig = data.rows(originals)
    copies = []
    row = base
    for g, size in enumerate(sizes.tolist()):
        members = [int(originals[g])]
        for _ in range(size):
            if rng.random() < 0.25:
                copy = orig[g]
            else:
                tau = rng.uniform(*COPY_NOISE)
                copy = orig[g] + tau * rng.standard_normal(DIM).astype(np.float32)
                copy = copy / np.linalg.norm(copy)
            copies.append(copy)
            members.append(row)
            row += 1
        data.groups.append(members)
    with path.open("ab") as fp:
        np.asarray(copies, np.float32).astype(np.float16).tofile(fp)
    data.n = gen.n
    return data


def exact_topk(data: Data, queries: np.ndarray, k: int, limit: int | None = None) -> np.ndarray:
    """Exact top-``k`` rows of each query by inner product, in chunks (over ``limit`` rows)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start, x in data.chunks():
        if limit is not None and start >= limit:
            break
        if limit is not None:
            x = x[: limit - start]
        s = queries @ x.T
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate([best_i, start + np.arange(len(x))[None, :].repeat(len(s), 0)], 1)
        top = np.argpartition(-s_all, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(s_all, top, 1)
        best_i = np.take_along_axis(i_all, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def storage_choice(data: Data, queries: np.ndarray, m: int) -> list[dict[str, Any]]:
    """Exhaustive scans of the first ``m`` rows stored as float32, fp16 and SQ8."""
    x = data.read(0, m)
    truth = exact_topk(data, queries, 10, limit=m)
    rows = []
    for name, factory in (("float32", "Flat"), ("fp16", "SQfp16"), ("SQ8", "SQ8")):
        index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(x[:: max(1, m // 50_000)])
        index.add(x)
        start = time.perf_counter()
        _, found = index.search(queries, 10)
        per_query = (time.perf_counter() - start) / len(queries)
        rows.append(
            {
                "storage": name,
                "bytes": int(index.sa_code_size()) if name != "float32" else 4 * DIM,
                "recall": recall_at(found, truth),
                "scan_ms": per_query * 1e3,
            }
        )
        del index
    return rows


def build(data: Data, config: vi.VectorIndexConfig) -> tuple[Any, dict[str, float]]:
    """Train on a sample (as ``faiss_structures.build`` would), add in chunks."""
    size = vi.training_size(data.n, config)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(data.n, size, replace=False))
    start = time.perf_counter()
    sample = data.rows(pick)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    index = vi.create(data.n, DIM, config, sample)
    train_s = time.perf_counter() - start
    del sample
    start = time.perf_counter()
    for first, x in data.chunks():
        vi.add(index, np.arange(first + 1, first + 1 + len(x), dtype=np.int64), x)
    add_s = time.perf_counter() - start
    return index, {"sample": size, "read_s": read_s, "train_s": train_s, "add_s": add_s}


def latencies(
    index: Any, queries: np.ndarray, truth: np.ndarray, nprobes: list[int], rounds: int
) -> list[dict[str, float]]:
    """Single-query searches (k = 10, one query per call) at each ``nprobe``.

    ``rounds`` rounds, each running every ``nprobe`` over all queries in turn (interleaved,
    so drift on these shared cores hits every ``nprobe`` alike); each ``nprobe`` reports the
    round with the lowest p50.
    """
    best: dict[int, dict[str, float]] = {}
    for _ in range(rounds):
        for nprobe in nprobes:
            config = vi.VectorIndexConfig(nprobe=nprobe)
            vi.search(index, queries[:20], 10, config)  # warm up
            times, found = [], []
            for q in queries:
                start = time.perf_counter()
                _, ids = vi.search(index, q[None, :], 10, config)
                times.append(time.perf_counter() - start)
                found.append(ids[0] - 1)
            t = np.asarray(times) * 1e3
            row = {
                "nprobe": nprobe,
                "recall": recall_at(np.asarray(found), truth),
                "p50": float(np.percentile(t, 50)),
                "p99": float(np.percentile(t, 99)),
            }
            if nprobe not in best or row["p50"] < best[nprobe]["p50"]:
                best[nprobe] = row
            print(f"  nprobe {nprobe}: {row}", flush=True)
    return [best[p] for p in nprobes]


def numpy_baseline(data: Data, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The seeds' search: ``scores = emb @ q`` over every row, then ``argpartition``.

    The float32 matrix (N × 1,280 × 4 bytes) is taken 100,000 rows at a time; each query's
    product with each block is timed on its own, and the times are summed (a matrix-vector
    product reads the matrix once, so blocks of 512 MB cost what the whole does).

    Returns:
        Median seconds per query, and recall@10 of its answers against ``truth`` (rows).
    """
    scores = np.zeros((len(queries), data.n), np.float32)
    spent = np.zeros(len(queries))
    for start, x in data.chunks(100_000):
        for i, q in enumerate(queries):
            t = time.perf_counter()
            scores[i, start : start + len(x)] = x @ q
            spent[i] += time.perf_counter() - t
    tops = []
    for i in range(len(queries)):
        t = time.perf_counter()
        top = np.argpartition(-scores[i], 10)[:10]
        top = top[np.argsort(-scores[i][top])]
        spent[i] += time.perf_counter() - t
        tops.append(top)
    return float(np.median(spent)), recall_at(np.asarray(tops), truth)


def make_index_folder(folder: Path, data: Data, index: Any, kind: str) -> float:
    """A real lookalike index of ``data``: SQLite rows and vectors, and the structure's file.

    Row ``r`` becomes file id ``r + 1`` at ``img/<r // 1000>/<r>.jpg`` (no image files exist;
    dedup then keeps the shortest, first path). Returns seconds taken.
    """
    start = time.perf_counter()
    root = folder / "root"
    root.mkdir(parents=True)
    Index.create(folder / "index", root, model_key="synthetic", dim=DIM, kind=kind).close()
    store = Store(folder / "index" / DB_NAME)
    for first, x in data.chunks():
        with store.transaction():
            for k, vector in enumerate(x):
                row = first + k
                digest = f"{row:032x}"
                store.put_vector(digest, vector)
                file_id = store.insert_file(f"img/{row // 1000:04d}/{row:07d}.jpg", 1, 0, digest)
                assert file_id == row + 1
    with store.transaction():
        generation = store.bump_generation()
    store.close()
    vi.write_file(index, folder / "index", generation)
    return time.perf_counter() - start


def dedup_child(folder: str, threshold: float, nprobe: int, out: str) -> None:
    """Child process: open the index, run :func:`dedup_index`, report time and peak RSS."""
    start = time.perf_counter()
    with Index.open(folder) as index:
        index.structure()
        load_s = time.perf_counter() - start
        groups = dedup_index(index, threshold, nprobe=nprobe)
    total_s = time.perf_counter() - start
    result = {
        "load_s": load_s,
        "total_s": total_s,
        "peak_rss_gib": rss_gib(),
        "hwm_gib": hwm_gib(),
        "groups": [list(g.ids) for g in groups],
    }
    Path(out).write_text(json.dumps(result))


def rebuild_child(folder: str, out: str) -> None:
    """Child process: open the index with no FAISS file, so it is rebuilt from SQLite."""
    start = time.perf_counter()
    with Index.open(folder) as index:
        structure = index.structure()  # streamed from SQLite, trained, filled, written
        result = {
            "rebuild_s": time.perf_counter() - start,
            "hwm_gib": hwm_gib(),
            "ntotal": int(structure.ntotal),
            "kind": vi.kind_of(structure),
            "written": len(list(Path(folder).glob("vectors-*.faiss"))),
        }
    Path(out).write_text(json.dumps(result))


def evaluate_dedup(data: Data, found: list[list[int]], threshold: float) -> dict[str, Any]:
    """Compare found groups (file ids) with the planted ones (rows; id = row + 1)."""
    group_of = {}
    for g, members in enumerate(found):
        for i in members:
            group_of[i - 1] = g
    planted_rows = {r for members in data.groups for r in members}
    pairs = found_pairs = exact = 0
    for members in data.groups:
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pairs += 1
                ga, gb = group_of.get(members[a]), group_of.get(members[b])
                found_pairs += ga is not None and ga == gb
        gs = {group_of.get(r) for r in members}
        if len(gs) == 1 and None not in gs and len(found[gs.pop()]) == len(members):
            exact += 1
    extra_rows = sorted(r for r in group_of if r not in planted_rows)
    unplanted = [g for g in found if not any(i - 1 in planted_rows for i in g)]
    # Are the links outside the planted groups real (float32 score >= threshold)?
    real = 0
    if extra_rows:
        vectors = data.rows(np.asarray(extra_rows))
        where = {r: k for k, r in enumerate(extra_rows)}
        for r in extra_rows:
            mates = [i - 1 for i in found[group_of[r]] if i - 1 != r]
            others = data.rows(np.asarray(mates))
            real += bool((others @ vectors[where[r]] >= threshold).any())
    return {
        "planted_groups": len(data.groups),
        "planted_pairs": pairs,
        "pair_recall": found_pairs / pairs,
        "groups_exact": exact,
        "found_groups": len(found),
        "unplanted_groups": len(unplanted),
        "extra_members": len(extra_rows),
        "extra_members_real": real,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nprobes", default="1,2,4,8,16,32,64,128")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds (best p50 kept)")
    parser.add_argument("--exhaustive-queries", type=int, default=200)
    parser.add_argument("--baseline-queries", type=int, default=5)
    parser.add_argument("--subset", type=int, default=200_000)
    parser.add_argument("--threshold", type=float, default=DEFAULT_DEDUP_THRESHOLD)
    parser.add_argument("--join-nprobe", type=int, default=8)
    parser.add_argument("--kind", default="ivf_sq8", choices=vi.KINDS)
    parser.add_argument("--skip-dedup", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--save-json", help="also write the figures to this JSON file")
    parser.add_argument("--from-json", help="only render figures saved with --save-json")
    parser.add_argument("--skip-rebuild", action="store_true")
    for child in ("--dedup-child", "--rebuild-child"):
        parser.add_argument(child, nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dedup_child:
        dedup_child(args.dedup_child[0], args.threshold, args.join_nprobe, args.dedup_child[1])
        return
    if args.rebuild_child:
        rebuild_child(*args.rebuild_child)
        return
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        for key, value in saved["args"].items():
            setattr(args, key, value)
        write_section("bench_million", TITLE, render(saved["report"], args))
        return

    t_all = time.perf_counter()
    threads = faiss.omp_get_max_threads()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_million-") as tmp:
        work = Path(tmp)
        gen = Generator(args.n)
        t = time.perf_counter()
        data = generate(gen, work / "vectors.f16")
        gen_s = time.perf_counter() - t
        queries = gen.points(args.queries, stream=10**6)
        print(f"generated {data.n} in {gen_s:.0f} s", flush=True)

        t = time.perf_counter()
        truth = exact_topk(data, queries, 10)
        truth_s = time.perf_counter() - t
        print(f"ground truth in {truth_s:.0f} s", flush=True)

        m = min(args.subset, data.n)
        choice = storage_choice(data, queries[: args.exhaustive_queries], m)
        print("storage", choice, flush=True)

        config = vi.VectorIndexConfig(kind=args.kind)
        index, times = build(data, config)
        kind = vi.kind_of(index)
        ivf = faiss.extract_index_ivf(index)
        nlist, default_np = int(ivf.nlist), vi.default_nprobe(int(ivf.nlist), kind)
        print(f"built {kind} nlist {nlist}: {times}", flush=True)

        nprobes = sorted({int(p) for p in args.nprobes.split(",") if int(p) <= nlist})
        rows = latencies(index, queries, truth, nprobes, args.rounds)

        sub = slice(0, args.exhaustive_queries)
        t = time.perf_counter()
        _, everything = vi.search(index, queries[sub], 10, vi.VectorIndexConfig(nprobe=nlist))
        exhaustive_s = (time.perf_counter() - t) / len(queries[sub])
        sq8_exact = recall_at(everything - 1, truth[sub])

        base_q = queries[: args.baseline_queries]
        baseline_s, baseline_recall = numpy_baseline(data, base_q, truth[: len(base_q)])
        print(f"numpy {baseline_s * 1e3:.0f} ms/query; SQ8 exhaustive recall {sq8_exact}")
        main_rss = rss_gib()
        print(f"main process peak so far: {main_rss:.2f} GiB (VmHWM {hwm_gib():.2f})", flush=True)

        dedup: dict[str, Any] = {}
        if not args.skip_dedup:
            folder_s = make_index_folder(work / "dedup", data, index, args.kind)
            db_gib = (work / "dedup" / "index" / DB_NAME).stat().st_size / 2**30
            del index
            out = work / "dedup.json"
            cmd = [sys.executable, __file__, "--dedup-child", str(work / "dedup" / "index")]
            cmd += [str(out), "--threshold", str(args.threshold)]
            cmd += ["--join-nprobe", str(args.join_nprobe)]
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            child_wall = time.perf_counter() - t
            result = json.loads(out.read_text())
            dedup = evaluate_dedup(data, result["groups"], args.threshold)
            dedup.update(
                {k: result[k] for k in ("load_s", "total_s", "peak_rss_gib", "hwm_gib")},
                wall_s=child_wall,
                folder_s=folder_s,
                db_gib=db_gib,
            )
            print("dedup", dedup, flush=True)
            if not args.skip_rebuild:
                for path in (work / "dedup" / "index").glob("vectors-*.faiss"):
                    path.unlink()
                out = work / "rebuild.json"
                cmd = [sys.executable, __file__, "--rebuild-child"]
                subprocess.run([*cmd, str(work / "dedup" / "index"), str(out)], check=True)
                dedup["rebuild"] = json.loads(out.read_text())
                print("rebuild", dedup["rebuild"], flush=True)
        total_s = time.perf_counter() - t_all

    report = {
        "n": data.n,
        "threads": threads,
        "queries": len(queries),
        "gen_s": gen_s,
        "truth_s": truth_s,
        "storage": choice,
        "subset": m,
        "kind": kind,
        "auto_kind": vi.VectorIndexConfig().resolve(data.n),
        "nlist": nlist,
        "default_nprobe": default_np,
        "build": times,
        "search": rows,
        "exhaustive_ms": exhaustive_s * 1e3,
        "sq8_exact_recall": sq8_exact,
        "baseline_ms": baseline_s * 1e3,
        "baseline_recall": baseline_recall,
        "baseline_queries": len(base_q),
        "dedup": dedup,
        "main_rss_gib": max(main_rss, rss_gib()),
        "total_s": total_s,
        "planted_groups": len(data.groups),
    }
    print(json.dumps(report, indent=1))
    if args.save_json:
        saved = {"args": {k: v for k, v in vars(args).items() if k not in ("save_json",)}}
        saved["report"] = report
        Path(args.save_json).write_text(json.dumps(saved, indent=1))
    if args.write or args.n == 1_000_000:
        write_section("bench_million", TITLE, render(report, args))


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section."""
    n, b, d = r["n"], r["build"], r["dedup"]
    default = vi.default_nprobe(r["nlist"], r["kind"])
    storage_rows = "\n".join(
        f"| {c['storage']} | {c['bytes']:,} | {c['bytes'] * n / 1e9:.2f} GB | {c['recall']:.4f} "
        f"| {c['scan_ms']:.1f} |"
        for c in r["storage"]
    )
    search_rows = "\n".join(
        f"| {s['nprobe']}{' (default)' if s['nprobe'] == default else ''} | {s['recall']:.4f} "
        f"| {s['p50']:.2f} | {s['p99']:.2f} | {r['baseline_ms'] / s['p50']:,.0f}× |"
        for s in r["search"]
    )
    meets = [s for s in r["search"] if s["p50"] <= 2.0 and s["recall"] >= 0.95]
    verdict = (
        f"**met** at `nprobe` {', '.join(str(s['nprobe']) for s in meets)}"
        if meets
        else "**not met** at any `nprobe` measured"
    )
    at = next((s for s in r["search"] if s["nprobe"] == default), None)
    default_line = ""
    if at:
        default_line = (
            f"At the default `nprobe` ({default} of {r['nlist']:,} lists): recall@10 "
            f"**{at['recall']:.3f}**, p50 **{at['p50']:.2f} ms**, p99 {at['p99']:.2f} ms, "
            f"**{r['baseline_ms'] / at['p50']:,.0f}×** faster than the NumPy scan."
        )
    sq8 = next(c for c in r["storage"] if c["storage"] == "SQ8")
    fp16 = next(c for c in r["storage"] if c["storage"] == "fp16")
    index_gb = n * (1280 + 8) / 1e9
    dedup = ""
    if d:
        t = args.threshold
        wall = f"**{d['total_s']:.0f} s** ({d['load_s']:.1f} s of it loading the file)"
        exact = f"{d['groups_exact']:,} of {d['planted_groups']:,}"
        extra = f"{d['extra_members']:,} ({d['extra_members_real']:,})"
        rb = d.get("rebuild")
        rebuild = ""
        if rb:
            rebuild = f"""
**Rebuild from SQLite.** With the FAISS file deleted, opening the index and asking for its
structure (a fresh process) rebuilt it from the database — two streamed passes over the
{d["db_gib"]:.1f} GiB of rows (the training sample, then every vector, 20,000 at a time),
k-means, adding, writing the file — in **{rb["rebuild_s"]:.0f} s** at a peak of
**{rb["hwm_gib"]:.2f} GiB** (`{rb["kind"]}`, {rb["ntotal"]:,} vectors). The rebuild used to
read `Store.snapshot`, every row's blob and a float32 copy of all the vectors at once: by
arithmetic about {2 * n * 1280 * 4 / 2**30:.0f} GiB here (not run: it would break this
benchmark's memory cap). `dedup_index` used to read that snapshot every time, then build a
second structure from it.
"""
        dedup = f"""
### Dedup of all {n:,}

`lookalike.dedup.groups.dedup_index` on a real index folder: SQLite with {n:,} file rows and their
float32 vectors ({d["db_gib"]:.1f} GiB; written in {d["folder_s"]:.0f} s, not counted) and the
IVF-SQ8 file. A child process opens the index, loads the structure from its file and runs the
IVF self-join (`lookalike.index.self_join.all_pairs`: a range search of every stored vector over
its own list and its {args.join_nprobe - 1} next nearest, as FAISS's IVF range search with
`nprobe` {args.join_nprobe} would, but list by list, the vectors probing a list gathered into
blocks, decoded and multiplied with BLAS; never an N × N matrix, never all vectors as
float32), threshold {t}; then it reads from SQLite only the vectors and paths of the grouped
images.

| | measured | target |
|---|---|---|
| wall time (open, load, join, groups) | {wall} | ≤ 600 s |
| peak resident memory of the process, index included | **{d["hwm_gib"]:.2f} GiB** | ≤ 4 GiB |
| planted pairs found (same group) | **{d["pair_recall"]:.4f}** of {d["planted_pairs"]:,} | |
| planted groups found exactly (all members, nothing else) | {exact} | |
| groups found / with no planted member | {d["found_groups"]:,} / {d["unplanted_groups"]:,} | |
| members outside the planted groups (of which truly ≥ {t} in float32) | {extra} | |

Peak memory is the child's `VmHWM` (`/proc/self/status`): the high-water mark of its resident
set, index included. Its `getrusage(RUSAGE_SELF).ru_maxrss` read {d["peak_rss_gib"]:.2f} GiB,
the benchmark's own peak: Linux carries `ru_maxrss` across `fork` + `exec`, so a child reports
its parent's peak until it exceeds it.
{rebuild}"""
    return f"""
{n:,} synthetic unit vectors of the default model's dimension (1,280) in {n // 50:,}
clusters of about 50 around centres uniform on the sphere (σ and the rest in the script's
docstring), with
{r["planted_groups"]:,} planted near-duplicate groups among them (an original and 1–3 copies,
a quarter exact, the rest at cosine 0.91–0.99 to it). {r["queries"]:,} held-out queries from
the same generator. Ground truth: exact float32 search over all {n:,}, chunked. The vectors
live in a float16 file read in chunks: no float32 copy of all of them is ever held. FAISS uses
{r["threads"]} OpenMP threads (all the machine's cores, shared with other work, so times are
noisy).

### Storage: SQ8, chosen by measurement

Exhaustive scans of the first {r["subset"]:,} vectors stored three ways ({args.exhaustive_queries}
queries; recall@10 against exact float32 search; scan time per query in a batch):

| storage | bytes / vector | {n:,} vectors | recall@10 | scan ms / query |
|---|---|---|---|---|
{storage_rows}

fp16 loses nothing but is twice SQ8's size; SQ8 costs {1 - sq8["recall"]:.2%} of recall@10
here, scans as fast as fp16 ({sq8["scan_ms"]:.0f} vs {fp16["scan_ms"]:.0f} ms), and keeps a
million vectors in 1.3 GB instead of 2.6 GB, which leaves dedup room under 4 GB. Hence
`kind="ivf_sq8"`, which `kind="auto"` picks from 200,000 vectors (here: `{r["auto_kind"]}`).

### Build

`vector_index.create` (k-means on a {b["sample"]:,}-vector sample, 128 per list) and `add` in
chunks of 50,000: `{r["kind"]}` with {r["nlist"]:,} lists (`2·√N`): training
{b["train_s"]:.0f} s, adding {b["add_s"]:.0f} s, **{b["train_s"] + b["add_s"]:.0f} s** in all.
Index memory: {index_gb:.2f} GB of codes and ids ({n:,} × (1,280 + 8) bytes) and
{r["nlist"] * 1280 * 4 / 1e6:.0f} MB of centroids.

### Search: one query per call, k = 10

Through `faiss_structures.search`, {r["queries"]:,} queries per row; {args.rounds} rounds,
each running every `nprobe` in turn, and each row the round with the lowest p50 (other work
on these cores slows whole rounds). Target p50 ≤ 2 ms at recall@10 ≥ 0.95: {verdict}.

| nprobe | recall@10 | p50 (ms) | p99 (ms) | speed-up over NumPy (p50) |
|---|---|---|---|---|
{search_rows}

{default_line} The cost of compression: an exhaustive SQ8 scan (all {r["nlist"]:,} lists,
{args.exhaustive_queries} queries) has recall@10 **{r["sq8_exact_recall"]:.4f}** against exact
float32 search, the ceiling every `nprobe` approaches.

The NumPy baseline is the seeds' search, `scores = emb @ q` over the float32 matrix, then
`argpartition`: **{r["baseline_ms"]:.0f} ms per query** (median of {r["baseline_queries"]};
the {n * 1280 * 4 / 1e9:.1f} GB matrix taken 100,000 rows at a time, each block's product timed
and the times summed; recall {r["baseline_recall"]:.2f}, as it is exact).
{dedup}
**Whole run:** {r["total_s"] / 60:.1f} minutes; peak resident memory of the benchmark process
{r["main_rss_gib"]:.1f} GiB (`ru_maxrss`).
"""


if __name__ == "__main__":
    main()
