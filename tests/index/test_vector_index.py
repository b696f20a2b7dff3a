"""The FAISS structures' compressed kind (IVF-SQ8) and the blockwise self-join behind dedup:
recall against exact search, removal, files, and pairs equal to brute force."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.dedup.groups import dedup_index, find_duplicates
from lookalike.index import faiss_structures as vi
from lookalike.index import self_join as vp
from lookalike.index.index import Index
from pixel_embedder import PixelEmbedder

faiss = pytest.importorskip("faiss")


def clustered(n: int, dim: int, clusters: int, noise: float, seed: int) -> np.ndarray:
    """Unit rows around ``clusters`` random centres (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def brute_pairs(x: np.ndarray, ids: np.ndarray, threshold: float) -> dict[tuple[int, int], float]:
    scores = x @ x.T
    a, b = np.nonzero(np.triu(scores >= threshold, k=1))
    return {
        (min(ids[i], ids[j]), max(ids[i], ids[j])): float(scores[i, j])
        for i, j in zip(a.tolist(), b.tolist(), strict=True)
    }


def as_dict(pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[tuple[int, int], float]:
    a, b, s = pairs
    assert (a < b).all()
    assert np.all(np.lexsort((b, a)) == np.arange(len(a)))  # sorted by (a, b)
    return {(int(i), int(j)): float(v) for i, j, v in zip(a, b, s, strict=True)}


# --------------------------------------------------------------------------- the kind


def test_config_resolves_sq8_for_large_collections_and_reads_old_configs() -> None:
    config = vi.VectorIndexConfig(ivf_threshold=100, sq8_threshold=1000)
    assert [config.resolve(n) for n in (0, 99, 100, 999, 1000)] == [
        "flat",
        "flat",
        "ivf",
        "ivf",
        "ivf_sq8",
    ]
    assert vi.VectorIndexConfig(kind="ivf_sq8").resolve(5) == "ivf_sq8"
    assert vi.VectorIndexConfig(kind="ivf").resolve(10**7) == "ivf"
    assert vi.VectorIndexConfig(kind="ivf_sq8").resolve(0) == "flat"
    old = {"kind": "auto", "ivf_threshold": 50_000, "nprobe": None, "hnsw_m": 32}
    assert vi.VectorIndexConfig.from_dict(old).sq8_threshold == vi.DEFAULT_SQ8_THRESHOLD
    with pytest.raises(ValueError, match="sq8_threshold"):
        vi.VectorIndexConfig(sq8_threshold=0)
    assert vi.default_nprobe(4000, "ivf_sq8") == 16 and vi.default_nprobe(4000) == 500
    assert vi.default_nprobe(5, "ivf_sq8") == 5


def test_sq8_recall_against_flat_and_removal() -> None:
    x = clustered(8000, 32, 40, 0.35, seed=1)
    ids = np.arange(100, 8100, dtype=np.int64)
    config = vi.VectorIndexConfig(kind="auto", ivf_threshold=1000, sq8_threshold=5000)
    sq8 = vi.build(ids, x, 32, config)
    assert vi.kind_of(sq8) == "ivf_sq8" and sq8.code_size == 32  # one byte per dimension
    flat = vi.build(ids, x, 32, vi.VectorIndexConfig(kind="flat"))
    queries = clustered(200, 32, 40, 0.35, seed=2)
    _, want = vi.search(flat, queries, 10, config)
    _, got = vi.search(sq8, queries, 10, vi.VectorIndexConfig(nprobe=32))
    assert recall(got, want) >= 0.95
    nlist = int(sq8.nlist)
    _, every = vi.search(sq8, queries, 10, vi.VectorIndexConfig(nprobe=nlist))
    assert recall(every, want) >= 0.95  # the cost of SQ8 alone
    assert vi.fits(sq8, 8000, config) and not vi.fits(sq8, 4000, config)

    gone = ids[::3]
    assert vi.remove(sq8, gone)
    assert sq8.ntotal == len(ids) - len(gone)
    _, after = vi.search(sq8, x[::3][:50], 5, config)
    assert not np.isin(after, gone).any()
    _, everything = vi.search(sq8, queries[:2], 10_000, config)
    assert sorted(everything[0]) == sorted(set(ids) - set(gone))


def test_create_then_add_in_chunks_equals_build(tmp_path: Path) -> None:
    x = clustered(3000, 24, 30, 0.3, seed=3)
    ids = np.arange(3000, dtype=np.int64) * 7
    config = vi.VectorIndexConfig(kind="ivf_sq8")
    assert vi.training_size(3000, config) == 3000
    assert vi.ivf_nlist(10**6, "ivf_sq8") == 2000 and vi.ivf_nlist(10**6) == 4000
    assert vi.training_size(10**6, config) == 2000 * 128
    assert vi.training_size(10**6, vi.VectorIndexConfig(kind="flat")) == 0
    with pytest.raises(ValueError, match="samples"):
        vi.create(3000, 24, config)
    whole = vi.build(ids, x, 24, config)
    parts = vi.create(3000, 24, config, x)
    for start in range(0, 3000, 1100):
        vi.add(parts, ids[start : start + 1100], x[start : start + 1100])
    q = x[:40]
    np.testing.assert_array_equal(
        vi.search(whole, q, 5, config)[1], vi.search(parts, q, 5, config)[1]
    )

    path = vi.write_file(parts, tmp_path, "7gabc")
    assert vi.is_file_of(path, "7gabc")
    loaded, found = vi.read_file(tmp_path, "7gabc") or (None, None)
    assert found == path and vi.kind_of(loaded) == "ivf_sq8"
    np.testing.assert_array_equal(
        vi.search(loaded, q, 5, config)[1], vi.search(parts, q, 5, config)[1]
    )
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert vi.read_file(tmp_path, "7gabc") is None  # damaged: refused before FAISS reads it


# --------------------------------------------------------------------------- the self-join


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivf_sq8"])
def test_all_pairs_equal_brute_force(kind: str) -> None:
    x = clustered(900, 16, 60, 0.12, seed=0)
    ids = np.arange(900, dtype=np.int64)[::-1] * 3 + 5  # ids not in row order
    threshold = 0.95
    want = brute_pairs(x, ids, threshold)
    assert len(want) > 200
    structure = vi.build(ids, x, 16, vi.VectorIndexConfig(kind=kind))
    every = None if kind in ("flat", "hnsw") else int(structure.nlist)
    got = as_dict(vp.all_pairs(structure, threshold, nprobe=every, chunk=7))  # awkward blocks
    # Exact for flat, HNSW and IVF; IVF-SQ8 scores carry the quantisation error.
    tol = 0.02 if kind == "ivf_sq8" else 1e-5
    scores = x @ x.T
    row = {int(i): r for r, i in enumerate(ids)}

    def clear(pairs: dict[tuple[int, int], float]) -> set[tuple[int, int]]:
        return {p for p in pairs if abs(scores[row[p[0]], row[p[1]]] - threshold) > tol}

    assert clear(got) == clear(want)
    for (a, b), s in got.items():
        assert abs(s - scores[row[a], row[b]]) <= tol
    if every is not None:  # with the default nprobe the join is approximate, but close
        approx = as_dict(vp.all_pairs(structure, threshold))
        assert len(set(approx) & set(got)) >= 0.95 * len(got)


def test_all_pairs_small_and_degenerate_cases() -> None:
    x = clustered(300, 8, 5, 0.05, seed=4)
    x[10] = x[11] = x[12]  # exact duplicates
    for kind in ("flat", "ivf_sq8"):
        structure = vi.build(np.arange(300), x, 8, vi.VectorIndexConfig(kind=kind))
        a, b, _ = vp.all_pairs(structure, 0.99999, nprobe=1000)
        assert {(10, 11), (10, 12), (11, 12)} <= set(zip(a.tolist(), b.tolist(), strict=True))
        assert sorted(vp.stored_ids(structure).tolist()) == list(range(300))
        seen = np.concatenate([i for i, _ in vp.stored_vectors(structure, chunk=77)])
        assert sorted(seen.tolist()) == list(range(300))
    empty = vi.build(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), 8, vi.VectorIndexConfig())
    assert all(len(p) == 0 for p in vp.all_pairs(empty, 0.5))
    with pytest.raises(ValueError, match="positive"):
        vp.all_pairs(empty, 0.5, chunk=0)


def test_sq8_decoding_matches_faiss() -> None:
    x = clustered(2000, 40, 20, 0.3, seed=5)
    structure = vi.build(np.arange(2000), x, 40, vi.VectorIndexConfig(kind="ivf_sq8"))
    for ids, vectors in vp.stored_vectors(structure):
        decoded = structure.sq.decode(structure.sq.compute_codes(x[ids]))
        decoded /= np.linalg.norm(decoded, axis=1, keepdims=True)
        np.testing.assert_allclose(vectors, decoded, atol=1e-6)
        assert np.abs(vectors - x[ids]).max() < 0.01


# --------------------------------------------------------------------------- on an index


def test_dedup_index_uses_the_structure_and_equals_find_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 32), Image.Resampling.BICUBIC).save(root / f"{i}.png")
    for i in (3, 7, 7, 20):
        n = len(list(root.glob(f"{i}_copy*.png")))
        shutil.copy(root / f"{i}.png", root / f"{i}_copy{n}.png")

    embed = PixelEmbedder()

    for kind in ("flat", "ivf_sq8"):
        with Index.create(
            tmp_path / kind, root, model_key="pixels", dim=48, kind=kind, overwrite=True
        ) as index:
            index.update(embed, progress=False)
            assert index.kind == kind
            groups = dedup_index(index, 0.99)
            snap = index.vectors()
            want = find_duplicates(
                snap.vectors, 0.99, paths=snap.paths, ids=snap.ids.tolist(), root=root
            )
            assert [g.paths for g in groups] == [g.paths for g in want]
            assert [g.ids for g in groups] == [g.ids for g in want]
            assert [g.indices for g in groups] == [g.indices for g in want]
            assert {g.keep for g in groups} == {"3.png", "7.png", "20.png"}
            part = index.vectors(ids=[int(snap.ids[5]), 10**9])
            assert part.ids.tolist() == [int(snap.ids[5])] and part.paths == [snap.paths[5]]
            with pytest.raises(ValueError, match="not both"):
                index.vectors(paths=[], ids=[])


def test_rebuild_from_sqlite_streams_and_equals_the_built_structure(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(120):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 32), Image.Resampling.BICUBIC).save(root / f"{i}.png")

    embed = PixelEmbedder()

    folder = tmp_path / "idx"
    with Index.create(folder, root, model_key="pixels", dim=48, kind="ivf_sq8") as index:
        index.update(embed, progress=False)
        snap = index.vectors()
        blocks = list(index._store.vector_blocks(48, block=7))  # awkward block size
        assert [len(ids) for ids, _ in blocks][:2] == [7, 7]
        np.testing.assert_array_equal(np.concatenate([i for i, _ in blocks]), snap.ids)
        np.testing.assert_array_equal(np.concatenate([v for _, v in blocks]), snap.vectors)
        before = index.search(snap.vectors[:20], k=5)
    for path in folder.glob("vectors-*.faiss"):
        path.unlink()
    with Index.open(folder) as index:  # no file: rebuilt from SQLite, block by block
        assert index.kind == "ivf_sq8"
        assert index.search(snap.vectors[:20], k=5) == before
        assert list(folder.glob("vectors-*.faiss"))  # and written again
