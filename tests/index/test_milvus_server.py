"""``lookalike serve --index`` over an index whose vectors live in milvus-lite: the real app
(FastAPI TestClient) finds the store from the index folder and searches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.index.index import Index
from server_helpers import LOCAL, glyph_index, search_glyph_3, small_model_dir

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("fastapi")


def test_the_server_searches_a_milvus_index(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    store = f"milvus-lite:{tmp_path / 'vectors.db'}"
    glyph_index(small_model_dir(tmp_path), tmp_path, 6, store=store)
    app = create_app(index_dir=tmp_path / "index", data_dir=tmp_path / "d")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        top = search_glyph_3(client, 6)
        assert client.get(top["url"]).status_code == 200
    with Index.open(tmp_path / "index") as again:  # the server let go of milvus-lite's folder
        assert again.kind == "milvus-lite FLAT" and len(again) == 6
