"""Indexing and embedding on Ray (a real local Ray with 2 CPUs, a real ONNX model): the same
rows, hashes, vectors and skipped files as single-process indexing; incremental updates; a
killed run resumed; ``embed --ray`` (also from a ``file://`` URI) equal to ``embed``."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

import lookalike
from index_parity import assert_same, counts
from lookalike.cli import main
from lookalike.errors import LookalikeError
from lookalike.index.index import Index
from lookalike.inference import ModelSource, load_embedder
from lookalike.inference.ray_data import ModelLoader, RayOptions, ray_session
from pixel_embedder import write

ray = pytest.importorskip("ray")
pytest.importorskip("onnxruntime")

SRC = str(Path(lookalike.__file__).resolve().parents[1])
MODEL_ARGS = ["--engine", "onnx", "--device", "cpu"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One local Ray (2 CPUs) for the module, a tiny model folder and one export cache that
    the driver and the Ray workers share (workers inherit this environment)."""
    import torch

    from lookalike.model.network import SiameseModel

    base = tmp_path_factory.mktemp("ray")
    torch.manual_seed(0)
    SiameseModel.create("small_cnn", pretrained=False, projection=(16,)).save(base / "model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKALIKE_CACHE", str(base / "cache"))
        mp.setenv("PYTHONPATH", os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        with ray_session(None, workers=1):
            yield {"base": base, "model": base / "model", "cache": base / "cache"}
    assert not ray.is_initialized()


@pytest.fixture()
def cache(shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The module's cache for this test too (the autouse fixture gives each test its own)."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(shared["cache"]))
    return shared


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    """n distinct small images in two folders, 3 identical copies and one corrupt file."""
    for i in range(n):
        write(root / ("", "sub")[i % 2] / f"img{i:02d}.png", seed * 1000 + i)
    for k in range(3):
        shutil.copy(root / "img00.png", root / "sub" / f"copy{k}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    age(root)


def age(root: Path) -> None:
    """Every file's time a minute back (nothing 'racily' recent)."""
    past = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past))


def test_ray_indexing_equals_single_process_and_so_do_updates(
    cache: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    make_folder(root, 30)
    source = ModelSource(folder=str(cache["model"]))
    embedder = load_embedder(source, engine="onnx", device="cpu")
    options = RayOptions(ModelLoader(source, engine="onnx", device="cpu"), workers=2)
    key, dim = str(embedder.key), embedder.embedding_dim

    def index(name: str) -> Index:
        return Index.open_or_create(tmp_path / name, root, model_key=key, dim=dim)

    with index("local") as local, index("ray") as remote:
        want = local.update(embedder, batch_size=8, progress=False)
        got = remote.update(embedder, batch_size=8, progress=False, ray=options)
        assert counts(got) == counts(want)
        assert [p for p, _ in got.skipped] == ["broken.jpg"]
        assert got.embedded == 30 and got.reused_from_cache == 3 and len(got.added) == 33
        assert_same(local, remote)

        # add two (one a copy), change two, remove two: both update the same way
        write(root / "new0.png", 777)
        shutil.copy(root / "img06.png", root / "sub" / "new_copy.png")
        write(root / "img02.png", 555)
        write(root / "sub" / "img03.png", 556)
        (root / "img04.png").unlink()
        (root / "sub" / "copy1.png").unlink()
        age(root)
        want = local.update(embedder, batch_size=8, progress=False)
        got = remote.update(embedder, batch_size=8, progress=False, ray=options)
        assert counts(got) == counts(want)
        assert got.embedded == 3 and sorted(got.added) == ["new0.png", "sub/new_copy.png"]
        assert got.removed == ["img04.png", "sub/copy1.png"]
        assert_same(local, remote)

        again = remote.update(embedder, progress=False, ray=options)
        assert again.embedded == 0 and again.unchanged == len(remote)

        # a verifying update hashes and embeds everything again, and finds nothing wrong
        want = local.update(embedder, progress=False, verify=True)
        got = remote.update(embedder, progress=False, verify=True, ray=options)
        assert counts(got) == counts(want) and got.verified == want.verified == len(remote) + 1
        assert got.repaired == [] and got.embedded == 30  # distinct contents
        assert_same(local, remote)


_KILLED = """
import sys
from lookalike.cli import main
from lookalike.errors import LookalikeError
sys.exit(main(sys.argv[1:]))
"""


def test_killed_ray_run_is_resumed_without_redoing_committed_batches(
    cache: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    make_folder(root, 120, seed=3)
    index_dir = tmp_path / "idx"
    model = ["--model", str(cache["model"]), *MODEL_ARGS]
    argv = ["index", str(root), "--index", str(index_dir), *model, "--batch-size", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, *argv, "--ray", "--ray-workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes its local Ray too
    )
    try:
        deadline = time.monotonic() + 90
        count = 0
        while time.monotonic() < deadline and proc.poll() is None and count < 2:
            count = count_files(index_dir / "index.sqlite")
            time.sleep(0.01)
        assert count >= 2, proc.stderr.read()  # type: ignore[union-attr]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    committed = count_files(index_dir / "index.sqlite")
    assert committed < 123, "the run finished before it was killed: nothing to resume"

    source = ModelSource(folder=str(cache["model"]))
    embedder = load_embedder(source, engine="onnx", device="cpu")
    options = RayOptions(ModelLoader(source, engine="onnx", device="cpu"), workers=1)
    with Index.open(index_dir) as index:
        contents = {row.content_hash for row in index._store.rows().values()}
        report = index.update(embedder, batch_size=16, progress=False, ray=options)
        assert len(index) == 123  # 120 + 3 copies; broken.jpg skipped
        assert len(set(index.paths())) == len(index.paths())
        # only contents not committed before the kill were embedded (120 distinct ones)
        assert report.embedded == 120 - len(contents)
        assert len(report.added) == 123 - committed
    with closing(sqlite3.connect(index_dir / "index.sqlite")) as db:
        dupes = db.execute("SELECT path FROM files GROUP BY path HAVING COUNT(*) > 1")
        assert dupes.fetchall() == []


def count_files(db: Path) -> int:
    """Rows in the index's files table (0 before the database exists or while locked)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            return int(con.execute("SELECT COUNT(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_embed_on_ray_equals_embed_also_from_a_file_uri(
    cache: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "photos"
    make_folder(root, 12, seed=5)
    model = ["--model", str(cache["model"]), *MODEL_ARGS, "--batch-size", "4"]
    assert main(["embed", str(root), "--out", str(tmp_path / "a.npz"), *model]) == 0
    uri = root.absolute().as_uri()
    for name, where in (("b.npz", str(root)), ("c.npz", uri)):
        assert main(["embed", where, "--out", str(tmp_path / name), *model, "--ray"]) == 0
    assert ray.is_initialized()  # a Ray this process started is left to its owner
    err = capsys.readouterr().err
    assert err.count("broken.jpg") == 3 and "Dataset" not in err  # no Ray Data chatter
    a, b, c = (np.load(tmp_path / n) for n in ("a.npz", "b.npz", "c.npz"))
    assert list(b["paths"]) == list(a["paths"]) and list(b["skipped"]) == list(a["skipped"])
    assert list(c["paths"]) == [Path(p).absolute().as_uri() for p in a["paths"]]
    assert len(a["paths"]) == 15 and a["embeddings"].shape == (15, 16)
    np.testing.assert_allclose(b["embeddings"], a["embeddings"], atol=1e-5)
    np.testing.assert_allclose(c["embeddings"], a["embeddings"], atol=1e-5)


def test_ray_over_a_file_uri_root_equals_single_process(
    cache: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ray workers read a ``file://`` root through fsspec; the index is the one a single
    process makes of the folder, and an update on Ray after a change agrees too."""
    root = tmp_path / "photos"
    make_folder(root, 10, seed=7)
    uri = root.absolute().as_uri()
    model = ["--model", str(cache["model"]), *MODEL_ARGS, "--batch-size", "4"]
    assert main(["index", str(root), "--index", str(tmp_path / "local"), *model]) == 0
    assert main(["index", uri, "--index", str(tmp_path / "ray"), *model, "--ray"]) == 0
    out = capsys.readouterr()
    assert "13 images" in out.out and out.err.count("skipped broken.jpg") == 2
    write(root / "sub" / "new.png", 901)
    (root / "img02.png").unlink()
    age(root)
    assert main(["index", str(root), "--index", str(tmp_path / "local"), *model]) == 0
    assert main(["index", uri, "--index", str(tmp_path / "ray"), *model, "--ray"]) == 0
    assert "1 added, 0 updated, 1 removed" in capsys.readouterr().out
    with Index.open(tmp_path / "local") as local, Index.open(tmp_path / "ray") as remote:
        assert remote.root == uri and isinstance(local.root, Path)
        assert_same(local, remote)


def test_a_model_missing_or_other_on_the_workers_is_one_error(
    cache: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    from lookalike.model.network import SiameseModel

    root = tmp_path / "photos"
    make_folder(root, 4)
    embedder = load_embedder(ModelSource(folder=str(cache["model"])), engine="onnx", device="cpu")
    torch.manual_seed(1)  # the same architecture with other weights: same size, other vectors
    SiameseModel.create("small_cnn", pretrained=False, projection=(16,)).save(tmp_path / "other")
    key, dim = str(embedder.key), embedder.embedding_dim
    with Index.open_or_create(tmp_path / "idx", root, model_key=key, dim=dim) as index:
        for folder, message in (
            ("not-on-the-nodes", "not-on-the-nodes is not a model folder"),
            ("other", "is not the driver's"),
        ):
            elsewhere = ModelLoader(ModelSource(folder=str(tmp_path / folder)), engine="onnx")
            with pytest.raises(LookalikeError, match=message):
                index.update(embedder, progress=False, ray=RayOptions(elsewhere, workers=1))
            assert len(index) == 0


def test_actor_plan_gpus_only_when_the_model_can_use_them() -> None:
    from lookalike.inference.ray_data import actor_plan

    source = ModelSource(folder="/m")
    auto, onnx = ModelLoader(source), ModelLoader(source, engine="onnx")
    gpu_cluster = {"CPU": 32.0, "GPU": 4.0}
    assert actor_plan(gpu_cluster, RayOptions(auto)) == (4, {"num_gpus": 1.0, "num_cpus": 1.0})
    assert actor_plan(gpu_cluster, RayOptions(onnx)) == (16, {"num_cpus": 1.0})
    assert actor_plan(gpu_cluster, RayOptions(auto, gpus=False, workers=3))[1] == {"num_cpus": 1.0}
    cpu = ModelLoader(source, device="cpu")
    assert actor_plan(gpu_cluster, RayOptions(cpu, workers=2)) == (2, {"num_cpus": 1.0})
    # two cores: one actor per core less one for decoding, shares down to a quarter CPU
    assert actor_plan({"CPU": 2.0}, RayOptions(auto)) == (1, {"num_cpus": 1.0})
    assert actor_plan({"CPU": 3.0}, RayOptions(auto, workers=2)) == (2, {"num_cpus": 1.0})
    assert actor_plan({"CPU": 2.0}, RayOptions(auto, workers=2)) == (2, {"num_cpus": 0.5})
    assert actor_plan({"CPU": 2.0}, RayOptions(auto, workers=8)) == (8, {"num_cpus": 0.25})


def test_ray_into_a_milvus_store_searches_like_faiss_in_one_process(
    cache: dict[str, Path], tmp_path: Path
) -> None:
    """Both halves of issue 13 at once: embedded on Ray, stored in milvus-lite; the same
    rows and the same search results as a plain FAISS index built in one process."""
    pytest.importorskip("pymilvus")
    root = tmp_path / "photos"
    make_folder(root, 12, seed=5)
    source = ModelSource(folder=str(cache["model"]))
    embedder = load_embedder(source, engine="onnx", device="cpu")
    options = RayOptions(ModelLoader(source, engine="onnx", device="cpu"), workers=1)
    key, dim = str(embedder.key), embedder.embedding_dim
    store = f"milvus-lite:{tmp_path / 'vectors.db'}"
    with (
        Index.open_or_create(tmp_path / "faiss", root, model_key=key, dim=dim) as plain,
        Index.open_or_create(tmp_path / "mil", root, model_key=key, dim=dim, store=store) as mil,
    ):
        want = plain.update(embedder, batch_size=4, progress=False)
        got = mil.update(embedder, batch_size=4, progress=False, ray=options)
        assert counts(got) == counts(want) and got.embedded == 12
        assert_same(plain, mil)
        queries = plain.vectors().vectors[:5]
        for a, b in zip(plain.search(queries, 4), mil.search(queries, 4), strict=True):
            # identical copies tie at 1.0, and the two stores order ties differently
            assert sorted(h.path for h in a) == sorted(h.path for h in b)
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
