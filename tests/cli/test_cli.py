"""The real `lookalike` command: subprocesses for the end-to-end paths, main() for the rest."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.cli import main
from lookalike.samples import sample_paths

SAMPLES = sample_paths()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args], capture_output=True, text=True, timeout=300
    )


def test_compare_json_through_the_real_command() -> None:
    proc = run_cli(
        "compare",
        str(SAMPLES["chelsea"]),
        str(SAMPLES["chelsea_edited"]),
        "--json",
        "--threads",
        "2",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {"cosine", "euclidean", "probability"} <= set(result)
    assert result["probability"] is None
    assert 0.8 < result["cosine"] <= 1.0
    assert result["euclidean"] == pytest.approx(np.sqrt(2 - 2 * result["cosine"]), abs=1e-4)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = Image.new("RGB", (40, 30), "red")
    files = {"missing": tmp_path / "missing.jpg"}
    files["empty"] = tmp_path / "empty.png"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.jpg"
    files["text"].write_text("this is not an image")
    png = tmp_path / "full.png"
    good.save(png)
    files["truncated"] = tmp_path / "truncated.png"
    files["truncated"].write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    files["corrupt"] = tmp_path / "corrupt.png"
    files["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    files["directory"] = tmp_path / "adir.png"
    files["directory"].mkdir()
    return files


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "corrupt", "directory"])
def test_bad_images_exit_2_with_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_files(tmp_path)[kind]
    code = main(["compare", str(SAMPLES["coffee"]), str(bad), "--backbone", "small_cnn"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lookalike: error: cannot read image")
    assert bad.name in err and "Traceback" not in err


def test_bomb_guard_through_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A 12000x12000 single-colour PNG is small on disk but 144 M pixels (> 100 M default limit).
    big = tmp_path / "bomb.png"
    Image.new("L", (12000, 12000)).save(big, optimize=True)
    code = main(["compare", str(big), str(big), "--backbone", "small_cnn"])
    assert code == 2
    assert "decompression-bomb" in capsys.readouterr().err


def test_user_mistakes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(SAMPLES["coffee"])]) == 2
    assert "exactly two images" in capsys.readouterr().err
    assert main(["compare", "a", "b", "--backbone", "nope"]) == 2
    assert "unknown backbone" in capsys.readouterr().err
    assert main(["compare", "a", "b", "--backbone", "vgg16"]) == 2
    assert "offline mode is on" in capsys.readouterr().err
    assert main(["info", "/definitely/not/here"]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["compare", "a", "b", "--threads", "0", "--backbone", "small_cnn"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert main(["compare", "--bogus-flag"]) == 2  # a usage mistake: one line, no usage block
    assert capsys.readouterr().err.count("\n") == 1


def test_compare_pairs_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.csv"
    (tmp_path / "broken.jpg").write_text("nope")
    rows = [
        ("a", "b", "label"),
        (SAMPLES["chelsea"], SAMPLES["chelsea_edited"], 1),
        (SAMPLES["chelsea"], SAMPLES["coffee"], 0),
        ("broken.jpg", SAMPLES["coffee"], 0),
    ]
    with pairs.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    out = tmp_path / "scores.csv"
    assert main(["compare", "--pairs", str(pairs), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "scored 2 pairs" in captured.out and "1 skipped" in captured.out
    assert "skipped row 4" in captured.err and "broken.jpg" in captured.err
    scored = list(csv.DictReader(out.open()))
    assert [r["label"] for r in scored] == ["1", "0"]
    assert float(scored[0]["cosine"]) > float(scored[1]["cosine"])


def test_embed_npz_lists_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, path in SAMPLES.items():
        (folder / f"{name}.jpg").write_bytes(path.read_bytes())
    (folder / "bad.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "emb.npz"
    assert main(["embed", str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 file(s) skipped" in captured.err and "bad.png" in captured.err
    data = np.load(out)
    assert data["embeddings"].shape == (3, 1280)
    assert [Path(p).name for p in data["paths"]] == [
        "chelsea.jpg",
        "chelsea_edited.jpg",
        "coffee.jpg",
    ]
    assert [Path(p).name for p in data["skipped"]] == ["bad.png"]
    parquet = tmp_path / "emb.parquet"
    assert main(["embed", str(SAMPLES["coffee"]), "--out", str(parquet)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.num_rows == 1 and len(table.column("embedding")[0].as_py()) == 1280


def test_backbones_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backbones", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mobilenet_v2"]["weights_offline"] == "yes"
    assert rows["mobilenet_v2"]["embedding_dim"] == 1280
    assert rows["vgg16"]["weights_offline"] == "online only"
    from lookalike.model.network import SiameseModel

    SiameseModel.create("small_cnn", head=True).save(tmp_path / "m")
    assert main(["info", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "small_cnn" in out and "model.safetensors" in out and "torch_version" in out
