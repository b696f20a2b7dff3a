"""``lookalike index URI``, ``search`` and ``dedup --index`` of an index whose root is a URI,
through the real command line: a ``file://`` root gives what the folder gives (hits printed
as URIs), and what cannot work is one line on stderr and exit code 2, before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import one_line_error
from lookalike.cli import main
from pixel_embedder import write

ENGINE = ["--engine", "torch", "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny model, and a folder with exact copies (duplicates) and a corrupt file."""
    import torch

    from lookalike.model.network import SiameseModel

    base = tmp_path_factory.mktemp("uricli")
    torch.manual_seed(0)
    SiameseModel.create("small_cnn", pretrained=False, projection=(8,)).save(base / "model")
    root = base / "photos"
    for i in range(6):
        write(root / ("", "sub")[i % 2] / f"img{i}.png", 40 + i)
    shutil.copy(root / "img0.png", root / "sub" / "copy_a.png")
    shutil.copy(root / "img0.png", root / "copy_b.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    past = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past))
    return root, ["--model", str(base / "model"), *ENGINE]


def test_file_uri_root_search_and_dedup_match_the_folder(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, model = setup
    uri = root.absolute().as_uri()
    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    assert main(["index", str(root), "--index", local, *model]) == 0
    assert main(["index", uri + "/", "--index", remote, *model]) == 0
    out, err = capsys.readouterr()
    assert out.count("8 images") == 2 and err.count("skipped broken.jpg") == 2

    # search: the same hits; printed as URIs; in JSON the relative path and the URI
    query = str(root / "sub" / "img3.png")
    grid = tmp_path / "grid.png"
    assert main(["search", query, "--index", local, "-k", "3", "--json", *model]) == 0
    want = json.loads(capsys.readouterr().out)["results"][0]["hits"]
    argv = ["search", query, "--index", remote, "-k", "3", "--json", "--grid", str(grid)]
    assert main([*argv, *model]) == 0
    got = json.loads(capsys.readouterr().out)["results"][0]["hits"]
    assert [h["path"] for h in got] == [h["path"] for h in want]
    assert got[0]["path"] == "sub/img3.png" and got[0]["uri"] == f"{uri}/sub/img3.png"
    assert "uri" not in want[0]
    assert grid.stat().st_size > 5_000
    assert main(["search", query, "--index", remote, "-k", "1", *model]) == 0
    assert f"{uri}/sub/img3.png" in capsys.readouterr().out

    # dedup --index: the same groups and kept copies, and an HTML report with thumbnails
    reports = []
    for index in (local, remote):
        html = tmp_path / f"{Path(index).name}.html"
        argv = ["dedup", "--index", index, "--json", "--threshold", "0.999", "--html", str(html)]
        assert main([*argv, *model]) == 0
        reports.append(json.loads(capsys.readouterr().out))
        page = html.read_text()
        shown = sum(len(g["paths"]) for g in reports[-1]["groups"])
        assert page.count("data:image/jpeg;base64") == shown and "unreadable" not in page
    assert reports[0]["groups"] == reports[1]["groups"]  # members, kept copies, scores
    copies = {"copy_b.png", "img0.png", "sub/copy_a.png"}
    assert any(copies <= set(g["paths"]) for g in reports[1]["groups"])

    # map --index: the thumbnails are read from the URIs
    assert main(["map", "--index", remote, "--out", str(tmp_path / "map.png"), "--json"]) == 0
    drawn = json.loads(capsys.readouterr().out)
    assert drawn["images"] == 8 and not drawn["skipped"], drawn


def test_dedup_never_moves_objects(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, model = setup
    remote = str(tmp_path / "remote")
    assert main(["index", root.absolute().as_uri(), "--index", remote, *model]) == 0
    capsys.readouterr()
    dest = tmp_path / "moved"
    argv = ["dedup", "--index", remote, "--threshold", "0.999", "--move-to", str(dest), "--yes"]
    assert main([*argv, *model]) == 2
    one_line_error(capsys, "is a URI", "never moves or deletes", "--move-to")
    assert not dest.exists() and (root / "copy_b.png").exists()


def test_uri_mistakes_are_one_line_before_any_work(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, model = setup
    idx = tmp_path / "idx"
    cases: list[tuple[list[str], list[str]]] = [
        (["memory://photos", "--ray"], ["memory://", "Ray workers cannot read it"]),
        ([(tmp_path / "nowhere").as_uri()], ["does not exist or holds no objects"]),
        (["nosuchfs://bucket/photos"], ["fsspec knows no filesystem for nosuchfs://"]),
    ]
    for scheme, package in (("s3", "s3fs"), ("gs", "gcsfs")):
        if importlib.util.find_spec(package) is None:
            cases.append(([f"{scheme}://bucket/photos"], [f"pip install {package}"]))
    for where, words in cases:
        assert main(["index", *where, "--index", str(idx), *model]) == 2, where
        one_line_error(capsys, *words)
        assert not idx.exists()  # nothing left behind
    assert main(["dedup", "file:///photos", *model]) == 2  # a folder, not a URI: say how
    one_line_error(capsys, "dedup reads a URI through an index", "lookalike index file:///photos")


def test_dedup_of_a_uri_index_without_its_fsspec_package_is_one_line(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The keep rule reads the objects: an s3:// index without s3fs is refused up front."""
    from lookalike.index.index import Index
    from lookalike.inference import ModelSource, load_embedder

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed")
    _, model = setup
    embedder = load_embedder(ModelSource(folder=model[1]), engine="torch", device="cpu")
    key, dim = str(embedder.key), embedder.embedding_dim
    with Index.create(tmp_path / "idx", "s3://bucket/photos", model_key=key, dim=dim):
        pass  # created and recorded without reaching any store
    assert main(["dedup", "--index", str(tmp_path / "idx"), "--threshold", "0.9", *model]) == 2
    one_line_error(capsys, "s3://bucket/photos", "pip install s3fs")


class EndpointUnreachableError(Exception):
    """What an object store's client raises when it cannot connect (botocore's
    ``EndpointConnectionError`` is no ``OSError`` either)."""


def test_an_unreachable_store_is_one_line(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store whose endpoint cannot be reached (offline, so a filesystem that fails the
    way a client without a network does): one line, exit 2, no index folder."""
    import fsspec
    from fsspec.spec import AbstractFileSystem

    class Unreachable(AbstractFileSystem):  # type: ignore[misc]
        protocol = "unreachable"

        def info(self, path: str, **kwargs: object) -> dict[str, object]:
            raise EndpointUnreachableError(f'Could not connect to the endpoint URL: "{path}"')

        def ls(self, path: str, detail: bool = True, **kwargs: object) -> list[object]:
            raise EndpointUnreachableError(f'Could not connect to the endpoint URL: "{path}"')

    fsspec.register_implementation("unreachable", Unreachable, clobber=True)
    _, model = setup
    idx = tmp_path / "idx"
    assert main(["index", "unreachable://bucket/photos", "--index", str(idx), *model]) == 2
    one_line_error(capsys, "cannot reach unreachable://bucket/photos", "Could not connect")
    assert not idx.exists()


def test_serve_reads_thumbnails_of_a_uri_root_through_fsspec(
    setup: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server's thumbnails come from the objects (a ``memory://`` root: not the disk)."""
    import io
    import uuid

    import fsspec
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    root, model = setup
    uri = f"memory://uricli-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    for path in root.rglob("*.png"):
        fs.pipe(f"{uri}/{path.relative_to(root).as_posix()}", path.read_bytes())
    try:
        assert main(["index", uri, "--index", str(tmp_path / "idx"), *model]) == 0
        capsys.readouterr()
        app = create_app(index_dir=tmp_path / "idx", data_dir=tmp_path / "data")
        with TestClient(app, base_url="http://localhost") as client:
            query = (root / "img2.png").read_bytes()
            hits = client.post("/api/search", files={"image": ("q.png", query)}, data={"k": "1"})
            assert hits.status_code == 200, hits.text
            (hit,) = hits.json()["hits"]
            assert hit["path"] == "img2.png"
            thumb = client.get(hit["url"])
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(thumb.content)).size == (40, 32)
            fs.rm(f"{uri}/img2.png")
            gone = client.get(hit["url"])
            assert gone.status_code == 404 and "cannot be read now" in gone.text
    finally:
        fs.rm(uri, recursive=True)
