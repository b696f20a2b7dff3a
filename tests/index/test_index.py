"""The persistent index: incremental updates equal a rebuild, the embedding cache, bad files,
search edge cases, crash safety under SIGKILL, IVF/HNSW, and the real default model."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import IndexFolderError
from lookalike.imaging.preprocess import Preprocess
from lookalike.index import faiss_structures as vi
from lookalike.index import update as iu
from lookalike.index.index import Index
from lookalike.inference.pipeline import embed_files
from pixel_embedder import DIM, PixelEmbedder, random_image, seen_names, write

faiss = pytest.importorskip("faiss")

TESTS = Path(__file__).resolve().parents[1]


def make_tree(root: Path, n: int = 12, seed: int = 0) -> list[Path]:
    """n images in root and two sub-folders, PNG and JPEG."""
    out = []
    for i in range(n):
        sub = ("", "a", "a/b")[i % 3]
        ext = ".png" if i % 2 else ".jpg"
        out.append(write(root / sub / f"img{i:02d}{ext}", seed * 1000 + i))
    return out


def age(root: Path) -> None:
    """Set every file's time a minute back, so nothing is 'racily' recent."""
    past = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past))


def build(root: Path, index_dir: Path, embed: PixelEmbedder | None = None, **kw: object) -> Index:
    index = Index.create(index_dir, root, model_key="pixels-v1", dim=DIM, **kw)  # type: ignore[arg-type]
    index.update(embed or PixelEmbedder())
    return index


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def contents(index: Index) -> dict[str, np.ndarray]:
    snap = index.vectors()
    return dict(zip(snap.paths, snap.vectors, strict=True))


def faiss_agrees(index: Index) -> None:
    """The FAISS structure holds exactly SQLite's ids and vectors."""
    snap = index.vectors()
    structure = index._sync.current()
    assert structure.ntotal == len(snap.ids)
    if len(snap.ids):
        got = np.stack([structure.reconstruct(int(i)) for i in snap.ids])
        np.testing.assert_allclose(got, snap.vectors, atol=1e-6)


# --------------------------------------------------------------------------- updates


def test_incremental_update_equals_rebuild_and_search_equals_brute_force(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 12)
    age(root)
    embed = PixelEmbedder()
    index = build(root, tmp_path / "idx", embed)
    assert len(index) == 12 and len(embed.seen) == 12

    # add, modify, delete, then update
    write(root / "a" / "new1.png", 501)
    write(root / "c" / "new2.jpg", 502)
    write(files[3], 503)  # modified content (same name)
    files[5].unlink()
    files[7].unlink()
    embed.seen.clear()
    report = index.update(embed)
    assert sorted(report.added) == ["a/new1.png", "c/new2.jpg"]
    assert report.updated == [files[3].relative_to(root).as_posix()]
    assert sorted(report.removed) == sorted(f.relative_to(root).as_posix() for f in files[5:8:2])
    assert report.unchanged == 9 and report.skipped == []
    assert sorted(seen_names(embed, root)) == sorted(["new1.png", "new2.jpg", files[3].name])

    fresh = build(root, tmp_path / "fresh")
    assert index.paths() == fresh.paths()
    a, b = contents(index), contents(fresh)
    for path in a:
        np.testing.assert_allclose(a[path], b[path], atol=1e-6)
    faiss_agrees(index)

    snap = fresh.vectors()
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(5, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    want_scores, want_pos = brute_force(snap.vectors, queries, 4)
    for hits_a, hits_b, scores, pos in zip(
        index.search(queries, 4), fresh.search(queries, 4), want_scores, want_pos, strict=True
    ):
        assert [h.path for h in hits_a] == [h.path for h in hits_b]
        assert [h.path for h in hits_b] == [snap.paths[p] for p in pos]
        np.testing.assert_allclose([h.score for h in hits_a], scores, atol=1e-5)

    # a second update with nothing changed embeds nothing
    embed.seen.clear()
    report = index.update(embed)
    assert embed.seen == [] and report.unchanged == len(index) and not report.added
    index.close()
    fresh.close()


def test_moved_and_copied_files_are_not_embedded_again(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 6)
    age(root)
    embed = PixelEmbedder()
    index = build(root, tmp_path / "idx", embed)
    before = contents(index)
    old = files[0].relative_to(root).as_posix()

    (root / "moved").mkdir()
    shutil.move(files[0], root / "moved" / "renamed.jpg")
    shutil.copy2(files[1], root / "copy_of_1.png")
    shutil.copy2(files[1], root / "copy_of_1_again.png")
    write(root / "twin1.png", 77)
    shutil.copy2(root / "twin1.png", root / "twin2.png")  # new content, twice
    embed.seen.clear()
    report = index.update(embed)
    assert seen_names(embed, root) == ["twin1.png"]  # the one new content, once
    assert report.embedded == 1
    assert report.reused_from_cache == 4  # moved file, two copies, the twin
    assert report.removed == [old]
    assert sorted(report.added) == [
        "copy_of_1.png",
        "copy_of_1_again.png",
        "moved/renamed.jpg",
        "twin1.png",
        "twin2.png",
    ]
    after = contents(index)
    np.testing.assert_array_equal(after["moved/renamed.jpg"], before[old])
    assert old not in index and "moved/renamed.jpg" in index
    faiss_agrees(index)

    # changed content is embedded again; a removed file leaves the index and its search results
    write(files[2], 999)
    files[3].unlink()
    embed.seen.clear()
    report = index.update(embed)
    assert seen_names(embed, root) == [files[2].name]
    assert report.updated == [files[2].relative_to(root).as_posix()]
    gone = files[3].relative_to(root).as_posix()
    hits = index.search(before[gone], k=100)[0]
    assert gone not in {h.path for h in hits} and len(hits) == len(index)
    # a touched file (new time, same bytes) is not embedded again
    os.utime(files[4], (time.time() - 30, time.time() - 30))
    embed.seen.clear()
    report = index.update(embed)
    assert embed.seen == [] and not report.updated
    index.close()


def test_recently_modified_file_is_checked_again(tmp_path: Path) -> None:
    """A file changed within the timestamp tick of the last update is still noticed."""
    root = tmp_path / "photos"
    path = write(root / "x.png", 1)
    embed = PixelEmbedder()
    index = build(root, tmp_path / "idx", embed)
    stamp = path.stat()
    random_image(2).save(path)  # same size is likely not; force the same stat anyway
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    report = index.update(embed)
    assert report.updated == ["x.png"]
    index.close()


def test_corrupt_image_is_reported_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 5)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    age(root)
    index = Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM)
    report = index.update(PixelEmbedder())
    assert len(index) == 5
    assert sorted(p for p, _ in report.skipped) == ["broken.jpg", "empty.png"]
    assert all(reason for _, reason in report.skipped)
    # an indexed file that becomes unreadable is dropped and reported
    victim = index.paths()[0]
    index.resolve(victim).write_bytes(b"garbage")
    report = index.update(PixelEmbedder())
    assert victim in {p for p, _ in report.skipped} and victim not in index
    faiss_agrees(index)
    index.close()


def test_embed_files_reports_unreadable_files(tmp_path: Path) -> None:
    class Model:
        preprocess = Preprocess(input_size=(2, 2), mean=(0.0,) * 3, std=(1.0,) * 3)
        thresholds: ClassVar[dict[str, float]] = {}
        embedding_dim = 12

        def embed(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
            return images.reshape(len(images), -1)

        def pair_probability(self, a: np.ndarray, b: np.ndarray) -> None:
            return None

    good = [write(tmp_path / f"{i}.png", i) for i in range(3)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    embedded = embed_files(Model(), [good[0], bad, good[1], good[2]], batch_size=2)
    vectors, failures = embedded.embeddings, embedded.failures
    assert vectors.shape == (3, 12)
    assert [p for p, _ in failures] == [str(bad)]


class RowsOfZeros(PixelEmbedder):
    """A broken model: three rows whatever it is given."""

    def embed(self, images: object, *, batch_size: int = 32) -> np.ndarray:
        return np.zeros((3, DIM), np.float32)


def test_update_reports_bad_files_and_checks_the_models_output(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 5)
    (root / "bad.png").write_bytes(b"nope")
    age(root)
    index = Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM)
    report = index.update(PixelEmbedder(), batch_size=2)
    assert len(index) == 5 and [p for p, _ in report.skipped] == ["bad.png"]
    write(root / "new.png", 99)
    with pytest.raises(ValueError, match="one row per path"):
        index.update(RowsOfZeros())
    assert len(index) == 5
    index.close()


def test_include_exclude_patterns_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 9)
    age(root)
    index = Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM, exclude=["a/*"])
    index.update(PixelEmbedder())
    assert index.paths() == ["img00.jpg", "img03.png", "img06.jpg"]
    report = index.update(PixelEmbedder(), include=["*.png"], exclude=[])
    assert sorted(report.added) == ["a/b/img05.png", "a/img01.png", "a/img07.png"]
    assert all(p.endswith(".png") for p in index.paths())
    report = index.update(PixelEmbedder())  # the patterns given last time are kept
    assert not report.added and not report.removed
    index.close()


def test_remove_and_labels(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 6)
    age(root)
    index = build(root, tmp_path / "idx")
    first, second = index.paths()[:2]
    assert index.set_labels({first: "cat", "not/indexed.png": "x"}) == 1
    assert index.remove([second, root / first, "missing.png"]) == sorted([first, second])
    assert len(index) == 4 and first not in index
    faiss_agrees(index)
    third = index.paths()[0]
    index.set_labels({third: "dog"})
    hit = index.search(index.vectors([third]).vectors, k=1)[0][0]
    assert (hit.path, hit.label) == (third, "dog") and hit.score == pytest.approx(1.0, abs=1e-5)
    index.close()


# --------------------------------------------------------------------------- search


def test_search_edge_cases(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    index = Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM)
    index.update(PixelEmbedder())
    q = np.ones((3, DIM), np.float32)
    assert index.search(q, 5) == [[], [], []]
    assert len(index) == 0

    make_tree(root, 4)
    age(root)
    index.update(PixelEmbedder())
    results = index.search(q, k=50)
    assert all(len(r) == 4 for r in results)
    assert all(h.id >= 0 and h.path for r in results for h in r)
    assert len(index.search(q[0], k=2)) == 1  # one (D,) query
    with pytest.raises(ValueError, match="shape"):
        index.search(np.ones((2, DIM + 1)), 3)
    with pytest.raises(ValueError, match="k must"):
        index.search(q, 0)
    index.close()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_every_kind_returns_every_item_for_large_k(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "photos"
    make_tree(root, 50)
    age(root)
    index = build(root, tmp_path / "idx", kind=kind)
    assert index.kind == kind
    results = index.search(index.vectors().vectors[:3], k=1000)
    assert all(len(r) == 50 and len({h.id for h in r}) == 50 for r in results)
    index.close()


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_recall_and_removal() -> None:
    x = clustered(8000, 32, 40, seed=1)
    ids = np.arange(100, 8100, dtype=np.int64)
    config = vi.VectorIndexConfig(kind="auto", ivf_threshold=5000)
    ivf = vi.build(ids, x, 32, config)
    assert vi.kind_of(ivf) == "ivf"
    flat = vi.build(ids, x, 32, vi.VectorIndexConfig(kind="flat"))
    queries = clustered(200, 32, 40, seed=2)
    _, got = vi.search(ivf, queries, 10, config)
    _, want = vi.search(flat, queries, 10, config)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95

    gone = ids[::3]
    assert vi.remove(ivf, gone)
    assert ivf.ntotal == len(ids) - len(gone)
    _, after = vi.search(ivf, x[::3][:50], 5, config)
    assert not np.isin(after, gone).any()
    _, everything = vi.search(ivf, queries[:2], 10_000, config)
    assert sorted(everything[0]) == sorted(set(ids) - set(gone))


def test_ivf_index_updates_in_place(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 80)
    age(root)
    index = build(root, tmp_path / "idx", kind="ivf")
    assert index.kind == "ivf"
    for f in files[:10]:
        f.unlink()
    write(files[10], 4242)
    report = index.update(PixelEmbedder())
    assert len(report.removed) == 10 and len(report.updated) == 1
    assert index.kind == "ivf" and len(index) == 70
    faiss_agrees_by_search(index)
    index.close()


def faiss_agrees_by_search(index: Index) -> None:
    """Every stored vector finds itself first (IVF cannot reconstruct by id)."""
    snap = index.vectors()
    hits = index.search(snap.vectors, k=len(snap.ids))
    assert [r[0].id for r in hits] == snap.ids.tolist()


def test_auto_kind_switches_to_ivf_at_threshold(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 60)
    age(root)
    index = build(root, tmp_path / "idx", ivf_threshold=50)
    assert index.kind == "ivf"
    for f in files[:20]:
        f.unlink()
    index.update(PixelEmbedder())
    assert index.kind == "flat" and len(index) == 40
    faiss_agrees(index)
    index.close()


def test_hnsw_removal_rebuilds(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 20)
    age(root)
    index = build(root, tmp_path / "idx", kind="hnsw")
    files[0].unlink()
    index.update(PixelEmbedder())
    assert index.kind == "hnsw"
    faiss_agrees(index)
    index.close()


# --------------------------------------------------------------------------- persistence


def test_reopen_model_key_root_and_damaged_faiss_file(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 6)
    age(root)
    index_dir = tmp_path / "idx"
    build(root, index_dir).close()
    (faiss_file,) = index_dir.glob("vectors-*.faiss")

    with pytest.raises(IndexFolderError, match="built with model 'pixels-v1'"):
        Index.open(index_dir, model_key="other-model")
    with pytest.raises(IndexFolderError, match="already holds an index"):
        Index.create(index_dir, root, model_key="pixels-v1", dim=DIM)
    with pytest.raises(IndexFolderError, match="no index"):
        Index.open(tmp_path / "nowhere")

    # damage the FAISS file: it is rebuilt from SQLite
    data = bytearray(faiss_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    with Index.open(index_dir, model_key="pixels-v1") as index:
        want = contents(index)
        faiss_agrees(index)
    # a missing FAISS file too
    for f in index_dir.glob("vectors-*.faiss"):
        f.unlink()
    with Index.open(index_dir) as index:
        faiss_agrees(index)

    # move the collection together with its index: it opens and updates in place
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(root, moved / "photos")
    shutil.move(index_dir, moved / "idx")
    with Index.open(moved / "idx") as index:
        assert index.root == (moved / "photos").resolve()
        report = index.update(PixelEmbedder())
        assert report.unchanged == 6 and not report.added and not report.removed
        assert contents(index).keys() == want.keys()
    # move only the images: the stored root is gone; root= points at the new place
    shutil.move(moved / "photos", tmp_path / "third")
    with Index.open(moved / "idx") as index, pytest.raises(IndexFolderError, match="root="):
        index.update(PixelEmbedder())
    with Index.open(moved / "idx", root=tmp_path / "third") as index:
        assert index.update(PixelEmbedder()).unchanged == 6
    with Index.open(moved / "idx") as index:  # the new root was stored
        assert index.root == (tmp_path / "third").absolute()


def test_wrong_embedding_size_and_concurrent_writer(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 3)
    age(root)
    index = Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM + 1)
    with pytest.raises(IndexFolderError, match="dimensional"):
        index.update(PixelEmbedder())
    other = Index.open(tmp_path / "idx")
    with index._sync.writer(), pytest.raises(IndexFolderError, match="another process"):
        other.update(PixelEmbedder())
    other.close()
    index.close()


def test_interrupted_creation_and_foreign_database(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 3)
    age(root)
    # a creation killed before its transaction committed leaves a database without tables
    empty = tmp_path / "idx"
    empty.mkdir()
    con = sqlite3.connect(empty / "index.sqlite")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    with pytest.raises(IndexFolderError, match="not a complete lookalike index"):
        Index.open(empty)
    with Index.open_or_create(empty, root, model_key="pixels-v1", dim=DIM) as index:
        assert index.update(PixelEmbedder()).added
    # someone else's database is never replaced silently
    other = tmp_path / "other"
    other.mkdir()
    con = sqlite3.connect(other / "index.sqlite")
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    with pytest.raises(IndexFolderError, match="not a lookalike index"):
        Index.create(other, root, model_key="pixels-v1", dim=DIM)
    with pytest.raises(IndexFolderError, match="not a complete lookalike index"):
        Index.open_or_create(other, root, model_key="pixels-v1", dim=DIM)
    Index.create(other, root, model_key="pixels-v1", dim=DIM, overwrite=True).close()
    with Index.open_or_create(other, root, model_key="pixels-v1", dim=DIM) as index:
        assert len(index) == 0
    with pytest.raises(IndexFolderError, match="dimensional"):
        Index.open_or_create(other, root, model_key="pixels-v1", dim=DIM + 1)


def test_reader_keeps_its_structure_while_a_writer_works(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 6)
    age(root)
    writer = build(root, tmp_path / "idx")
    reader = Index.open(tmp_path / "idx")
    query = reader.vectors().vectors
    assert len(reader.search(query, k=10)[0]) == 6
    files[0].unlink()
    write(root / "late.png", 31)
    with writer._sync.writer():  # an update in progress, between two batches
        rows = writer._store.rows()
        writer._sync.current()
        writer._sync.commit(iu.Changes(deletes=[files[0].relative_to(root).as_posix()]), rows)
        stale = reader._sync.current()
        assert stale.ntotal == 6  # not rebuilt for every batch
        hits = reader.search(query, k=10)[0]
        assert len(hits) == 5  # the removed file's hit is dropped
    writer.update(PixelEmbedder())
    assert len(reader.search(query, k=10)[0]) == 6  # 5 + late.png, read from the new file
    faiss_agrees(reader)
    reader.close()
    writer.close()


_WORKER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[3])
    from pixel_embedder import PixelEmbedder
    from lookalike.index.index import Index

    class Slow(PixelEmbedder):
        def embed(self, images, *, batch_size=32):
            time.sleep(0.15)
            return super().embed(images, batch_size=batch_size)

    index = Index.open_or_create(sys.argv[1], sys.argv[2], model_key="pixels-v1", dim=48)
    index.update(Slow(), batch_size=3)
    print("done", flush=True)
    """
)


def test_sigkill_mid_update_then_rerun(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root, 45)
    age(root)
    index_dir = tmp_path / "idx"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    counts = []
    for wanted in (6, 20, 45):  # kill in the first batches, later, and while finishing
        proc = subprocess.Popen(
            [sys.executable, str(script), str(index_dir), str(root), str(TESTS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            count = _count_rows(index_dir / "index.sqlite")
            if count >= wanted:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = wanted == 45 and proc.returncode == 0
        assert finished or proc.returncode == -signal.SIGKILL, proc.stderr.read()  # type: ignore[union-attr]
        counts.append(count)
        with Index.open(index_dir) as index:  # opens, consistent
            n = len(index)
            assert n >= count and (n < 45 or wanted == 45)
            assert len(set(index.paths())) == n
            faiss_agrees(index)
        if wanted == 45:
            break
        # undo the last run's files so the next run has batches left to do
        with Index.open(index_dir) as index:
            index.remove(index.paths()[: n // 2])
    assert counts[0] < counts[1]
    # leftovers of a kill during a FAISS write, and a stale file, are cleaned by the next writer
    (index_dir / ".vectors.tmp-1-deadbeef").write_bytes(b"half")
    (index_dir / f"vectors-0gdeadbeef-{'0' * 32}.faiss").write_bytes(b"stale")

    embed = PixelEmbedder()
    with Index.open(index_dir) as index:
        before = len(index)
        report = index.update(embed)
        assert len(embed.seen) <= 45 - before  # finished batches are not redone
        assert len(report.added) == 45 - before
        assert len(index) == 45
        assert index.paths() == sorted({p.relative_to(root).as_posix() for p in root.rglob("*.*")})
        faiss_agrees(index)
    assert not list(index_dir.glob(".vectors.tmp-*"))
    assert len(list(index_dir.glob("vectors-*.faiss"))) == 1
    db = sqlite3.connect(index_dir / "index.sqlite")
    dupes = db.execute("SELECT path, COUNT(*) FROM files GROUP BY path HAVING COUNT(*) > 1")
    assert dupes.fetchall() == []
    db.close()


def _count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM files").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


# --------------------------------------------------------------------------- real model


def test_real_model_index_finds_edited_copies(tmp_path: Path, default_model, photos) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "photos"
    root.mkdir()
    names = sorted(photos)
    for name in names:
        Image.fromarray(photos[name]).save(root / f"{name}.jpg", quality=92)
    age(root)
    index = Index.create(
        tmp_path / "idx", root, model_key="mobilenet_v2", dim=default_model.embedding_dim
    )
    report = index.update(default_model, batch_size=4)
    assert len(report.added) == len(names) and report.skipped == []
    edited = []
    for name in names:
        image = Image.fromarray(photos[name])
        w, h = image.size
        edited.append(
            image.crop((w // 12, h // 12, w - w // 12, h - h // 12)).resize((w // 2, h // 2))
        )
    hits = index.search_images(edited, default_model, k=2)
    assert [r[0].path for r in hits] == [f"{n}.jpg" for n in names]
    assert all(r[0].score > r[1].score + 0.05 for r in hits)
    index.close()


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_update_takes_an_engine_of_a_tiny_model(tmp_path: Path, engine: str) -> None:
    """Indexing from Python: load_embedder + Index.open_or_create + index.update(embedder)."""
    if engine == "onnx":
        pytest.importorskip("onnxruntime")
    import torch

    from lookalike.inference import ModelSource, load_embedder
    from lookalike.model.network import SiameseModel

    torch.manual_seed(0)
    model = SiameseModel.create("small_cnn", pretrained=False, projection=(16,))
    model.save(tmp_path / "model")
    source = ModelSource(folder=str(tmp_path / "model"))
    embedder = load_embedder(source, engine=engine, device="cpu")
    assert embedder.engine == engine
    root = tmp_path / "photos"
    make_tree(root, 7)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    age(root)
    key = str(embedder.key or embedder.name)
    with Index.open_or_create(
        tmp_path / "idx", root, model_key=key, dim=embedder.embedding_dim, model_source=source
    ) as index:
        report = index.update(embedder, batch_size=3, progress=False)
        assert len(report.added) == 7 and report.embedded == 7
        assert [p for p, _ in report.skipped] == ["broken.jpg"]
        snap = index.vectors()
        want = model.embed([index.resolve(p) for p in snap.paths])
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        np.testing.assert_array_less(1 - 1e-4, np.sum(snap.vectors * want, axis=1))
        hits = index.search_images([index.resolve(p) for p in snap.paths[:3]], embedder, k=1)
        assert [h[0].path for h in hits] == snap.paths[:3]
        again = index.update(embedder, progress=False)
        assert again.embedded == 0 and again.unchanged == 7
    with Index.open(tmp_path / "idx", model_key=key) as index:
        assert index.model_source == source and len(index) == 7
