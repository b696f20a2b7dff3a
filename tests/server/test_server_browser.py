"""The page of ``lookalike serve`` in a real browser: a real uvicorn server, headless Chromium.

Drives seed 000's workflow end to end (two images → scores and heatmaps, label pairs, train
the head with live progress, download the model and use it from the command line), the
search grid, error display, and a 390×844 phone screenshot (written to ``test-artifacts/``).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from browser_helpers import (
    ARTIFACTS,
    COMPARED,
    choose_pair,
    chromium,
    drop_files,
    open_offline_page,
    phone_screenshots,
    playwright_or_skip,
    uvicorn_site,
    write,
)
from server_helpers import glyph, labelled_pairs, png_bytes, small_model_dir

playwright_or_skip()  # skips this module without Chromium or Playwright
pytest.importorskip("uvicorn", reason="the server needs uvicorn (lookalike[server])")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real uvicorn server on a free loopback port, serving the small model and an index."""
    from lookalike.index.index import Index
    from lookalike.inference import load_embedder
    from lookalike.model.network import SiameseModel
    from lookalike.server import create_app

    root = tmp_path_factory.mktemp("site")
    model_dir = small_model_dir(root)
    photos = root / "photos"
    photos.mkdir()
    for k in range(8):
        Image.fromarray(glyph(k)).save(photos / f"glyph{k}.png")
    model = SiameseModel.load(model_dir)
    key = load_embedder(model_dir, model=model, engine="torch").key
    assert key is not None
    with Index.create(root / "index", photos, model_key=key, dim=model.embedding_dim) as index:
        index.update(model)
    app = create_app(model_dir, index_dir=root / "index", data_dir=root / "data")
    images = root / "images"
    images.mkdir()
    with uvicorn_site(app) as url:
        yield {"url": url, "root": root, "images": images}


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def open_page(browser: Any, url: str, **context: Any) -> tuple[Any, list[str]]:
    # The page's CSP forbids eval, which Playwright's string predicates use: bypass it here
    # (its header is checked by test_server_api; external requests are caught).
    page, problems = open_offline_page(browser, url, bypass_csp=True, **context)
    page.wait_for_function(
        "document.getElementById('model-info').textContent.includes('small_cnn')"
    )
    return page, problems


def drop_file(page: Any, zone: str, name: str, data: bytes) -> None:
    """Drag-and-drop a file onto a drop zone, the way a browser delivers it."""
    drop_files(page, zone, [(name, data)])


def test_compare_label_train_download(
    site: dict[str, Any], browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lookalike.cli import main

    folder = site["images"]
    page, problems = open_page(browser, site["url"])
    assert page.is_visible("#small-model-hint")  # the digit model: "low means same"
    assert "low means same" in page.inner_text("#small-model-hint")

    # Pick one image, drop the other: scores and heatmaps appear.
    a = write(folder, "a.png", png_bytes(glyph(1)))
    page.set_input_files("#file-a", a)
    drop_file(page, "drop-b", "b.png", png_bytes(glyph(1, noise_seed=5)))
    page.wait_for_function(COMPARED)
    assert page.is_visible("#thumb-a") and page.is_visible("#thumb-b")
    assert float(page.inner_text("#cosine")) > 0.9
    assert float(page.inner_text("#euclidean")) >= 0.0
    assert page.inner_text("#probability") == "n/a"
    page.wait_for_selector("#heatmaps:not([hidden])")
    assert page.get_attribute("#heat-a", "src").startswith("data:image/png;base64,")

    # An API error shows its message on the page, never a stack trace.
    page.set_input_files(
        "#file-b", [{"name": "notes.png", "mimeType": "image/png", "buffer": b"not pixels"}]
    )
    page.wait_for_selector("#compare-error:not([hidden])")
    message = page.inner_text("#compare-error")
    assert "not an image" in message and "Traceback" not in message
    assert page.is_hidden("#error")  # beside the images, not in a banner

    # Label 10 pairs.
    for i, (pa, pb, label) in enumerate(labelled_pairs(10)):
        choose_pair(page, write(folder, f"p{i}a.png", pa), write(folder, f"p{i}b.png", pb))
        page.click("#label-same" if label == "same" else "#label-different")
        page.wait_for_function(f"document.querySelectorAll('#pairs li').length === {i + 1}")
    assert "5 same, 5 different" in page.inner_text("#pair-counts")
    first = page.get_attribute("#pairs li img", "src")
    assert page.request.get(site["url"] + first).status == 200

    # Train: live progress, then the summary; compare now gives P(same).
    page.fill("#steps", "200")
    page.click("#train")
    page.wait_for_selector("#job:not([hidden])")
    page.wait_for_function(
        "document.getElementById('job-text').dataset.state === 'succeeded'", timeout=180_000
    )
    assert page.eval_on_selector("#job-progress", "p => p.value === p.max")
    summary = page.inner_text("#job-text")
    assert "training accuracy" in summary and "held-out accuracy" in summary
    page.wait_for_function("document.getElementById('probability').textContent !== 'n/a'")
    assert "with a trained pair head" in page.inner_text("#model-info")
    new_same = (png_bytes(glyph(700)), png_bytes(glyph(700, noise_seed=9)))
    choose_pair(
        page, write(folder, "ns_a.png", new_same[0]), write(folder, "ns_b.png", new_same[1])
    )
    assert float(page.inner_text("#probability")) > 0.5
    assert page.inner_text("#verdict") == "Same (P(same) ≥ 0.500)"

    # Download the model and use it from the command line.
    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "lookalike-model.zip"
    zipped = tmp_path / "model.zip"
    download.save_as(zipped)
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(tmp_path / "unzipped")
    capsys.readouterr()
    code = main(
        ["compare", write(folder, "c1.png", new_same[0]), write(folder, "c2.png", new_same[1]),
         "--model", str(tmp_path / "unzipped" / "lookalike-model"), "--json"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["probability"] == pytest.approx(float(page.inner_text("#probability")), abs=1e-3)

    # Delete a pair from the list.
    page.click("#pairs li:first-child .delete")
    page.wait_for_function("document.querySelectorAll('#pairs li').length === 9")
    assert problems == []


def test_search_grid(site: dict[str, Any], browser: Any) -> None:
    page, problems = open_page(browser, site["url"])
    assert page.is_visible("#search-section")
    drop_file(page, "drop-q", "query.png", png_bytes(glyph(4)))
    page.wait_for_selector("#hits li img")
    first = page.inner_text("#hits li:first-child span")
    assert first.endswith("glyph4.png") and first.startswith("1.000")
    page.wait_for_function(
        "(() => { const img = document.querySelector('#hits li img');"
        " return img.complete && img.naturalWidth === 28; })()"
    )  # the thumbnail came from /api/index/image
    assert len(page.query_selector_all("#hits li")) == 8
    assert problems == []


def test_phone_width_screenshot(site: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page, problems = open_page(browser, site["url"], viewport={"width": 390, "height": 844})
    folder = site["images"]
    choose_pair(
        page,
        write(folder, "phone_a.png", png_bytes(glyph(3))),
        write(folder, "phone_b.png", png_bytes(glyph(8))),
    )
    page.wait_for_selector("#heatmaps:not([hidden])")
    page.wait_for_function("document.getElementById('heat-b').complete")
    drops = page.eval_on_selector_all(
        ".drops .drop", "zones => zones.map(z => z.getBoundingClientRect().width)"
    )
    assert all(width > 150 for width in drops)
    phone_screenshots(page, "server-page")
    assert problems == []


def test_docs_page_renders_the_openapi_schema(site: dict[str, Any], browser: Any) -> None:
    page = browser.new_context().new_page()  # with the real CSP: the docs need no eval
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site["url"] + "/docs")
    page.wait_for_selector("#endpoints .endpoint")
    text = page.inner_text("#endpoints")
    for path in ("/api/compare", "/api/train-head", "/api/head/download", "/api/pairs/{pair_id}"):
        assert path in text
    assert page.is_visible("#schema-CompareResponse")
    assert "lookalike API" in page.title()
    page.screenshot(path=str(ARTIFACTS / "server-docs.png"))
    assert errors == []
