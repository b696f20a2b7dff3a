"""``lookalike index``, ``search`` and ``dedup`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lookalike.cli import main
from lookalike.dedup.calibrate import offline_photos
from lookalike.dedup.edits import near_duplicates

ENGINE = ["--engine", "torch"]  # the ONNX path has its own tests; this keeps these fast


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 distinct photos, one or two near-duplicates each in a sub-folder, and a corrupt file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "edits").mkdir()
    for i, photo in enumerate(offline_photos()[:8]):
        image = Image.fromarray(photo)
        image.thumbnail((640, 640))
        image.save(root / f"p{i}.jpg", quality=90)
        for j, dup in enumerate(near_duplicates(image, 1 + i % 2, seed=100 + i)):
            dup.image.convert("RGB").save(root / "edits" / f"p{i}_{j}.jpg", quality=85)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


def _groups_by_photo(groups: list[dict[str, object]]) -> list[set[str]]:
    """Each group as the set of source photo ids (p3 for p3.jpg and edits/p3_0.jpg)."""
    return [{Path(str(p)).stem.split("_")[0] for p in g["paths"]} for g in groups]  # type: ignore[attr-defined]


def test_index_search_dedup_end_to_end(
    collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "idx"
    assert main(["index", str(collection), "--index", str(index), *ENGINE]) == 0
    out, err = capsys.readouterr()
    n_images = len(list(collection.rglob("*.jpg"))) - 1
    assert f"{n_images} images" in out and "1 skipped" in out
    assert "broken.jpg" in err and "1 file(s) skipped" in err

    # Again: nothing to embed.
    assert main(["index", str(collection), "--index", str(index), *ENGINE]) == 0
    assert "0 embedded" in capsys.readouterr().out

    # -k beyond the index size returns every item, each once, no placeholders.
    query = str(collection / "p0.jpg")
    grid = tmp_path / "grid.png"
    argv = ["search", query, "--index", str(index), "-k", "999", "--json", "--grid", str(grid)]
    assert main([*argv, *ENGINE]) == 0
    result = json.loads(capsys.readouterr().out)
    hits = result["results"][0]["hits"]
    assert len(hits) == result["index_size"] == n_images
    assert len({h["path"] for h in hits}) == n_images
    assert hits[0]["path"] == "p0.jpg" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[1]["path"].startswith("edits/p0_")
    assert grid.stat().st_size > 10_000

    # Dedup from the index: every photo with its edits, nothing else, at the default threshold.
    assert main(["dedup", "--index", str(index), "--json", *ENGINE]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold_source"].startswith("default")
    groups = _groups_by_photo(report["groups"])
    assert all(len(g) == 1 for g in groups), groups  # no two distinct photos grouped
    assert sorted(next(iter(g)) for g in groups) == [f"p{i}" for i in range(8)]
    assert all(g["keep"].startswith("p") and "/" not in g["keep"] for g in report["groups"])


def test_dedup_folder_move_is_dry_run_unless_asked(
    collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    work = tmp_path / "photos"
    shutil.copytree(collection, work)
    dest = tmp_path / "dups"
    html = tmp_path / "report.html"
    base = ["dedup", str(work), "--move-to", str(dest), *ENGINE]
    assert main([*base, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and not dest.exists()
    assert "data:image/jpeg;base64" in html.read_text()
    before = {p.relative_to(work) for p in work.rglob("*.jpg")}
    assert main([*base, "--yes", "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)["moves"]
    after = {p.relative_to(work) for p in work.rglob("*.jpg")}
    landed = {p.relative_to(dest) for p in dest.rglob("*.jpg")}
    assert len(moved) == len(landed) == len(before) - len(after) == 12  # 4×1 + 4×2 edits
    assert after | landed == before
    assert all(str(p).startswith("edits/") for p in landed)


def test_index_cli_mistakes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "not a folder of images": ["index", str(tmp_path / "nope"), "--index", str(tmp_path / "i")],
        "one of them": ["dedup", *ENGINE],
        "-k must be at least 1": ["search", "x.jpg", "--index", str(tmp_path), "-k", "0"],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("lookalike: error:") and expected in err, (expected, err)


def test_calibrate_dedup_stores_the_threshold_that_dedup_then_uses(
    collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server_helpers import small_model_dir

    model = small_model_dir(tmp_path)
    # No threshold with the model yet: the default, with the warning on stderr.
    assert main(["dedup", str(collection), "--model", str(model), "--json", *ENGINE]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["threshold_source"].startswith("default")
    assert "warning:" in captured.err and "no calibrated dedup threshold" in captured.err

    assert main(["calibrate-dedup", "--model", str(model), "--edits", "1", *ENGINE]) == 0
    assert "dedup threshold" in capsys.readouterr().out
    config = json.loads((model / "config.json").read_text())
    threshold = config["thresholds"]["dedup"]
    assert 0 < threshold <= 1 and config["metrics"]["threshold_criterion"] == "accuracy"

    assert main(["dedup", str(collection), "--model", str(model), "--json", *ENGINE]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["threshold"] == pytest.approx(threshold)
    assert report["threshold_source"] == "stored with the model" and "warning" not in captured.err


def _one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lookalike: error:"), err
    assert "Traceback" not in err and all(w in lines[0] for w in words), err


def test_odd_names_verify_damage_and_rebuild(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: a non-UTF-8 name is indexed and printed safely; ``--verify`` repairs a poisoned
    cache; a damaged database is one line naming ``--rebuild``, which works."""
    import os
    import sqlite3

    import numpy as np

    from server_helpers import glyph, small_model_dir

    model = ["--model", str(small_model_dir(tmp_path)), *ENGINE]
    root = tmp_path / "glyphs"
    root.mkdir()
    for i in range(4):
        Image.fromarray(glyph(i)).save(root / f"g{i}.png")
    odd = os.fsdecode(bytes(root) + b"/caf\xe9.png")
    try:
        Image.fromarray(glyph(9)).save(odd)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not valid UTF-8")
    index = tmp_path / "idx"
    argv = ["index", str(root), "--index", str(index), *model]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "5 images" in out and "0 skipped" in out

    # the odd file as a query: text and JSON are printable, the file is found at cosine 1
    assert main(["search", odd, "--index", str(index), "-k", "2", *model]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("caf\\xe9.png") and "caf\\xe9.png" in out.splitlines()[1]
    assert main(["search", odd, "--index", str(index), "-k", "1", "--json", *model]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]["hits"][0]
    assert hit["path"] == "caf\\xe9.png" and hit["score"] == pytest.approx(1.0, abs=1e-4)

    # poison the cached vector of one content (what the old race left): --verify repairs it
    db = index / "index.sqlite"
    con = sqlite3.connect(db)
    (blob,) = con.execute(
        "SELECT e.vector FROM embeddings e JOIN files f ON f.content_hash = e.hash "
        "WHERE f.path = 'g0.png'"
    ).fetchone()
    flipped = (-np.frombuffer(blob, dtype="<f4")).astype("<f4").tobytes()
    con.execute("UPDATE embeddings SET vector = ? WHERE vector = ?", (flipped, blob))
    con.commit()
    con.close()
    assert main([*argv, "--verify"]) == 0
    captured = capsys.readouterr()
    assert "verified 5, repaired 1" in captured.out and "repaired g0.png" in captured.err
    assert main(["search", str(root / "g0.png"), "--index", str(index), "--json", *model]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]["hits"][0]
    assert hit["path"] == "g0.png" and hit["score"] == pytest.approx(1.0, abs=1e-4)

    # a damaged database: one line naming the file and the fix, from every command
    data = db.read_bytes()
    db.write_bytes(b"\0" * 100 + data[100:])  # the header is gone
    fix = f"--index {index} --rebuild"
    for cmd in (
        argv,
        ["search", odd, "--index", str(index), *model],
        ["dedup", "--index", str(index), "--threshold", "0.9", *model],
        ["search", odd, "--index", str(index)],  # the recorded model cannot be read either
    ):
        assert main(cmd) == 2, cmd
        _one_line_error(capsys.readouterr().err, str(db), "damaged", fix)
    assert main([*argv, "--rebuild"]) == 0
    out = capsys.readouterr().out
    assert "5 images" in out and "5 added" in out
    assert main(["search", str(root / "g1.png"), "--index", str(index), "--json", *model]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["hits"][0]["path"] == "g1.png"


def test_rebuild_without_a_readable_record_uses_the_command_lines_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server_helpers import glyph, small_model_dir

    model = ["--model", str(small_model_dir(tmp_path)), *ENGINE]
    root = tmp_path / "glyphs"
    root.mkdir()
    for i in range(3):
        Image.fromarray(glyph(i)).save(root / f"g{i}.png")
    index = tmp_path / "idx"
    index.mkdir()
    (index / "index.sqlite").write_bytes(b"this is not a database" * 300)
    assert main(["index", str(root), "--index", str(index), "--rebuild", *model]) == 0
    assert "3 images" in capsys.readouterr().out
    assert main(["index", str(root), "--index", str(index), "--verify", "--rebuild"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_embed_of_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e.npz"
    assert main(["embed", str(tmp_path / "missing-folder"), "--out", str(out), *ENGINE]) == 2
    _one_line_error(capsys.readouterr().err, "missing-folder", "no such file or folder")
    assert not out.exists()
