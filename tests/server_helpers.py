"""For the server tests: a tiny model folder, generated images a pair head can learn, an
index of them, and the fixtures ``model_dir`` and ``client`` the API test modules share
(import ``model_dir_fixture`` and ``client_fixture``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from lookalike.server.state import ServerState

LOCAL = "http://localhost"
"""The test clients' base URL: the server answers loopback host names only (TestClient's
default, ``testserver``, is refused)."""


def small_model_dir(root: Path) -> Path:
    """Save a random-weight 28×28 grayscale small CNN (seed 003's size) and return its folder."""
    from lookalike.model.network import SiameseModel

    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28)
    folder = root / "small-model"
    model.save(folder)
    return folder


def glyph(seed: int, *, noise_seed: int | None = None, size: int = 28) -> np.ndarray:
    """A random 7×7 block glyph scaled to ``size`` px; ``noise_seed`` adds light pixel noise,
    so (glyph(k), glyph(k, noise_seed=j)) is a "same" pair and different ``seed`` "different"."""
    rng = np.random.default_rng(seed)
    cells = (rng.random((7, 7)) > 0.5).astype(np.float64) * 220.0
    image = np.kron(cells, np.ones((size // 7, size // 7)))
    if noise_seed is not None:
        image = image + np.random.default_rng(10_000 + noise_seed).normal(0, 12, image.shape)
    return np.clip(image + 15, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def labelled_pairs(n: int) -> list[tuple[bytes, bytes, str]]:
    """``n`` pairs alternating same (a glyph and a noisy copy) and different (two glyphs)."""
    pairs = []
    for i in range(n):
        if i % 2 == 0:
            pairs.append((png_bytes(glyph(i)), png_bytes(glyph(i, noise_seed=i)), "same"))
        else:
            pairs.append((png_bytes(glyph(i)), png_bytes(glyph(100 + i)), "different"))
    return pairs


def glyph_index(
    model_dir: Path,
    tmp_path: Path,
    n: int,
    extra: Path | None = None,
    *,
    folder_made: bool = False,
    store: str | None = None,
) -> Path:
    """Index ``n`` glyph images (``tmp_path/photos/g{k}.png``) into ``tmp_path/index`` with
    the model in ``model_dir``, recording it as the source; ``extra`` adds
    ``elsewhere.png``, a symbolic link to that file; ``folder_made``: the image folder exists
    already (it may hold other files); ``store``: where the vectors live (``None``: FAISS).
    Returns the image folder."""
    from lookalike.index.index import Index
    from lookalike.inference import ModelSource, load_embedder
    from lookalike.model.network import SiameseModel

    root = tmp_path / "photos"
    if not folder_made:
        root.mkdir()
    for k in range(n):
        Image.fromarray(glyph(k)).save(root / f"g{k}.png")
    if extra is not None:
        (root / "elsewhere.png").symlink_to(extra)
    model = SiameseModel.load(model_dir)
    source = ModelSource(folder=str(model_dir))
    key = load_embedder(source, model=model, engine="torch").key
    assert key is not None
    with Index.create(
        tmp_path / "index",
        root,
        model_key=key,
        dim=model.embedding_dim,
        model_source=source,
        store=store,
    ) as index:
        index.update(model)
    return root


def state_of(client: TestClient) -> ServerState:
    """The server state behind a test client."""
    state: ServerState = client.app.state.lookalike  # type: ignore[attr-defined]
    return state


@pytest.fixture(scope="module", name="model_dir")
def model_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model folder, once per test module."""
    return small_model_dir(tmp_path_factory.mktemp("server-model"))


@pytest.fixture(name="client")
def client_fixture(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    """A test client of a fresh server (data in ``tmp_path/data``), on ``localhost``."""
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    app = create_app(model_dir, data_dir=tmp_path / "data")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as test_client:
        yield test_client


def search_glyph_3(client: Any, size: int) -> dict[str, Any]:
    """Check a served index of ``size`` glyphs (:func:`glyph_index`) through the API: health
    counts them and ``/api/search`` with glyph 3 finds ``g3.png`` first at cosine 1. Returns
    the top hit (its ``url`` serves the thumbnail)."""
    health = client.get("/api/health").json()
    assert health["has_index"] is True and health["index_size"] == size
    query = png_bytes(glyph(3))
    hits = client.post("/api/search", files={"image": ("q.png", query)}, data={"k": "3"})
    assert hits.status_code == 200, hits.text
    found = hits.json()["hits"]
    assert len(found) == 3 and found[0]["path"] == "g3.png"
    assert found[0]["score"] == pytest.approx(1.0, abs=1e-4)
    top: dict[str, Any] = found[0]
    return top
