"""A second run never silently replaces the first: ``--out`` that holds files needs
``--overwrite`` (``train``, ``train-head``, ``eval``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from lookalike.cli import main
from server_helpers import glyph, small_model_dir


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """20 labelled glyph pairs (10 same, 10 different) as the CSV train-head reads."""
    folder = tmp_path / "glyphs"
    folder.mkdir()
    rows = []
    for i in range(20):
        a = folder / f"g{i}.png"
        Image.fromarray(glyph(i)).save(a)
        b = folder / f"g{i}_b.png"
        Image.fromarray(glyph(i, noise_seed=i) if i % 2 == 0 else glyph(100 + i)).save(b)
        rows.append((a, b, int(i % 2 == 0)))
    out = tmp_path / "pairs.csv"
    with out.open("w", newline="") as handle:
        csv.writer(handle).writerows([("a", "b", "label"), *rows])
    return out


def test_train_head_refuses_to_replace_a_model_without_overwrite(
    tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = small_model_dir(tmp_path)
    out = tmp_path / "my-model"
    argv = ["train-head", str(pairs), "--model", str(base), "--out", str(out), "--steps", "20"]
    assert main(argv) == 0
    first = (out / "config.json").read_bytes()
    (out / "notes.txt").write_text("the user's notes")
    capsys.readouterr()

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "--overwrite" in err and err.count("\n") == 1
    assert (out / "config.json").read_bytes() == first  # untouched
    assert (out / "notes.txt").exists()

    assert main([*argv, "--overwrite"]) == 0
    assert (out / "config.json").is_file() and not (out / "notes.txt").exists()  # no leftovers


def test_overwrite_never_deletes_a_folder_that_is_not_lookalikes(
    tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = small_model_dir(tmp_path)
    holiday = tmp_path / "holiday"
    holiday.mkdir()
    (holiday / "IMG_0001.jpg").write_bytes(b"precious")
    argv = ["train-head", str(pairs), "--model", str(base), "--out", str(holiday), "--overwrite"]
    assert main(argv) == 2
    assert "not a lookalike model or report folder" in capsys.readouterr().err
    assert (holiday / "IMG_0001.jpg").read_bytes() == b"precious"
    # eval's report folder and train's model folder follow the same rule
    argv = ["eval", str(base), "--pairs", str(pairs), "--out", str(holiday), "--no-baselines"]
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    argv = ["train", str(pairs), "--out", str(holiday), "--backbone", "small_cnn"]
    assert main([*argv, "--no-pretrained"]) == 2
    assert "already holds files" in capsys.readouterr().err
