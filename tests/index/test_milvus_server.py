"""``lookalike serve --index`` over an index whose vectors live in milvus-lite: the real app
(FastAPI TestClient) finds the store from the index folder and searches it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lookalike.index.index import Index
from server_helpers import LOCAL, glyph, png_bytes, small_model_dir

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")


def test_the_server_searches_a_milvus_index(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lookalike.inference import ModelSource, load_embedder
    from lookalike.model.network import SiameseModel
    from lookalike.server import create_app

    model_dir = small_model_dir(tmp_path)
    root = tmp_path / "photos"
    root.mkdir()
    for k in range(6):
        Image.fromarray(glyph(k)).save(root / f"g{k}.png")
    model = SiameseModel.load(model_dir)
    source = ModelSource(folder=str(model_dir))
    key = load_embedder(source, model=model, engine="torch").key
    assert key is not None
    store = f"milvus-lite:{tmp_path / 'vectors.db'}"
    with Index.create(
        tmp_path / "index",
        root,
        model_key=key,
        dim=model.embedding_dim,
        model_source=source,
        store=store,
    ) as index:
        index.update(model, progress=False)

    app = create_app(index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        health = client.get("/api/health").json()
        assert health["has_index"] is True and health["index_size"] == 6
        query = png_bytes(glyph(3))
        hits = client.post("/api/search", files={"image": ("q.png", query)}, data={"k": "3"})
        assert hits.status_code == 200, hits.text
        found = hits.json()["hits"]
        assert len(found) == 3 and found[0]["path"] == "g3.png"
        assert found[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert client.get(found[0]["url"]).status_code == 200
    with Index.open(tmp_path / "index") as again:  # the server let go of milvus-lite's folder
        assert again.kind == "milvus-lite FLAT" and len(again) == 6
