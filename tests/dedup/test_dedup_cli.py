"""``lookalike dedup --keep`` and ``--undo`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from lookalike.cli import main

ENGINE = ["--engine", "torch"]


@pytest.fixture
def folder(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """Three photos; two of them also as a copy with a caption drawn on (a larger file)."""
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        image = Image.fromarray(photos[name]).convert("RGB")
        image.thumbnail((320, 320))
        image.save(root / f"{name}.jpg", quality=90)
        if name != "rocket":
            copy = image.copy()
            font = ImageFont.load_default(size=image.height // 8)
            ImageDraw.Draw(copy).text(
                (8, image.height * 3 // 4), "SALE 50% OFF", fill="white", font=font
            )
            copy.save(root / f"{name}_text.jpg", quality=90)
    return root


def test_dedup_keeps_the_clean_original_moves_with_a_manifest_and_undoes(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    dest = tmp_path / "dups"
    assert main(["dedup", str(folder), "--move-to", str(dest), "--yes", "--json", *ENGINE]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["keep_rule"] == "original"
    assert sorted(Path(g["keep"]).name for g in report["groups"]) == ["chelsea.jpg", "coffee.jpg"]
    assert all("overlay" in g["keep_reason"] for g in report["groups"])
    assert sorted(p.name for p in dest.glob("*.jpg")) == ["chelsea_text.jpg", "coffee_text.jpg"]
    manifest = Path(report["manifest"])
    assert manifest.parent == dest and manifest.is_file()

    assert main(["dedup", "--undo", str(manifest)]) == 0  # dry run by default
    assert "would restore 2 file(s)" in capsys.readouterr().out
    assert not (folder / "chelsea_text.jpg").exists()
    assert main(["dedup", "--undo", str(manifest), "--yes"]) == 0
    assert "restored 2 file(s); 0 already in place" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(["dedup", "--undo", str(manifest), "--yes"]) == 0
    assert "restored 0 file(s); 2 already in place" in capsys.readouterr().out


def test_keep_rule_option_and_mistakes(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dedup", str(folder), "--keep", "largest", "--json", *ENGINE]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(Path(g["keep"]).name for g in report["groups"]) == [
        "chelsea_text.jpg",
        "coffee_text.jpg",
    ]  # the caption makes the file larger: what the old rule kept
    assert main(["dedup", str(folder), *ENGINE, "--keep", "best"]) == 2
    assert "invalid choice: 'best'" in capsys.readouterr().err
    assert main(["dedup", str(folder), "--undo", str(tmp_path / "m.json")]) == 2
    assert "takes no folder" in capsys.readouterr().err
    (tmp_path / "m.json").write_text("{}")
    assert main(["dedup", "--undo", str(tmp_path / "m.json")]) == 2
    assert "not a lookalike move manifest" in capsys.readouterr().err


def test_review_in_the_html_report_then_apply_the_choices(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review in real Chromium: keep the captioned chelsea copy, call coffee "not duplicates",
    save, and `dedup --choices` moves exactly what the review said."""
    from browser_helpers import ARTIFACTS, chromium, playwright_or_skip

    playwright_or_skip()
    html = tmp_path / "review.html"
    assert main(["dedup", str(folder), "--html", str(html), *ENGINE]) == 0
    capsys.readouterr()
    with chromium() as browser:
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        context.route(
            "**/*",
            lambda route: (
                route.abort()
                if not route.request.url.startswith(("file:", "data:", "blob:"))
                else route.continue_()
            ),
        )
        page = context.new_page()
        page.goto(html.as_uri())
        sections = page.locator("section[data-paths]")
        assert sections.count() == 2
        chelsea = page.locator("section", has_text="chelsea_text.jpg")
        chelsea.locator("input[value='chelsea_text.jpg']").check()
        assert chelsea.locator("figure.keep").inner_text().count("chelsea_text.jpg") == 1
        page.locator("section", has_text="coffee_text.jpg").locator("input.notdup").check()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dedup-review-1280x900.png"))
        with page.expect_download() as download:
            page.click("#save")
        saved = tmp_path / "dedup-choices.json"
        download.value.save_as(saved)
        context.close()
    record = json.loads(saved.read_text())
    assert {g["keep"] for g in record["groups"]} == {"chelsea_text.jpg", None}

    dest = tmp_path / "dups"
    argv = ["dedup", str(folder), "--choices", str(saved), "--move-to", str(dest), "--yes"]
    assert main([*argv, "--json", *ENGINE]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [Path(g["keep"]).name for g in report["groups"]] == ["chelsea_text.jpg"]
    assert report["groups"][0]["keep_reason"] == "kept because the review chose it"
    assert sorted(p.name for p in dest.glob("*.jpg")) == ["chelsea.jpg"]
    assert (folder / "coffee.jpg").exists() and (folder / "coffee_text.jpg").exists()
    (tmp_path / "bad.json").write_text(json.dumps({"format": "x"}))
    assert main(["dedup", str(folder), "--choices", str(tmp_path / "bad.json"), *ENGINE]) == 2
    assert "cannot read review choices" in capsys.readouterr().err


def test_calibrate_dedup_on_the_users_own_photos(
    tmp_path: Path, photos: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    from server_helpers import small_model_dir

    model = small_model_dir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, array in photos.items():
        image = Image.fromarray(array).convert("RGB")
        image.thumbnail((200, 200))
        image.save(mine / f"{name}.jpg")
    (mine / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    argv = ["calibrate-dedup", "--model", str(model), "--images", str(mine), "--edits", "2"]
    assert main([*argv, *ENGINE]) == 0
    captured = capsys.readouterr()
    assert f"of {len(photos)} photos" in captured.out  # the folder's, not the 21 shipped
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    config = json.loads((model / "config.json").read_text())
    assert -1 <= config["thresholds"]["dedup"] <= 1
    (tmp_path / "one").mkdir()
    Image.fromarray(photos["chelsea"]).save(tmp_path / "one" / "a.png")
    assert main(["calibrate-dedup", "--model", str(model), "--images", str(tmp_path / "one")]) == 2
    assert "calibrating needs two" in capsys.readouterr().err
