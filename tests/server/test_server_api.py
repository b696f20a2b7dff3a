"""The web API of ``lookalike serve`` through FastAPI's TestClient: every endpoint, bad inputs."""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.cli import main
from lookalike.errors import IndexFolderError, LookalikeError
from lookalike.inference import ModelSource
from lookalike.model.network import SiameseModel
from lookalike.server import create_app, training_routes
from server_helpers import (
    LOCAL,
    client_fixture,  # noqa: F401 (the client fixture)
    glyph,
    glyph_index,
    labelled_pairs,
    model_dir_fixture,  # noqa: F401 (the model_dir fixture)
    png_bytes,
    search_glyph_3,
    small_model_dir,
    state_of,
)

A = png_bytes(glyph(1))
A_NOISY = png_bytes(glyph(1, noise_seed=3))
B = png_bytes(glyph(2))


def two(
    a: bytes = A, b: bytes = B, *, a_name: str = "a.png", b_name: str = "b.png"
) -> dict[str, tuple[str, bytes]]:
    return {"a": (a_name, a), "b": (b_name, b)}


def assert_error(response: Any, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert "Traceback" not in response.text
    for word in words:
        assert word in detail, detail
    return detail


def add_pairs(client: TestClient, n: int) -> list[str]:
    ids = []
    for a, b, label in labelled_pairs(n):
        response = client.post("/api/pairs", files=two(a, b), data={"label": label})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def wait_job(client: TestClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def train(client: TestClient, **settings: Any) -> dict[str, Any]:
    response = client.post("/api/train-head", json=settings or None)
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["id"])
    assert job["state"] == "succeeded", job
    return job


# -- health, compare, explain ---------------------------------------------------------------------


def test_health_describes_the_model(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    assert health["backbone"] == "small_cnn"
    assert health["model"] == "small-model"
    assert health["embedding_dim"] == 128
    assert health["input_size"] == [28, 28] and health["channels"] == 1
    assert health["small_model"] is True  # the page then says "low means same"
    assert health["has_head"] is False and health["has_index"] is False
    assert health["pairs"] == 0 and health["training"] is False
    assert health["version"]


def test_compare_matches_the_library(client: TestClient, model_dir: Path) -> None:
    import lookalike

    response = client.post("/api/compare", files=two(A, B))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = lookalike.compare(A, B, SiameseModel.load(model_dir))
    assert body["cosine"] == pytest.approx(expected.cosine, abs=1e-4)  # ONNX Runtime vs torch
    assert body["euclidean"] == pytest.approx(expected.euclidean, abs=1e-4)
    assert body["probability"] is None and body["same"] is None and body["metric"] is None
    same = client.post("/api/compare", files=two(A, A)).json()
    assert same["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert same["euclidean"] == pytest.approx(0.0, abs=1e-3)


def test_engines_agree(model_dir: Path, tmp_path: Path) -> None:
    scores = {}
    for engine in ("torch", "onnx"):
        app = create_app(model_dir, data_dir=tmp_path / engine, engine=engine)
        with TestClient(app, base_url=LOCAL) as client:
            assert client.get("/api/health").json()["engine"] == engine
            scores[engine] = client.post("/api/compare", files=two(A, B)).json()
    assert scores["onnx"]["cosine"] == pytest.approx(scores["torch"]["cosine"], abs=1e-4)
    assert scores["onnx"]["euclidean"] == pytest.approx(scores["torch"]["euclidean"], abs=1e-4)
    with pytest.raises(LookalikeError, match="engine"):
        create_app(model_dir, data_dir=tmp_path / "x", engine="tpu")


def test_compare_bad_inputs_are_clear_json_errors(client: TestClient) -> None:
    assert_error(client.post("/api/compare", files={"a": ("a.png", A)}), 422, "missing", "'b'")
    assert_error(client.post("/api/compare"), 422, "'a'", "'b'")
    not_image = two(b"just some text, not pixels", B, a_name="cat.png")
    assert_error(client.post("/api/compare", files=not_image), 415, "a (cat.png)", "not an image")
    truncated = two(A, B[: len(B) // 2])
    assert_error(client.post("/api/compare", files=truncated), 422, "b (b.png)", "decoded")
    assert_error(client.post("/api/compare", files=two(b"", B)), 400, "empty")


def test_content_is_sniffed_not_trusted(client: TestClient) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(glyph(1)).save(jpeg, format="JPEG")
    files = {"a": ("photo.txt", jpeg.getvalue(), "text/plain"), "b": ("x.gif", A, "image/gif")}
    assert client.post("/api/compare", files=files).status_code == 200
    fake = {"a": ("real.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"), "b": ("b.png", B)}
    assert client.post("/api/compare", files=fake).status_code in (415, 422)


def test_uploads_over_the_limit_get_413(model_dir: Path, tmp_path: Path) -> None:
    app = create_app(model_dir, data_dir=tmp_path / "d", max_upload_bytes=2000)
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    assert len(big) > 2000 and len(A) < 2000
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        assert client.post("/api/compare", files=two(A, A)).status_code == 200
        detail = assert_error(client.post("/api/compare", files=two(A, big)), 413, "too large")
        assert "max-upload-mb" in detail
        # A body far past the limit is refused from its Content-Length, before reading it.
        huge = {"a": ("a.png", b"\0" * 50_000), "b": ("b.png", b"\0" * 50_000)}
        assert_error(client.post("/api/compare", files=huge), 413, "too large")

        # A chunked body (no Content-Length) is cut off while it streams.
        def chunks() -> Iterator[bytes]:
            yield b'--x\r\nContent-Disposition: form-data; name="a"; filename="a.png"\r\n\r\n'
            for _ in range(100):
                yield b"\0" * 1000

        response = client.post(
            "/api/compare",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert_error(response, 413, "too large")


def test_internal_errors_never_leak(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_: Any) -> Any:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(state_of(client).batcher, "embed", boom)
    response = client.post("/api/compare", files=two())
    detail = assert_error(response, 500, "internal server error")
    assert "secret" not in response.text and "passwd" not in detail


def test_explain_returns_heatmaps(client: TestClient) -> None:
    body = client.post("/api/explain", files=two(A, A_NOISY)).json()
    assert body["cosine"] > 0.9
    names = [h["name"] for h in body["heatmaps"]]
    assert names == ["a", "b", "figure"]
    for heat in body["heatmaps"]:
        image = Image.open(io.BytesIO(base64.b64decode(heat["png_base64"])))
        assert image.format == "PNG" and min(image.size) > 16
    quick = client.post("/api/explain?figure=false", files=two()).json()
    assert [h["name"] for h in quick["heatmaps"]] == ["a", "b"]
    assert_error(client.post("/api/explain", files={"b": ("b.png", B)}), 422, "'a'")


# -- search and the index -------------------------------------------------------------------------


def test_search_without_an_index_is_409(client: TestClient) -> None:
    assert_error(client.post("/api/search", files={"image": ("q.png", A)}), 409, "no index")
    assert_error(client.get("/api/index/image", params={"path": "x.png"}), 409, "no index")


def test_search_and_thumbnails_stay_inside_the_index_root(model_dir: Path, tmp_path: Path) -> None:
    root = glyph_index(model_dir, tmp_path, 6)
    (tmp_path / "secret.png").write_bytes(A)
    Image.fromarray(glyph(9)).save(root / "not-indexed.png")
    # No model named: the server serves the model the index recorded.
    app = create_app(index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        top = search_glyph_3(client, 6)
        thumb = client.get(top["url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (28, 28)  # never enlarged
        small = client.get(top["url"] + "&size=16")
        assert Image.open(io.BytesIO(small.content)).size == (16, 16)
        for bad in ("../secret.png", str(tmp_path / "secret.png"), "not-indexed.png", "nope.png"):
            assert_error(client.get("/api/index/image", params={"path": bad}), 404)
        assert_error(
            client.post("/api/search", files={"image": ("q.png", A)}, data={"k": "0"}), 422, "k"
        )


def test_server_refuses_an_index_built_with_another_model(model_dir: Path, tmp_path: Path) -> None:
    """The CLI's refusal, in words: serving model A over an index of model B is an error."""
    other_dir = small_model_dir(tmp_path / "other")
    root = glyph_index(other_dir, tmp_path, 3)
    source = ModelSource(folder=str(other_dir))
    with pytest.raises(IndexFolderError) as refused:
        create_app(model_dir, index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    message = str(refused.value)
    assert f"built with the model folder {source.folder}" in message
    assert f"not the model folder {Path(model_dir).absolute()}" in message
    # The CLI refuses the same pair with the same words.
    cli_search = subprocess.run(
        [
            sys.executable,
            "-m",
            "lookalike",
            "search",
            str(root / "g0.png"),
            "--index",
            str(tmp_path / "index"),
            "--model",
            str(model_dir),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "LOOKALIKE_OFFLINE": "1"},
    )
    assert cli_search.returncode == 2, cli_search.stderr
    assert message in cli_search.stderr


# -- labelled pairs -------------------------------------------------------------------------------


def test_pairs_add_list_images_delete(client: TestClient) -> None:
    response = client.post("/api/pairs", files=two(A, A_NOISY), data={"label": "same"})
    assert response.status_code == 201
    pair = response.json()
    assert pair["label"] == "same" and pair["a_name"] == "a.png"
    client.post("/api/pairs", files=two(A, B), data={"label": "different"})
    listed = client.get("/api/pairs").json()
    assert [p["label"] for p in listed["pairs"]] == ["same", "different"]
    assert listed["same"] == 1 and listed["different"] == 1
    image = client.get(pair["a_url"])
    assert image.status_code == 200 and image.content == A
    assert image.headers["content-type"] == "image/png"
    assert client.get(pair["b_url"]).content == A_NOISY
    images = state_of(client).pairs.images
    assert len(list(images.iterdir())) == 3  # A stored once for both pairs
    assert client.delete(f"/api/pairs/{pair['id']}").status_code == 204
    assert len(list(images.iterdir())) == 2  # A_NOISY was only in the deleted pair
    assert client.get("/api/pairs").json()["same"] == 0
    assert_error(client.delete(f"/api/pairs/{pair['id']}"), 404, "no pair")
    assert_error(client.get(f"/api/pairs/{pair['id']}/image/a"), 404, "no pair")
    assert client.get(f"/api/pairs/{pair['id']}/image/c").status_code == 422


def test_pair_label_and_images_are_validated(client: TestClient) -> None:
    assert_error(client.post("/api/pairs", files=two(), data={"label": "maybe"}), 422, "label")
    assert_error(client.post("/api/pairs", files=two()), 422, "'label'")
    bad = client.post("/api/pairs", files=two(A, b"nope"), data={"label": "same"})
    assert_error(bad, 415)
    assert client.get("/api/pairs").json()["pairs"] == []


def test_pairs_and_head_survive_a_restart(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with TestClient(create_app(model_dir, data_dir=data), base_url=LOCAL) as client:
        ids = add_pairs(client, 8)
        train(client, steps=100)
        before = client.post("/api/compare", files=two(A, A_NOISY)).json()
    with TestClient(create_app(model_dir, data_dir=data), base_url=LOCAL) as client:
        assert [p["id"] for p in client.get("/api/pairs").json()["pairs"]] == ids
        assert client.get(f"/api/pairs/{ids[0]}/image/a").status_code == 200
        assert client.get("/api/health").json()["has_head"] is True
        after = client.post("/api/compare", files=two(A, A_NOISY)).json()
    assert after["probability"] == pytest.approx(before["probability"], abs=1e-5)
    # Another model: the stored head does not fit it and is not attached.
    other = small_model_dir(tmp_path / "other")
    with TestClient(create_app(other, data_dir=data), base_url=LOCAL) as client:
        assert client.get("/api/health").json()["has_head"] is False
        assert len(client.get("/api/pairs").json()["pairs"]) == 8


# -- head training --------------------------------------------------------------------------------


def test_training_needs_enough_pairs_of_both_labels(client: TestClient) -> None:
    assert_error(client.post("/api/train-head"), 400, "at least 4")
    for k in range(4):  # four different pairs: the same pair twice is refused (409)
        same = two(png_bytes(glyph(k)), png_bytes(glyph(k, noise_seed=3)))
        assert client.post("/api/pairs", files=same, data={"label": "same"}).status_code == 201
    assert_error(client.post("/api/train-head"), 400, "both labels", "4 same")
    assert_error(client.post("/api/train-head", json={"steps": 0}), 422, "steps")
    assert_error(client.get("/api/jobs/nope"), 404, "no job")


def test_a_second_training_request_gets_409(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_pairs(client, 4)
    state = state_of(client)
    gate = threading.Event()

    def slow(job: Any, *args: Any) -> dict[str, Any]:
        job.progress(1, 10, 0.5)
        gate.wait(30)
        return {}

    monkeypatch.setattr(state, "_train", slow)
    first = client.post("/api/train-head")
    assert first.status_code == 202
    assert_error(client.post("/api/train-head"), 409, "a training job is running, wait for it")
    running = client.get(f"/api/jobs/{first.json()['id']}").json()
    assert running["state"] == "running" and running["step"] == 1 and running["total"] == 10
    assert client.get("/api/health").json()["training"] is True
    gate.set()
    assert wait_job(client, first.json()["id"])["state"] == "succeeded"
    assert client.post("/api/train-head").status_code == 202  # free again
    state.jobs.wait(30)


def test_training_swaps_in_a_head_without_touching_the_served_model(client: TestClient) -> None:
    add_pairs(client, 10)
    served = state_of(client).model
    job = train(client)
    assert job["phase"] == "done" and job["step"] == job["total"] == 300
    assert job["loss"] < 0.3
    assert job["n_train"] + job["n_holdout"] == 10 and job["n_holdout"] >= 2
    assert job["train_accuracy"] >= 0.9
    assert served.head is None and "probability" not in served.thresholds  # old snapshot intact
    assert state_of(client).model is not served
    # Unseen pairs: a glyph with its noisy copy, and two other glyphs.
    same = client.post("/api/compare", files=two(glyph_png(500), glyph_png(500, 7))).json()
    different = client.post("/api/compare", files=two(glyph_png(500), glyph_png(600))).json()
    assert same["metric"] == "probability" and same["threshold"] == 0.5
    assert same["probability"] > 0.5 and same["same"] is True
    assert different["probability"] < 0.5 and different["same"] is False
    assert client.get("/api/health").json()["has_head"] is True


def test_compare_stays_consistent_while_a_head_trains(client: TestClient) -> None:
    """Requests during training see either the old model or the new one, never a mix."""
    add_pairs(client, 8)
    job_id = client.post("/api/train-head", json={"steps": 400}).json()["id"]
    answers: list[dict[str, Any]] = []
    failures: list[str] = []

    def hammer() -> None:
        for _ in range(6):
            response = client.post("/api/compare", files=two(A, A_NOISY))
            if response.status_code != 200:
                failures.append(response.text)
            else:
                answers.append(response.json())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wait_job(client, job_id)["state"] == "succeeded"
    assert failures == [] and len(answers) == 24
    for answer in answers:
        if answer["probability"] is None:
            assert answer["metric"] is None
        else:
            assert answer["metric"] == "probability" and answer["threshold"] == 0.5
    after = client.post("/api/compare", files=two(A, A_NOISY)).json()
    assert after["probability"] is not None


def glyph_png(seed: int, noise: int | None = None) -> bytes:
    return png_bytes(glyph(seed, noise_seed=noise))


# -- download -------------------------------------------------------------------------------------


def unzip(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert all(n.startswith("lookalike-model/") for n in names), names
        archive.extractall(into)
    return into / "lookalike-model"


def test_download_loads_in_the_library_and_the_cli(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_error(client.get("/api/head/download"), 409, "no pair head")
    add_pairs(client, 8)
    train(client, steps=150)
    response = client.get("/api/head/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "lookalike-model.zip" in response.headers["content-disposition"]
    folder = unzip(response.content, tmp_path / "unzipped")
    config = json.loads((folder / "config.json").read_text())
    assert config["backbone_weights"]["stored"] is True  # a random small CNN cannot be referenced
    loaded = SiameseModel.load(folder)
    assert loaded.head is not None and loaded.thresholds["probability"] == 0.5
    served = client.post("/api/compare", files=two(A, A_NOISY)).json()
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(A)
    b.write_bytes(A_NOISY)
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--model", str(folder), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["probability"] == pytest.approx(served["probability"], abs=1e-4)
    assert printed["cosine"] == pytest.approx(served["cosine"], abs=1e-4)


def test_download_references_a_pretrained_backbone(tmp_path: Path) -> None:
    """With mobilenet_v2 the zip holds the head, and the backbone by name and sha256."""
    from lookalike.model.layers import PairHead

    model = SiameseModel.create()
    model.head = PairHead(model.embedding_dim)
    model.thresholds["probability"] = 0.5
    app = create_app(model=model, reference_backbone=True, data_dir=tmp_path / "d", engine="torch")
    with TestClient(app, base_url=LOCAL) as client:
        response = client.get("/api/head/download")
    assert response.status_code == 200
    assert len(response.content) < 2_000_000  # MobileNetV2's 14 MB of weights are not in it
    folder = unzip(response.content, tmp_path / "unzipped")
    config = json.loads((folder / "config.json").read_text())
    assert config["backbone_weights"]["stored"] is False
    assert config["backbone_weights"]["pretrained_sha256"] == model.weights_sha256
    loaded = SiameseModel.load(folder)
    assert loaded.head is not None
    x = np.random.default_rng(0).random((2, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(loaded.embed(x), model.embed(x), atol=1e-5)


# -- pages, docs, command line --------------------------------------------------------------------


def test_page_and_docs_are_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text
    assert client.get("/redoc").status_code == 404
    for name in ("app.js", "app.css", "docs.js", "docs.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200
        assert "http://" not in asset.text and "https://" not in asset.text, name
    assert "https://" not in page.text and "http://" not in page.text
    assert client.get("/favicon.ico").status_code == 200


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    expected = {
        ("/api/health", "get"),
        ("/api/compare", "post"),
        ("/api/explain", "post"),
        ("/api/search", "post"),
        ("/api/index/image", "get"),
        ("/api/pairs", "post"),
        ("/api/pairs", "get"),
        ("/api/pairs/{pair_id}", "delete"),
        ("/api/pairs/{pair_id}/image/{side}", "get"),
        ("/api/train-head", "post"),
        ("/api/jobs/{job_id}", "get"),
        ("/api/head/download", "get"),
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == expected
    compare = spec["paths"]["/api/compare"]["post"]
    assert compare["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "CompareResponse"
    )
    assert {"413", "415", "422"} <= set(compare["responses"])
    assert "CompareResponse" in spec["components"]["schemas"]
    pairs = spec["paths"]["/api/pairs"]["get"]["responses"]["200"]["content"]["application/json"]
    assert pairs["schema"]["$ref"].endswith("/PairListResponse")  # not data.PairList's name
    assert "PairList" not in spec["components"]["schemas"]


def test_training_routes_share_deps_not_routes() -> None:
    tree = ast.parse(Path(training_routes.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "lookalike.server.deps" in imported
    assert "lookalike.server.routes" not in imported


def test_serve_command_validates_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--max-upload-mb", "0"]) == 2
    assert "max-upload-mb" in capsys.readouterr().err
    assert main(["serve", "--model", "/definitely/not/here"]) == 2
    assert "not a model folder" in capsys.readouterr().err
