"""An index whose root is an fsspec URI (``memory://``, ``file://``): the same rows, hashes,
vectors and skipped files as the same images in a local folder; incremental updates (add,
change, delete objects); stamps; what is refused before any work."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index_parity import assert_same, counts, snapshot
from lookalike.errors import DataError, IndexFolderError
from lookalike.index import uri_root
from lookalike.index.index import Index
from lookalike.inference.uris import modified_ns
from pixel_embedder import DIM, PixelEmbedder, write

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("faiss")


def make_folder(root: Path) -> None:
    """Images in two folders, a copy, a corrupt JPEG, a hidden file, a non-image."""
    for i in range(8):
        write(root / ("", "sub", "sub/deep")[i % 3] / f"img{i}.png", i)
    shutil.copy(root / "img0.png", root / "sub" / "copy.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    write(root / ".hidden" / "secret.png", 99)
    write(root / "sub" / ".dot.png", 98)
    (root / "notes.txt").write_text("not an image")
    past = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past))


@pytest.fixture()
def memory_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The same images in a local folder and under a fresh ``memory://`` prefix."""
    local = tmp_path / "photos"
    make_folder(local)
    uri = f"memory://lookalike-{uuid.uuid4().hex}/photos"
    fs = fsspec.filesystem("memory")
    for path in local.rglob("*"):
        if path.is_file():
            fs.pipe(f"{uri}/{path.relative_to(local).as_posix()}", path.read_bytes())
    yield uri, local
    fs.rm(uri.rsplit("/", 1)[0], recursive=True)


def create(index_dir: Path, root: str | Path) -> Index:
    return Index.create(index_dir, root, model_key="pixels-v1", dim=DIM)


def test_memory_root_indexes_like_the_local_folder(
    memory_root: tuple[str, Path], tmp_path: Path
) -> None:
    uri, local = memory_root
    with create(tmp_path / "local", local) as a, create(tmp_path / "remote", uri + "/") as b:
        ra, rb = (
            a.update(PixelEmbedder(), progress=False),
            b.update(PixelEmbedder(), progress=False),
        )
        assert counts(ra, local) == counts(rb, uri)
        assert rb.skipped and rb.skipped[0][0] == "broken.jpg"
        assert len(b) == 9 and ".hidden/secret.png" not in b and "sub/.dot.png" not in b
        assert_same(a, b)
        assert b.root == uri  # the URI itself, without the trailing slash
        assert b.resolve("sub/img1.png") == f"{uri}/sub/img1.png"
        assert f"{uri}/sub/img1.png" in b and "sub/img1.png" in b  # a URI or a relative path
        assert b.search(a.vectors(["img0.png"]).vectors, k=2)[0][0].path in {
            "img0.png",
            "sub/copy.png",
        }
        assert b.update(PixelEmbedder(), progress=False).embedded == 0
    # the meta records the URI, and reopening reads only the database
    with Index.open(tmp_path / "remote") as again:
        assert again.root == uri
        assert again._store.meta("root") == again._store.meta("root_absolute") == uri


def test_include_and_exclude_patterns_on_a_uri_root(
    memory_root: tuple[str, Path], tmp_path: Path
) -> None:
    uri, local = memory_root
    with create(tmp_path / "local", local) as a, create(tmp_path / "remote", uri) as b:
        for index in (a, b):
            index.update(PixelEmbedder(), include=["sub/*"], exclude=["*/deep/*"], progress=False)
        assert (
            a.paths()
            == b.paths()
            == ["sub/copy.png", "sub/img1.png", "sub/img4.png", "sub/img7.png"]
        )
        assert_same(a, b)


def test_incremental_updates_add_change_and_delete_objects(
    memory_root: tuple[str, Path], tmp_path: Path
) -> None:
    uri, local = memory_root
    fs = fsspec.filesystem("memory")
    with create(tmp_path / "remote", uri) as index:
        index.update(PixelEmbedder(), progress=False)
        before = snapshot(index)
        fs.pipe(f"{uri}/new/added.png", (local / "img3.png").read_bytes())  # cached content
        write(tmp_path / "changed.png", 500)
        fs.pipe(f"{uri}/img6.png", (tmp_path / "changed.png").read_bytes())  # new content
        fs.rm(f"{uri}/sub/img1.png")
        embedder = PixelEmbedder()
        report = index.update(embedder, progress=False)
        assert report.added == ["new/added.png"]
        assert report.updated == ["img6.png"]
        assert report.removed == ["sub/img1.png"]
        assert report.embedded == 1 and report.reused_from_cache == 1
        after = snapshot(index)
        assert after["new/added.png"][0] == before["img3.png"][0]
        assert after["img6.png"][0] != before["img6.png"][0]
        expected = PixelEmbedder().embed([tmp_path / "changed.png"])[0]
        np.testing.assert_allclose(after["img6.png"][2], expected, atol=1e-5)
        assert "sub/img1.png" not in index
        # nothing left to do (the changed objects are new: hashed again, never embedded again)
        assert index.update(PixelEmbedder(), progress=False).embedded == 0


def test_a_file_uri_root_equals_the_local_folder(tmp_path: Path) -> None:
    local = tmp_path / "photos"
    make_folder(local)
    with create(tmp_path / "a", local) as a, create(tmp_path / "b", local.as_uri()) as b:
        ra, rb = (
            a.update(PixelEmbedder(), progress=False),
            b.update(PixelEmbedder(), progress=False),
        )
        assert counts(ra, local) == counts(rb, local.as_uri())
        assert_same(a, b)
        # file:// listings give a modification time: an unchanged object is not hashed again
        again = b.update(PixelEmbedder(), progress=False)
        assert again.unchanged == 9 and again.embedded == 0
        mtimes = {row.mtime_ns for row in b._store.rows().values()}
        assert -1 not in mtimes


def test_a_missing_prefix_is_refused_and_the_index_kept(
    memory_root: tuple[str, Path], tmp_path: Path
) -> None:
    uri, _ = memory_root
    with create(tmp_path / "remote", uri) as index:
        index.update(PixelEmbedder(), progress=False)
        size = len(index)
    with Index.open(tmp_path / "remote", root=uri + "-gone") as moved:
        assert moved.root == uri + "-gone"
        with pytest.raises(IndexFolderError, match="does not exist"):
            moved.update(PixelEmbedder(), progress=False)
        assert len(moved) == size  # not emptied


def test_memory_with_ray_is_refused_before_any_work(
    memory_root: tuple[str, Path], tmp_path: Path
) -> None:
    from lookalike.inference.ray_data import ModelLoader, RayOptions
    from lookalike.inference.source import ModelSource

    uri, _ = memory_root
    options = RayOptions(ModelLoader(ModelSource(folder=str(tmp_path / "no-model"))))
    with create(tmp_path / "remote", uri) as index:
        with pytest.raises(DataError, match="Ray workers cannot read it"):
            index.update(PixelEmbedder(), progress=False, ray=options)
        assert len(index) == 0


def test_a_scheme_without_its_package_names_the_package(tmp_path: Path) -> None:
    missing = [
        (s, p) for s, p in (("s3", "s3fs"), ("gs", "gcsfs"), ("abfs", "adlfs")) if not _installed(p)
    ]
    if not missing:
        pytest.skip("s3fs, gcsfs and adlfs are all installed")
    scheme, package = missing[0]
    with pytest.raises(DataError, match=f"needs the {package} package: pip install {package}"):
        uri_root.check(f"{scheme}://bucket/photos")
    # creating and opening such an index touch no network and need no package
    with create(tmp_path / "idx", f"{scheme}://bucket/photos") as index:
        assert index.root == f"{scheme}://bucket/photos"
        with pytest.raises(DataError, match=f"pip install {package}"):
            index.update(PixelEmbedder(), progress=False)


def test_an_unknown_scheme_is_one_line() -> None:
    with pytest.raises(DataError, match="fsspec knows no filesystem for nosuchfs://"):
        uri_root.check("nosuchfs://bucket/x")


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def test_stamps_prefer_a_content_tag_then_a_time() -> None:
    racy = time.time_ns() - 2_000_000_000
    old = racy - 10**12
    tagged = uri_root.stamp({"ETag": '"abc"', "LastModified": old / 1e9}, racy)
    assert tagged >= 0 and tagged == uri_root.stamp({"ETag": '"abc"'}, racy)
    assert tagged != uri_root.stamp({"ETag": '"abd"'}, racy)
    assert uri_root.stamp({"mtime": old / 1e9}, racy) == pytest.approx(old, abs=1000)
    assert uri_root.stamp({"mtime": time.time()}, racy) == -1  # racily recent
    assert uri_root.stamp({"size": 3}, racy) == -1  # nothing to go on: hashed every time
    assert uri_root.stamp({"updated": "2024-05-01T10:00:00.123Z"}, racy) == modified_ns(
        {"updated": "2024-05-01T10:00:00.123+00:00"}
    )


def test_normalise() -> None:
    assert uri_root.normalise("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert uri_root.normalise("file:///abs/folder") == "file:///abs/folder"
    assert uri_root.normalise("file:///") == "file:///"


def test_an_object_over_the_read_limit_is_skipped(
    memory_root: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object is read into memory once (hashed and decoded from those bytes): one larger
    than the limit is skipped with its reason, never half-read."""
    from lookalike.index import reader

    uri, _ = memory_root
    monkeypatch.setattr(reader, "MAX_READ_BYTES", 1 << 20)
    fsspec.filesystem("memory").pipe(f"{uri}/big.png", b"\x89PNG" + bytes(3 << 19))
    with create(tmp_path / "remote", uri) as index:
        report = index.update(PixelEmbedder(), progress=False)
    assert (
        "big.png",
        f"cannot read image {uri}/big.png: larger than 1 MiB: too large to read from a URI",
    ) in report.skipped
