"""The page's errors, stale results and fast labelling, in real headless Chromium, in both
of its modes: ``server`` (the REST API of ``lookalike serve`` on a real uvicorn) and
``static`` (the site of ``lookalike export --web`` on a plain file server: ONNX Runtime Web in
the page). Screenshots at 1280×900 and 390×844 go to ``test-artifacts/page-*``.

- An action's error appears next to the control that caused it (Train head with too few
  pairs: beside the Train button), not only in a banner at the top.
- A bad upload after a good comparison takes the old scores and heatmaps away.
- Six images dropped at once into the tray; three pairs labelled with the keys S and D; the
  same pair in the other order refused with a message; the pairs exported as the CSV
  ``lookalike train-head`` reads, deleted, and imported back by file name; the list pages.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_helpers import (
    COMPARED,
    chromium,
    desktop_and_phone_screenshots,
    drop_files,
    open_offline_page,
    playwright_or_skip,
    static_server,
    uvicorn_site,
    write,
)
from server_helpers import glyph, png_bytes, small_model_dir

playwright_or_skip()  # skips this module without Chromium or Playwright

pytestmark = pytest.mark.slow

MODES = ["server", "static"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder: Path = small_model_dir(tmp_path_factory.mktemp("model"))
    return folder


@pytest.fixture(params=MODES)
def site(request: pytest.FixtureRequest, model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The page's URL: a fresh server (empty pair store) or the static site."""
    if request.param == "server":
        pytest.importorskip("uvicorn", reason="the server needs uvicorn (lookalike[server])")
        from lookalike.server import create_app

        with uvicorn_site(create_app(model_dir, data_dir=tmp_path / "data")) as url:
            yield url
        return
    from lookalike.errors import ExportError
    from lookalike.web import build_site, find_vendor

    try:
        find_vendor()
    except ExportError as exc:
        pytest.skip(str(exc))
    built = model_dir.parent / "site"
    folder = built if (built / "site.json").is_file() else build_site(model_dir, built)
    with static_server(folder) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """The page at 1280×900 with only its own server reachable; waits until it is ready."""
    size = {"width": 1280, "height": 900}
    page, problems = open_offline_page(browser, url, bypass_csp=True, viewport=size)
    return page, problems


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not shown"
    return dict(found)


def test_train_error_appears_next_to_the_train_button(site: str, browser: Any) -> None:
    page, problems = open_page(browser, site)
    page.click("#train")
    page.wait_for_selector("#train-error:not([hidden])")
    message = page.inner_text("#train-error")
    assert "at least 4 labelled pairs" in message and "there are 0" in message
    assert page.is_hidden("#error")  # no banner at the top
    assert page.is_hidden("#job")  # refused before it began: no empty progress bar
    button, error = box(page, "#train"), box(page, "#train-error")
    assert 0 <= error["y"] - (button["y"] + button["height"]) < 60  # right under the button
    assert page.inner_text("#train") == "Train head" and page.is_enabled("#train")
    page.locator("#train-error").scroll_into_view_if_needed()
    mode = page.evaluate("window.lookalike.api.mode")
    desktop_and_phone_screenshots(page, f"page-train-error-{mode}")
    page.locator("#train-error").scroll_into_view_if_needed()
    assert page.locator("#train-error").is_visible()
    assert problems == []


def test_a_bad_upload_clears_the_old_scores_and_heatmaps(
    site: str, browser: Any, tmp_path: Path
) -> None:
    page, problems = open_page(browser, site)
    mode = page.evaluate("window.lookalike.api.mode")
    server = mode == "server"
    a = write(tmp_path, "a.png", png_bytes(glyph(1)))
    page.set_input_files("#file-a", a)
    page.set_input_files("#file-b", write(tmp_path, "b.png", png_bytes(glyph(1, noise_seed=5))))
    page.wait_for_function(COMPARED)
    old = page.inner_text("#cosine")
    assert float(old) > 0.5
    if server:  # heatmaps need the server (explain)
        page.wait_for_selector("#heatmaps:not([hidden])")
    # A new image: the old pair's scores and heatmaps go at once, before the new answer.
    # (What the page shows in the same task as the change event, before any answer.)
    shown_at_once = page.evaluate(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "c.png", { type: "image/png" }));
            const input = document.getElementById("file-b");
            input.files = transfer.files;
            input.dispatchEvent(new Event("change"));
            return [document.getElementById("cosine").textContent,
                    document.getElementById("heat-a").getAttribute("src"),
                    document.getElementById("heatmaps").hidden];
        }""",
        base64.b64encode(png_bytes(glyph(2))).decode(),
    )
    assert shown_at_once == ["…", None, True]
    page.wait_for_function(COMPARED)
    if server:
        page.wait_for_selector("#heatmaps:not([hidden])")
    assert page.inner_text("#cosine") != old

    # A file that is not an image: the error is beside the images, the old results are gone.
    page.set_input_files(
        "#file-b", [{"name": "notes.png", "mimeType": "image/png", "buffer": b"not pixels"}]
    )
    page.wait_for_selector("#compare-error:not([hidden])")
    assert "notes.png" in page.inner_text("#compare-error")
    assert page.is_hidden("#error")
    assert page.is_hidden("#result") and page.is_hidden("#heatmaps")
    assert page.inner_text("#cosine") == "–" and page.get_attribute("#heat-a", "src") is None
    page.wait_for_function("document.getElementById('thumb-b').hidden")  # no broken image
    drops, error = box(page, ".drops"), box(page, "#compare-error")
    assert 0 <= error["y"] - (drops["y"] + drops["height"]) < 40
    desktop_and_phone_screenshots(page, f"page-bad-upload-{mode}")
    assert problems == []


def test_keyboard_labelling_duplicates_csv_round_trip_and_paging(
    site: str, browser: Any, tmp_path: Path
) -> None:
    from lookalike.data.pairs import read_pairs_csv

    page, problems = open_page(browser, site)
    mode = page.evaluate("window.lookalike.api.mode")
    names = [f"img{k}.png" for k in range(6)]
    data = {name: png_bytes(glyph(40 + k // 2, noise_seed=k)) for k, name in enumerate(names)}
    drop_files(page, "drop-tray", list(data.items()))
    page.wait_for_function("document.querySelectorAll('#tray .tray-item').length === 6")
    assert page.locator("#tray .tray-name").all_inner_texts() == names
    assert "S" in page.inner_text("#tray-keys") and "D" in page.inner_text("#tray-keys")

    # The first pair is chosen; S / D label it and bring the next one.
    expected = [("img0.png", "img1.png", "same"), ("img0.png", "img2.png", "different")]
    expected.append(("img0.png", "img3.png", "different"))
    for done, (a, b, label) in enumerate(expected):
        page.wait_for_function(COMPARED)
        assert (page.inner_text("#name-a"), page.inner_text("#name-b")) == (a, b)
        page.keyboard.press("s" if label == "same" else "d")
        page.wait_for_function(
            f"document.querySelectorAll('#pairs li').length === {done + 1}"
            " || !document.getElementById('label-error').hidden"
        )
        assert page.is_hidden("#label-error"), page.inner_text("#label-error")
        assert len(page.query_selector_all("#pairs li")) == done + 1
    assert "(1 same, 2 different)" in page.inner_text("#pair-counts")
    shown = page.locator("#pairs .pair-names").all_inner_texts()
    assert shown == [f"{a} · {b}" for a, b, _ in expected]

    # The same two images in the other order: refused, with a message beside the keys.
    page.click("#tray .tray-item >> nth=1")  # A = img1
    page.click("#tray .tray-item >> nth=0")  # B = img0
    page.wait_for_function(COMPARED)
    page.keyboard.press("d")
    page.wait_for_selector("#label-error:not([hidden])")
    assert "already labelled" in page.inner_text("#label-error")
    assert len(page.query_selector_all("#pairs li")) == 3
    page.keyboard.press("n")  # the next unlabelled pair
    page.wait_for_function(COMPARED)
    assert (page.inner_text("#name-a"), page.inner_text("#name-b")) == ("img0.png", "img4.png")
    desktop_and_phone_screenshots(page, f"page-labelling-{mode}")
    keys = box(page, "#label-same")  # at phone width the label buttons are in view
    assert keys["y"] >= 0 and keys["y"] + keys["height"] <= 844
    assert keys["x"] + keys["width"] <= 390
    page.set_viewport_size({"width": 1280, "height": 900})

    # Export: the CSV train-head reads (a,b,label), names resolved beside the CSV.
    with page.expect_download() as info:
        page.click("#export-csv")
    exported = tmp_path / "pairs.csv"
    info.value.save_as(exported)
    assert exported.read_text().splitlines()[0] == "a,b,label"
    for name, payload in data.items():
        (tmp_path / name).write_bytes(payload)
    rows = [(Path(a).name, Path(b).name, lab) for _, a, b, lab in read_pairs_csv(exported)]
    assert rows == expected

    # Delete every pair, import the CSV back: the same pairs, matched by file name.
    for left in (2, 1, 0):
        page.click("#pairs li:first-child .delete")
        page.wait_for_function(f"document.querySelectorAll('#pairs li').length === {left}")
    page.set_input_files("#import-csv", str(exported))
    page.wait_for_function("document.getElementById('pairs-status').textContent.includes('3 of 3')")
    assert page.locator("#pairs .pair-names").all_inner_texts() == shown
    assert "(1 same, 2 different)" in page.inner_text("#pair-counts")

    # A CSV of all 15 pairs (1/0 labels, one unknown name): 12 added, 3 already there, the
    # unknown name reported; 15 pairs make two pages of 10.
    lines = ["a,b,label"]
    lines += [
        f"{names[i]},{names[j]},{int(i // 2 == j // 2)}" for i in range(6) for j in range(i + 1, 6)
    ]
    lines.append("img0.png,missing.png,1")
    write(tmp_path, "all.csv", ("\n".join(lines) + "\n").encode())
    page.set_input_files("#import-csv", str(tmp_path / "all.csv"))
    page.wait_for_function(
        "document.getElementById('pairs-status').textContent.includes('12 of 16')"
    )
    assert "3 already labelled" in page.inner_text("#pairs-status")
    assert "missing.png" in page.inner_text("#pairs-error")
    assert "(3 same, 12 different)" in page.inner_text("#pair-counts")
    assert page.is_visible("#pager") and "page 2 of 2" in page.inner_text("#pairs-page")
    assert len(page.query_selector_all("#pairs li")) == 5
    page.click("#pairs-prev")
    assert len(page.query_selector_all("#pairs li")) == 10
    assert "page 1 of 2" in page.inner_text("#pairs-page")
    assert problems == []


def test_near_duplicate_verdict_warnings_and_held_out_sizes(
    model_dir: Path, browser: Any, tmp_path: Path
) -> None:
    """What the page shows for the answers it can get: a near-duplicate verdict (the default
    model's) with what "same" means, out-of-domain warnings beside it, and a training job
    whose head did worse than cosine on 4 held-out pairs. The server here runs the small
    model, which answers none of these, so the answers are the API's documented shapes
    (CompareResponse, JobInfo) given to the page in place of the server's own."""
    import json

    from lookalike.inference.comparison import NEAR_DUPLICATE, NEAR_DUPLICATE_MEANING
    from lookalike.server import create_app
    from lookalike.server.schemas import CompareResponse, JobInfo

    verdict = CompareResponse(
        cosine=0.81,
        euclidean=0.62,
        probability=None,
        same=True,
        threshold=0.75,
        metric=NEAR_DUPLICATE,
    ).model_dump()
    warnings = ["image A looks unlike the images this model was trained on (distance 3.1)"]
    job = JobInfo(
        id="j", state="succeeded", phase="done", step=5, total=5, loss=0.3, started=0.0,
        finished=1.0, error=None, n_train=12, n_holdout=4, train_accuracy=1.0,
        holdout_accuracy=0.5, cosine_holdout_accuracy=0.75, used="cosine",
    ).model_dump()  # fmt: skip
    with uvicorn_site(create_app(model_dir, data_dir=tmp_path / "data")) as url:
        page, problems = open_page(browser, url)
        answers = [verdict, dict(verdict, same=False, cosine=0.5, warnings=warnings)]

        def compare(route: Any) -> None:
            route.fulfill(json=answers[0] if len(answers) == 2 else answers[-1])
            if len(answers) == 2:
                answers.pop(0)

        page.route("**/api/compare", compare)
        page.route(
            "**/api/train-head",
            lambda r: r.fulfill(status=202, json={"id": "j", "url": "/api/jobs/j"}),
        )
        page.route(
            "**/api/jobs/j",
            lambda r: r.fulfill(body=json.dumps(job), content_type="application/json"),
        )
        a = write(tmp_path, "a.png", png_bytes(glyph(1)))
        page.set_input_files("#file-a", a)
        page.set_input_files("#file-b", write(tmp_path, "b.png", png_bytes(glyph(2))))
        page.wait_for_function(COMPARED)
        assert page.inner_text("#verdict") == "Same picture (cosine ≥ 0.750)"
        assert NEAR_DUPLICATE_MEANING in page.inner_text("#verdict-meaning")
        assert page.is_hidden("#warnings")  # no warnings: nothing shown
        page.set_input_files("#file-b", write(tmp_path, "c.png", png_bytes(glyph(3))))
        page.wait_for_function(COMPARED)
        assert page.inner_text("#verdict") == "Not the same picture (cosine < 0.750)"
        assert page.locator("#warnings li").all_inner_texts() == warnings
        result, listed = box(page, "#verdict"), box(page, "#warnings")
        assert 0 <= listed["y"] - (result["y"] + result["height"]) < 80  # beside the verdict

        page.click("#train")
        page.wait_for_function("document.getElementById('job-text').dataset.state === 'succeeded'")
        summary = page.inner_text("#job-text")
        assert "held-out accuracy 50% on 4 held-out pairs" in summary
        assert "plain cosine: 75% on 4 held-out pairs" in summary
        choice = page.inner_text("#job-choice")
        assert "did worse than plain cosine" in choice and "keeps using cosine" in choice
        desktop_and_phone_screenshots(page, "page-verdict-warnings")
        assert problems == []
