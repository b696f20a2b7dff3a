"""What an index that never lies costs: hashing the bytes it decodes, and ``--verify``.

(a) Opening one file for the model: the old way (:func:`lookalike.inference.pipeline.load_array`
    decodes from the path; the hash was read separately) against the index's
    :class:`lookalike.index.update.VerifiedReader` (one read, hashed and decoded from the same
    bytes), on ~1-megapixel JPEGs, best of rounds, interleaved, in one process.
(b) A first ``Index.update`` with ONNX Runtime, as it is (hash, then read, hash and decode the
    same bytes) against the same update with the old decode (from the path, trusting the
    earlier hash: the race of issue 14), alternated, best of rounds; the new one also against
    the model alone on pre-decoded images (``bench_index``'s target: ≥ 0.85).
(c) A verifying run (``update(verify=True)``: every file hashed and embedded again) and an
    unchanged run, as shares of the first run.

Prints a Markdown section (the lead pastes it into BENCHMARKS.md):

    PYTHONPATH=src python benchmarks/bench_index_verified.py [--photos 96] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench_engine import make_photos
from bench_index import BATCH, model_only
from lookalike.index import update as iu
from lookalike.index.index import Index
from lookalike.index.update import VerifiedReader
from lookalike.inference import load_embedder
from lookalike.inference.pipeline import load_array


def per_file(paths: list[Path], rounds: int, embedder: object) -> tuple[float, float]:
    """Milliseconds per file (best of ``rounds``): decoding from the path, and read-hash-decode."""
    preprocess = embedder.preprocess  # type: ignore[attr-defined]
    old, new = float("inf"), float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for p in paths:
            load_array(preprocess, str(p))
        old = min(old, (time.perf_counter() - start) / len(paths))
        reader = VerifiedReader(preprocess)
        start = time.perf_counter()
        for p in paths:
            reader(str(p))
        new = min(new, (time.perf_counter() - start) / len(paths))
    return 1000 * old, 1000 * new


class PathReader(VerifiedReader):
    """The old decode: from the path, with the hash taken before (``hashes``), not re-read."""

    hashes: ClassVar[dict[str, tuple[str, int]]] = {}

    def __call__(self, name: str) -> np.ndarray:
        self.read[name] = self.hashes[name]
        return load_array(self.preprocess, name)


def first_update(embedder: Any, root: Path, folder: Path, *, old: bool) -> float:
    """Seconds of a first ``Index.update`` of ``root`` (``old``: with :class:`PathReader`)."""
    original = iu.VerifiedReader
    iu.VerifiedReader = PathReader if old else original  # type: ignore[misc]
    try:
        key, dim = str(embedder.key), embedder.embedding_dim
        with Index.create(folder, root, model_key=key, dim=dim, overwrite=True) as index:
            start = time.perf_counter()
            report = index.update(embedder, batch_size=BATCH, progress=False)
            seconds = time.perf_counter() - start
        assert report.embedded == len(report.added) and not report.skipped
        return seconds
    finally:
        iu.VerifiedReader = original  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(measure(Path(tmp), args))


def measure(work: Path, args: argparse.Namespace) -> str:
    """Run (a), (b) and (c) in ``work``; the Markdown section."""
    root = work / "photos"
    root.mkdir()
    embedder = load_embedder(engine="onnx", device="cpu")
    paths = make_photos(root, args.photos)
    old_ms, new_ms = per_file(paths, args.rounds, embedder)
    alone = model_only(embedder, paths)
    PathReader.hashes = {str(p): (iu.hash_file(p), p.stat().st_size) for p in paths}
    old_s, new_s = float("inf"), float("inf")
    for _ in range(args.rounds):
        old_s = min(old_s, first_update(embedder, root, work / "ab", old=True))
        new_s = min(new_s, first_update(embedder, root, work / "ab", old=False))
    key, dim = str(embedder.key), embedder.embedding_dim
    with Index.create(work / "idx", root, model_key=key, dim=dim) as index:
        times = []
        for verify in (False, True, False):
            start = time.perf_counter()
            report = index.update(embedder, batch_size=BATCH, progress=False, verify=verify)
            times.append(time.perf_counter() - start)
            assert not report.skipped and (not verify or report.repaired == [])
    first, verified, unchanged = times
    return f"""
(a) Opening {args.photos} photos of 1152×864 (≈1 MP, JPEG quality 90) for `mobilenet_v2`
at 224 px, best of {args.rounds} interleaved rounds: decoding from the path {old_ms:.1f} ms per
file; reading once, hashing (BLAKE2b-128) and decoding the same bytes {new_ms:.1f} ms per file
= **{new_ms / old_ms:.2f}×**.

(b) ONNX Runtime, batch {BATCH}, a first `Index.update` of the {args.photos} photos, best of
{args.rounds} alternated runs: {args.photos / old_s:.1f} img/s with the old decode (from the
path; the race), {args.photos / new_s:.1f} img/s reading once and hashing what is decoded =
**{old_s / new_s:.2f}** of the old throughput. Against the model alone on pre-decoded images
({alone:.1f} img/s): **{args.photos / new_s / alone:.2f}** (target ≥ 0.85; decoding shares the
machine's cores with the model, so this ratio falls when the machine is busy).

(c) `update(verify=True)` (`lookalike index --verify`: every file hashed and embedded again)
took **{verified / first:.2f}×** a first run; an unchanged run {100 * unchanged / first:.1f} %.
"""


if __name__ == "__main__":
    main()
