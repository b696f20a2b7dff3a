"""What the commands print about a model's quality: every figure with its sample size and a
95 % interval (``train``, ``train-head``, ``compare --pairs``), and a ``train`` interrupted by
Ctrl-C that says exactly how to resume."""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.glyphs import write_identity_folder

from lookalike.cli import main

ROOT = Path(__file__).resolve().parents[2]
CI = r"\d\.\d{4} \(95 % CI \d\.\d{3}–\d\.\d{3}\)"


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_folder(tmp_path_factory.mktemp("glyphs"), n_ids=6, per_id=6)


def _pairs_csv(folder: Path, path: Path, count: int) -> Path:
    """Half the rows a neighbour (mostly the same identity), half a far image."""
    files = sorted(folder.rglob("*.png"))
    lines = ["a,b,label"]
    for k in range(count):
        a, b = files[k], files[(k * 7 + 1) % len(files)] if k % 2 else files[k + 1]
        lines.append(f"{a},{b},{int(a.parent == b.parent)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_head_reports_held_out_accuracy_with_its_interval(
    glyphs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _pairs_csv(glyphs, tmp_path / "pairs.csv", 16)
    argv = ["train-head", str(pairs), "--out", str(tmp_path / "m"), "--holdout", "0.25"]
    model = ["--backbone", "small_cnn", "--image-size", "28", "--steps", "20"]
    assert main([*argv, *model]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"held-out accuracy: {CI} on 4 pairs", out), out
    assert re.search(rf"plain cosine \(threshold from the same training pairs\): {CI} on 4", out)
    assert "only 4 held-out pairs" in out


def _train(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LOOKALIKE_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lookalike", "train", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_during_train_prints_the_resume_command_that_works(
    glyphs: Path, tmp_path: Path
) -> None:
    argv = [
        str(glyphs), "--out", "model", "--backbone", "small_cnn", "--no-pretrained",
        "--image-size", "28", "--epochs", "400", "--steps-per-epoch", "2", "--batch-size", "12",
        "--m-per-class", "2", "--no-guard", "--patience", "1000", "--split", "image",
    ]  # fmt: skip
    run = _train(*argv, cwd=tmp_path)
    assert run.stdout is not None
    seen = []
    for line in run.stdout:  # wait for an epoch past 1 (its checkpoint is written)
        seen.append(line)
        if line.startswith("epoch   2"):
            run.send_signal(signal.SIGINT)
            break
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, (seen, out, err)
    last = err.strip().splitlines()[-1]
    checkpoint = Path("model") / "training" / "checkpoint.pt"
    assert f"saved in {checkpoint}" in last and "Traceback" not in err, err
    command = last.split("resume with: ", 1)[1]
    tokens = shlex.split(command)
    assert tokens[:2] == ["lookalike", "train"] and tokens[-1] == "--resume"
    assert (tmp_path / checkpoint).is_file()
    # The printed command resumes: a fresh run would start by validating epoch 0.
    resumed = _train(*tokens[2:], cwd=tmp_path)
    assert resumed.stdout is not None
    first = resumed.stdout.readline()
    resumed.send_signal(signal.SIGINT)
    _, err = resumed.communicate(timeout=120)
    number = re.match(r"epoch\s+(\d+)", first)
    assert number and int(number.group(1)) >= 2, (first, err)  # it continued, not restarted


def test_train_summary_gives_baselines_their_sample_size(
    glyphs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train", str(glyphs), "--out", str(tmp_path / "m"), "--backbone", "small_cnn",
        "--no-pretrained", "--image-size", "28", "--epochs", "1", "--steps-per-epoch", "2",
        "--batch-size", "12", "--m-per-class", "2", "--no-guard", "--split", "image",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    pairs = re.search(r"validation pair accuracy: [^;]*?; (\d+) identities, (\d+) pairs\)", out)
    assert pairs, out
    ids, n = int(pairs.group(1)), int(pairs.group(2))
    same = f"baselines on the same {n:,} validation pairs of {ids} identities"
    assert re.search(same + r" \(intervals as wide as the model's\): raw pixels \d\.\d{4}", out)


def test_compare_pairs_with_labels_prints_accuracy_with_its_interval(
    glyphs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lookalike.model.folder import update_config
    from lookalike.model.network import SiameseModel

    model = tmp_path / "m"
    SiameseModel.create("small_cnn", pretrained=False, input_size=28).save(model)
    update_config(model, thresholds={"cosine": 0.99})
    pairs = _pairs_csv(glyphs, tmp_path / "pairs.csv", 12)
    argv = ["compare", "--pairs", str(pairs), "--out", str(tmp_path / "s.csv")]
    assert main([*argv, "--model", str(model), "--engine", "torch"]) == 0
    out = capsys.readouterr().out
    with (tmp_path / "s.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    right = sum(int(r["same"]) == int(r["label"]) for r in rows)
    same = sum(int(r["label"]) for r in rows)
    assert f"labelled pairs: 12 ({same} same, {12 - same} different)" in out, out
    expected = rf"accuracy at the model's threshold \(cosine 0\.9900\): {right / 12:.4f} \(95 % CI"
    assert re.search(expected + r" [\d.]+–[\d.]+\) on 12 labelled pairs", out), out
    assert re.search(rf"ROC AUC \(cosine\): {CI} on 12 labelled pairs", out), out


def test_calibrate_dedup_gives_precision_and_recall_their_sample_sizes(
    glyphs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lookalike.model.network import SiameseModel

    model = tmp_path / "m"
    SiameseModel.create("small_cnn", pretrained=False, input_size=28).save(model)
    argv = ["calibrate-dedup", "--model", str(model), "--edits", "1", "--engine", "torch"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(rf"precision {CI} on \d+ pairs called duplicates", out), out
    assert re.search(rf"recall {CI} on \d+ edited copies", out), out
    assert re.search(r"measured on \d+ edited copies of \d+ photos and \d+ pairs", out), out
