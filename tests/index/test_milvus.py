"""The Milvus backend of the index on a real milvus-lite: parity with FAISS (search and dedup
groups), incremental updates mirrored in the collection, the recorded store, refusals, and a
crash between the SQLite commit and the Milvus writes reconciled by the next update."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.dedup.groups import dedup_index
from lookalike.errors import IndexFolderError
from lookalike.index.backend import StoreSpecError, parse_store
from lookalike.index.index import Index
from lookalike.index.milvus_store import MilvusVectors
from pixel_embedder import DIM, PixelEmbedder

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("faiss")

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"


def chained_table(n: int = 60, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors (n, DIM): random ones, plus a chain A–A1–A2 (cos 0.97 per step, 0.88
    end to end), a near pair (0.99) and an exact copy of row 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    u, w = x[1], x[2] - (x[2] @ x[1]) * x[1]
    w /= np.linalg.norm(w)
    t = np.arccos(0.97)
    x[3] = np.cos(t) * u + np.sin(t) * w
    x[4] = np.cos(2 * t) * u + np.sin(2 * t) * w
    x[6] = 0.99 * x[5] + np.sqrt(1 - 0.99**2) * (x[7] - (x[7] @ x[5]) * x[5]) / np.linalg.norm(
        x[7] - (x[7] @ x[5]) * x[5]
    )
    x[8] = x[0]
    return x.astype(np.float32)


class TableEmbedder(PixelEmbedder):
    """Image ``i`` (a flat 4×4 PNG whose red and green code ``i``) embeds as ``table[i]``."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = table

    def embed(self, images, *, batch_size: int = 32):  # type: ignore[no-untyped-def]
        if not (isinstance(images, np.ndarray) and images.ndim == 4):
            images = self.preprocess.batch(list(images))
        px = np.rint(np.asarray(images)[:, :2, 0, 0] * 255).astype(int)
        return self.table[px[:, 0] + 256 * px[:, 1]]


def write_coded(path: Path, i: int) -> Path:
    """A flat 4×4 PNG coding ``i`` (see :class:`TableEmbedder`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (i % 256, i // 256, 7)).save(path)
    return path


def folder(root: Path, rows: range) -> None:
    for i in rows:
        write_coded(root / ("sub" if i % 3 else "") / f"v{i:03d}.png", i)


def milvus_rows(index: Index) -> dict[int, tuple[str, np.ndarray]]:
    """What the Milvus collection holds: ``{id: (content_hash, vector)}``."""
    backend = index.backend
    assert isinstance(backend, MilvusVectors)
    got = backend.client.query(
        backend.collection, filter="id >= 0", output_fields=["id", "content_hash", "vector"]
    )
    return {
        int(r["id"]): (str(r["content_hash"]), np.asarray(r["vector"], np.float32)) for r in got
    }


def assert_mirrors(index: Index) -> None:
    """The collection holds exactly SQLite's ids, content hashes and vectors."""
    snap = index.vectors()
    hashes = index._store.id_hashes()
    got = milvus_rows(index)
    assert sorted(got) == snap.ids.tolist()
    for i, vector in zip(snap.ids.tolist(), snap.vectors, strict=True):
        assert got[i][0] == hashes[i]
        np.testing.assert_allclose(got[i][1], vector, atol=1e-6)


def lite(tmp_path: Path, name: str = "vectors.db") -> str:
    return f"milvus-lite:{tmp_path / name}"


@pytest.fixture()
def table() -> np.ndarray:
    return chained_table()


def make(tmp_path: Path, table: np.ndarray, store: str | None, name: str) -> Index:
    index = Index.create(
        tmp_path / name, tmp_path / "photos", model_key="table-v1", dim=DIM, store=store
    )
    index.update(TableEmbedder(table), progress=False)
    return index


def test_search_and_dedup_groups_equal_faiss(tmp_path: Path, table: np.ndarray) -> None:
    folder(tmp_path / "photos", range(len(table)))
    with (
        make(tmp_path, table, None, "faiss") as faiss_index,
        make(tmp_path, table, lite(tmp_path), "milvus") as milvus_index,
    ):
        assert faiss_index.kind == "flat" and milvus_index.kind == "milvus-lite FLAT"
        assert faiss_index.paths() == milvus_index.paths() and len(milvus_index) == len(table)
        rng = np.random.default_rng(1)
        queries = np.concatenate([table[[1, 5, 9]], rng.normal(size=(7, DIM))]).astype(np.float32)
        for k in (1, 10, 100):
            for want, got in zip(
                faiss_index.search(queries, k), milvus_index.search(queries, k), strict=True
            ):
                assert len(got) == min(k, len(table))
                want_scores = [h.score for h in want]
                np.testing.assert_allclose([h.score for h in got], want_scores, atol=1e-5)
                # exact copies (rows 0 and 8) tie: compare ids as sets of equal-score runs
                assert sorted((round(h.score, 4), h.id) for h in got) == sorted(
                    (round(h.score, 4), h.id) for h in want
                )
        for threshold in (0.95, 0.985, 0.5):
            want_groups = dedup_index(faiss_index, threshold, keep="shortest-path")
            got_groups = dedup_index(milvus_index, threshold, keep="shortest-path")
            assert [sorted(g.paths) for g in got_groups] == [sorted(g.paths) for g in want_groups]
            assert [g.indices for g in got_groups] == [g.indices for g in want_groups]
        chained = dedup_index(milvus_index, 0.95)
        chain = next(g for g in chained if any("v004" in p for p in g.paths))
        assert len(chain) == 3 and chain.min_score < 0.95  # A–A2 scores 0.88: a chain


def test_updates_are_mirrored_and_the_store_is_found_again(
    tmp_path: Path, table: np.ndarray
) -> None:
    root = tmp_path / "photos"
    folder(root, range(30))
    past = time.time() - 60
    for p in root.rglob("*.png"):
        os.utime(p, (past, past))
    index = make(tmp_path, table, lite(tmp_path), "idx")
    assert_mirrors(index)
    (root / "v000.png").unlink()  # delete
    (root / "sub" / "v001.png").unlink()
    write_coded(root / "sub" / "v002.png", 40)  # change
    write_coded(root / "new" / "v041.png", 41)  # add
    write_coded(root / "new" / "copy.png", 5)  # add, cached content
    report = index.update(TableEmbedder(table), progress=False)
    assert report.removed == ["sub/v001.png", "v000.png"] and report.updated == ["sub/v002.png"]
    assert sorted(report.added) == ["new/copy.png", "new/v041.png"]
    assert_mirrors(index)
    gone = index.remove(["new/copy.png"])
    assert gone == ["new/copy.png"]
    assert_mirrors(index)
    hits = index.search(table[40], 1)[0]
    assert hits[0].path == "sub/v002.png" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    index.close()

    # Reopened without saying where: the recorded store, with the same contents.
    with Index.open(tmp_path / "idx") as again:
        assert again.kind == "milvus-lite FLAT" and again.store == lite(tmp_path)
        assert again.search(table[40], 1)[0][0].path == "sub/v002.png"
        assert_mirrors(again)
    with Index.open(tmp_path / "idx", store=lite(tmp_path)) as again:
        assert len(again) == 29
    with pytest.raises(IndexFolderError, match="built with model 'table-v1'"):
        Index.open(tmp_path / "idx", model_key="another-model")
    with pytest.raises(IndexFolderError, match=r"keeps its vectors in milvus-lite:.*not faiss"):
        Index.open(tmp_path / "idx", store="faiss")
    with pytest.raises(IndexFolderError, match="not milvus-lite:"):
        Index.open(tmp_path / "idx", store=lite(tmp_path, "other.db"))

    # The index folder and the milvus-lite folder moved together: found through the relative path.
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "idx").rename(moved / "idx")
    (tmp_path / "vectors.db").rename(moved / "vectors.db")
    with Index.open(moved / "idx", root=root) as again:
        assert again.store == f"milvus-lite:{moved / 'vectors.db'}"
        assert again.search(table[40], 1)[0][0].path == "sub/v002.png"


def killed_update(tmp_path: Path, kill: str) -> None:
    """Update the index in another process that dies (``os._exit``) at its first Milvus
    ``kill`` (``"delete"`` or ``"upsert"``): right after that batch's SQLite commit."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:0] = [{str(SRC)!r}, {str(Path(__file__).parent)!r}, {str(TESTS)!r}]
        from lookalike.index.index import Index
        from lookalike.index.milvus_store import MilvusVectors
        from test_milvus import TableEmbedder, chained_table

        def die(*args, **kwargs):
            os._exit(9)

        index = Index.open({str(tmp_path / "idx")!r})
        if {kill!r} == "upsert":
            MilvusVectors._upsert = die
        else:
            index.backend.client.delete = die
        index.update(TableEmbedder(chained_table()), progress=False)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 9, done.stderr.decode()[-2000:]


def test_a_crash_after_the_sqlite_commit_is_reconciled(tmp_path: Path, table: np.ndarray) -> None:
    """A process killed between SQLite's commit and Milvus's writes leaves the collection
    stale; readers still search it (gone ids dropped); the next update reconciles it: extra
    rows deleted, missing and changed ones upserted from SQLite's cached vectors."""
    root = tmp_path / "photos"
    folder(root, range(20))
    make(tmp_path, table, lite(tmp_path), "idx").close()
    for name in ("v003.png", "v006.png"):
        (root / name).unlink()
    write_coded(root / "sub" / "v004.png", 45)  # changed content
    write_coded(root / "new.png", 46)

    killed_update(tmp_path, "delete")  # the deletions are in SQLite, not in Milvus
    with Index.open(tmp_path / "idx") as reader:  # stale collection: still searches
        assert reader._store.meta("store_generation") != reader.generation
        assert "v003.png" not in reader and len(reader) == 18
        hits = reader.search(table[3], 30)[0]
        assert all(h.path != "v003.png" for h in hits)  # its id is gone from SQLite
        assert len(milvus_rows(reader)) == 20  # the collection still has it

    killed_update(tmp_path, "upsert")  # reconciles the deletions, then dies on the new rows
    with Index.open(tmp_path / "idx") as reader:
        assert len(reader) == 19 and "new.png" in reader  # in SQLite
        rows = milvus_rows(reader)
        assert len(rows) == 18  # the two deletions reached Milvus; new.png did not
        v004 = reader.vectors(["sub/v004.png"]).ids[0]
        assert rows[v004][0] != reader._store.id_hashes()[v004]  # still the old content

    with Index.open(tmp_path / "idx") as writer:
        report = writer.update(TableEmbedder(table), progress=False)
        assert report.removed == report.added == report.updated == []  # SQLite had it all
        assert writer._store.meta("store_generation") == writer.generation
        assert_mirrors(writer)
        assert writer.search(table[45], 1)[0][0].path == "sub/v004.png"
        assert writer.search(table[46], 1)[0][0].path == "new.png"


def test_store_specs_and_an_unreachable_server(tmp_path: Path) -> None:
    assert parse_store("faiss").kind == "faiss"
    spec = parse_store("milvus://db.example:19530/photos")
    assert (spec.uri, spec.collection) == ("http://db.example:19530", "photos")
    assert parse_store("milvus+https://db.example:443/photos").uri == "https://db.example:443"
    assert parse_store("milvus-lite:rel/v.db").path == str(Path("rel/v.db").absolute())
    for bad in ("milvus", "milvus-lite:x.txt", "milvus://host/c", "milvus://h:1/", "pg://h:1/c"):
        with pytest.raises(StoreSpecError, match="not a store"):
            parse_store(bad)
    with pytest.raises(StoreSpecError, match="LOOKALIKE_MILVUS_TOKEN"):
        parse_store("milvus://u:p@h:1/c")
    started = time.perf_counter()
    with pytest.raises(IndexFolderError, match=r"milvus://127\.0\.0\.1:9/photos.*running"):
        Index.create(
            tmp_path / "i", tmp_path, model_key="m", dim=4, store="milvus://127.0.0.1:9/photos"
        )
    assert time.perf_counter() - started < 15
    assert not (tmp_path / "i" / "index.sqlite").exists()  # no half-made index left behind


def test_a_faiss_index_never_imports_pymilvus(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(SRC)!r}]
        import numpy as np
        import lookalike.index
        assert not {{"pymilvus", "faiss", "torch"}} & set(sys.modules), "imported at once"
        from lookalike.index.index import Index
        index = Index.create({str(tmp_path / "idx")!r}, {str(tmp_path)!r}, model_key="m", dim=4)
        index.search(np.ones(4, np.float32), 3)
        index.close()
        assert "pymilvus" not in sys.modules and "milvus_lite" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_a_query_that_fills_milvus_limit_warns_once(
    tmp_path: Path,
    table: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lookalike.index import milvus_store

    folder(tmp_path / "photos", range(12))
    with make(tmp_path, table, lite(tmp_path), "idx") as index:
        full = index.backend.pairs(-1.0, None)
        assert len(full[0]) == 12 * 11 // 2  # every pair, each once, a < b
        assert (full[0] < full[1]).all() and capsys.readouterr().err == ""
        monkeypatch.setattr(milvus_store, "TOPK_MAX", 3)
        index.backend.pairs(-1.0, None)
        err = capsys.readouterr().err
        assert err.count("Milvus's limit per query") == 1 and "may be incomplete" in err


def test_rebuilding_replaces_the_index_folders_own_collection(
    tmp_path: Path, table: np.ndarray
) -> None:
    folder(tmp_path / "photos", range(10))
    make(tmp_path, table, lite(tmp_path), "idx").close()
    make(tmp_path, table, lite(tmp_path), "other").close()  # a second index, same milvus-lite
    index = Index.create(
        tmp_path / "idx",
        tmp_path / "photos",
        model_key="table-v1",
        dim=DIM,
        store=lite(tmp_path),
        overwrite=True,
    )
    with index:
        assert milvus_rows(index) == {}  # the old collection was dropped, not left behind
        index.update(TableEmbedder(table), progress=False)
        assert_mirrors(index)
        backend = index.backend
        assert isinstance(backend, MilvusVectors)
        assert len(backend.client.list_collections()) == 2  # idx's (replaced) and other's


def test_a_milvus_lite_folder_in_use_by_another_process_is_one_clear_error(
    tmp_path: Path, table: np.ndarray
) -> None:
    folder(tmp_path / "photos", range(4))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(SRC)!r}]
        from lookalike.errors import IndexFolderError
        from lookalike.index.index import Index
        try:
            Index.open({str(tmp_path / "idx")!r})
        except IndexFolderError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    with make(tmp_path, table, lite(tmp_path), "idx"):  # this process holds milvus-lite
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 3, done.stderr.decode()[-2000:]
    assert "no other process has it open" in done.stdout.decode()
    assert done.stderr.decode() == ""  # no traceback from milvus-lite's logger
    with Index.open(tmp_path / "idx") as again:  # released when the index closed
        assert len(again) == 4
