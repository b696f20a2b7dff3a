"""The static page (``lookalike export --web``) in real headless Chromium, with no server.

A plain static file server on localhost (``http.server`` in a thread) serves the site; the
browser context aborts every request that is not to that server, so the page runs on what
is inside OUT_DIR alone. (Playwright's ``set_offline`` cannot be used: in Chromium it blocks
localhost too.) Seed 000's workflow end to end: compare two images, label 10 pairs, train
the head in the browser and watch the loss fall, download the head, then load it in
``lookalike compare --model MODEL --head FILE`` and get the page's P(same) to 1e-4; and the
other way: a head trained in Python loads into the page and gives Python's P(same).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from browser_helpers import (
    ARTIFACTS,
    choose_pair,
    chromium,
    open_offline_page,
    phone_screenshots,
    playwright_or_skip,
    static_server,
    write,
)
from server_helpers import glyph, labelled_pairs, png_bytes, small_model_dir

playwright_or_skip()  # skips this module without Chromium or Playwright

pytestmark = pytest.mark.slow


def _vendor_or_skip() -> None:
    from lookalike.errors import ExportError
    from lookalike.web import find_vendor

    try:
        find_vendor()
    except ExportError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The small model's static site, served by http.server on a free loopback port."""
    from lookalike.web import build_site

    _vendor_or_skip()
    root = tmp_path_factory.mktemp("web")
    model_dir = small_model_dir(root)
    out = build_site(model_dir, root / "site")
    images = root / "images"
    images.mkdir()
    with static_server(out) as url:
        yield {"url": url, "model": model_dir, "site": out, "images": images}


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def open_page(browser: Any, url: str, **context: Any) -> tuple[Any, list[str]]:
    """The page with the network cut: only ``url``'s own server answers."""
    page, problems = open_offline_page(browser, url, **context)
    return page, problems


def cli_compare(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    from lookalike.cli import main

    capsys.readouterr()
    code = main(["compare", *argv, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


def page_probability(page: Any) -> float:
    return float(page.get_attribute("#probability", "data-value"))


def test_compare_label_train_download_round_trip(
    site: dict[str, Any], browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model = site["images"], str(site["model"])
    page, problems = open_page(browser, site["url"])
    info = page.inner_text("#model-info")
    assert "small_cnn" in info and "no pair head yet" in info
    assert page.is_hidden("#docs-link")  # no server, no API docs
    assert page.is_visible("#load-head-label")

    # Compare: the page's scores are Python's (same pixels, same network) to 1e-4.
    a = write(folder, "a.png", png_bytes(glyph(1)))
    b = write(folder, "b.png", png_bytes(glyph(1, noise_seed=5)))
    choose_pair(page, a, b)
    assert page.inner_text("#probability") == "n/a"
    code, python = cli_compare(capsys, a, b, "--model", model)
    assert code == 0
    assert float(page.inner_text("#cosine")) == pytest.approx(python["cosine"], abs=1e-4)
    assert float(page.inner_text("#euclidean")) == pytest.approx(python["euclidean"], abs=1e-4)

    # Each image is embedded once: comparing the same bytes again is a cache hit.
    embedded = page.evaluate("window.lookalike.api.stats.embedded")
    choose_pair(page, write(folder, "b_again.png", Path(b).read_bytes()), a)
    assert page.evaluate("window.lookalike.api.stats.embedded") == embedded

    # Label 10 pairs.
    for i, (pa, pb, label) in enumerate(labelled_pairs(10)):
        choose_pair(page, write(folder, f"p{i}a.png", pa), write(folder, f"p{i}b.png", pb))
        page.click("#label-same" if label == "same" else "#label-different")
        page.wait_for_function(f"document.querySelectorAll('#pairs li').length === {i + 1}")
    assert "5 same, 5 different" in page.inner_text("#pair-counts")

    # Train in the browser: progress per epoch, and the loss falls.
    page.fill("#steps", "150")
    page.click("#train")
    page.wait_for_function(
        "document.getElementById('job-text').dataset.state === 'succeeded'", timeout=120_000
    )
    text = page.locator("#job-text")
    first, last = (
        float(text.get_attribute("data-first-loss")),
        float(text.get_attribute("data-last-loss")),
    )
    assert last < 0.5 * first, (first, last)
    assert "training accuracy 100%" in text.inner_text()
    losses = page.evaluate("window.lookalike.api.head.metrics.head_losses")
    assert len(losses) == 150 and losses[-1] < losses[0]
    assert "with a trained pair head" in page.inner_text("#model-info")
    assert page.is_visible("#loss-curve")
    assert len(page.get_attribute("#loss-line", "points").split()) == 150  # one per epoch

    # Predictions on a new pair.
    new = (png_bytes(glyph(700)), png_bytes(glyph(700, noise_seed=9)))
    c1, c2 = write(folder, "n1.png", new[0]), write(folder, "n2.png", new[1])
    choose_pair(page, c1, c2)
    page.wait_for_function("document.getElementById('probability').textContent !== 'n/a'")
    p_page = page_probability(page)
    assert page.inner_text("#verdict").startswith("Same" if p_page >= 0.5 else "Different")

    # Download the head; `lookalike compare --model MODEL --head FILE` gives the same P(same).
    with page.expect_download() as info_download:
        page.click("#download")
    download = info_download.value
    assert download.suggested_filename == "lookalike-head.safetensors"
    head = tmp_path / "head.safetensors"
    download.save_as(head)
    code, python = cli_compare(capsys, c1, c2, "--model", model, "--head", str(head))
    assert code == 0
    assert python["probability"] == pytest.approx(p_page, abs=1e-4)
    assert python["metric"] == "probability" and python["threshold"] == 0.5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "static-page-trained.png"), full_page=True)

    # A reload keeps the labelled pairs and the trained head (IndexedDB, this browser only).
    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#pairs li').length === 10")
    assert "with a trained pair head" in page.inner_text("#model-info")
    choose_pair(page, c1, c2)
    assert page_probability(page) == pytest.approx(p_page, abs=1e-6)
    assert problems == []


def test_python_head_loads_into_the_page(
    site: dict[str, Any], browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from lookalike.inference import load_embedder
    from lookalike.model.head_file import HeadFile, write_head_file
    from lookalike.model.layers import PairHead

    folder, model = site["images"], str(site["model"])
    embedder = load_embedder(model)
    assert embedder.key is not None
    torch.manual_seed(3)
    trained = PairHead(embedder.embedding_dim)
    head = write_head_file(
        tmp_path / "python.safetensors",
        HeadFile.from_pair_head(trained, model_key=embedder.key, threshold=0.4, how="python"),
    )
    page, problems = open_page(browser, site["url"])
    # An RGB photo-like image of another size: resize and luma run in the page, as in Pillow.
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8))
    a = str(tmp_path / "photo.png")
    photo.save(a)
    b = write(folder, "g.png", png_bytes(glyph(12)))
    choose_pair(page, a, b)
    page.set_input_files("#load-head", str(head))
    page.wait_for_function("document.getElementById('probability').textContent !== 'n/a'")
    code, python = cli_compare(capsys, a, b, "--model", model, "--head", str(head))
    assert code == 0
    assert page_probability(page) == pytest.approx(python["probability"], abs=1e-4)
    assert float(page.inner_text("#cosine")) == pytest.approx(python["cosine"], abs=1e-4)
    assert "0.400" in page.inner_text("#verdict")

    # A head trained for another model is refused, on the page and on the command line.
    other = write_head_file(
        tmp_path / "other.safetensors",
        HeadFile.from_pair_head(trained, model_key="0" * 64),
    )
    page.set_input_files("#load-head", str(other))
    page.wait_for_selector("#train-error:not([hidden])")  # beside the head's controls
    assert "another model" in page.inner_text("#train-error")
    code, err = cli_compare(capsys, a, b, "--model", model, "--head", str(other))
    assert code == 2 and "trained on the embeddings of model 000000000000" in err
    assert problems == []


def test_a_models_own_head_is_on_the_page(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model folder with a pair head (trained in Python) exports a page that answers with it."""
    import torch

    from lookalike.model.network import SiameseModel
    from lookalike.web import build_site

    torch.manual_seed(5)
    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28, head=True)
    model.thresholds["probability"] = 0.45
    model.save(tmp_path / "with-head")
    a = write(tmp_path, "a.png", png_bytes(glyph(21)))
    b = write(tmp_path, "b.png", png_bytes(glyph(22)))
    with static_server(build_site(tmp_path / "with-head", tmp_path / "site")) as url:
        page, problems = open_page(browser, url)
        assert "with a trained pair head" in page.inner_text("#model-info")
        choose_pair(page, a, b)
        code, python = cli_compare(capsys, a, b, "--model", str(tmp_path / "with-head"))
        assert code == 0
        assert page_probability(page) == pytest.approx(python["probability"], abs=1e-4)
        assert "0.450" in page.inner_text("#verdict") and python["threshold"] == 0.45
        page.context.close()
    assert problems == []


def test_phone_width_screenshot(site: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page, problems = open_page(browser, site["url"], viewport={"width": 390, "height": 844})
    folder = site["images"]
    choose_pair(
        page,
        write(folder, "phone_a.png", png_bytes(glyph(3))),
        write(folder, "phone_b.png", png_bytes(glyph(3, noise_seed=1))),
    )
    assert "runs in this browser" in page.inner_text("#model-info")
    phone_screenshots(page, "static-page")
    assert problems == []


def test_near_duplicate_verdict_as_compare_gives_it(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model whose only threshold is its near-duplicate one (``thresholds["dedup"]``, as
    the default model's measured 0.75) gives the page compare's verdict, saying what "same"
    means for it."""
    from lookalike.inference.comparison import NEAR_DUPLICATE_MEANING
    from lookalike.model.network import SiameseModel
    from lookalike.web import build_site

    _vendor_or_skip()
    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28)
    model.thresholds["dedup"] = 0.8
    model.save(tmp_path / "dedup-model")
    a = write(tmp_path, "a.png", png_bytes(glyph(31)))
    b = write(tmp_path, "b.png", png_bytes(glyph(31, noise_seed=2)))
    site = build_site(tmp_path / "dedup-model", tmp_path / "site")
    assert json.loads((site / "site.json").read_text())["thresholds"]["near_duplicate"] == 0.8
    with static_server(site) as url:
        page, problems = open_page(browser, url)
        choose_pair(page, a, b)
        code, python = cli_compare(capsys, a, b, "--model", str(tmp_path / "dedup-model"))
        assert code == 0 and python["metric"] == "near_duplicate" and python["threshold"] == 0.8
        word = "Same picture (cosine ≥" if python["same"] else "Not the same picture (cosine <"
        assert page.inner_text("#verdict") == f"{word} 0.800)"
        assert NEAR_DUPLICATE_MEANING in page.inner_text("#verdict-meaning")
        assert page.is_hidden("#warnings")
        page.context.close()
    assert problems == []


def test_out_of_domain_warning_as_compare_gives_it(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], photos: dict[str, Any]
) -> None:
    """A model with a domain record (fitted on glyphs) warns on the page about a photo, with
    the same score and words as ``lookalike compare``, and not about a glyph."""
    import numpy as np
    from PIL import Image

    from lookalike.model.domain import DomainRecord
    from lookalike.model.network import SiameseModel
    from lookalike.web import build_site

    _vendor_or_skip()
    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28)
    train = model.embed([glyph(k, noise_seed=k) for k in range(200)])
    held = model.embed([glyph(1000 + k) for k in range(60)])
    record = DomainRecord.fit(train, held, source="block glyphs")
    assert record is not None
    model.domain = record
    model.save(tmp_path / "glyph-model")
    a = write(tmp_path, "glyph.png", png_bytes(glyph(5000)))
    photo = Image.fromarray(np.asarray(photos["astronaut"])).convert("L").resize((28, 28))
    photo.save(tmp_path / "photo.png")
    b = str(tmp_path / "photo.png")
    site = build_site(tmp_path / "glyph-model", tmp_path / "site")
    assert json.loads((site / "site.json").read_text())["domain"]["dim"] == record.dim
    code, python = cli_compare(capsys, a, b, "--model", str(tmp_path / "glyph-model"))
    assert code == 0
    suffixes = [w.split(" looks unlike ", 1)[1] for w in python["warnings"]]
    assert len(suffixes) == 1 and python["warnings"][0].startswith(b)  # the photo only
    with static_server(site) as url:
        page, problems = open_page(browser, url)
        choose_pair(page, a, b)
        shown = page.inner_text("#warnings")
        assert shown.count("looks unlike") == 1 and "photo.png looks unlike" in shown
        assert suffixes[0] in shown  # same score to 2 decimals, same threshold, same words
        page.context.close()
    assert problems == []
