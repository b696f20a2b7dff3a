"""``report.md`` shows every figure with its sample size and a confidence interval, and a
TAR @ FAR that the different pairs cannot resolve as *unresolved*, never as a number."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lookalike.cli import main
from lookalike.evaluation.evaluate import EvalResult, SubjectResult
from lookalike.evaluation.report import proportion_text, tar_at_far_text, write_report
from lookalike.metrics.bootstrap import wilson_interval
from lookalike.metrics.verification import verify


def _result(positives: int, negatives: int, seed: int = 0) -> EvalResult:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(positives), np.zeros(negatives)]
    cosine = np.where(
        labels > 0, rng.normal(0.8, 0.1, labels.size), rng.normal(0.2, 0.1, labels.size)
    )
    euclid = np.sqrt(np.clip(2 - 2 * cosine, 0, None))
    sub = SubjectResult(
        "model",
        verification={
            "cosine": {"best": verify(cosine, labels)},
            "euclidean": {"best": verify(euclid, labels, higher_is_same=False)},
        },
        pair_scores={"cosine": cosine, "euclidean": euclid},
        pair_labels=labels,
    )
    return EvalResult(
        model=sub,
        baselines={},
        unavailable={},
        pairs=labels.size,
        pair_source="pairs CSV",
        images=0,
        identities=0,
        skipped={},
    )


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_tar_at_far_from_nine_different_pairs_is_unresolved(tmp_path: Path) -> None:
    write_report(_result(20, 9), tmp_path)
    text = (tmp_path / "report.md").read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    resolved = metrics["model"]["verification"]["cosine"]["best"]["tar_at_far_resolved"]
    assert resolved == {"1e-02": False, "1e-03": False}
    # The headline keys (those of eval --json) give no number for an unresolved target.
    assert metrics["tar_at_far"] == {"1e-02": None, "1e-03": None}
    assert metrics["tar_at_far_resolved"] == {"1e-02": False, "1e-03": False}
    for far, need in (("1e-03", "1,000"), ("1e-02", "100")):
        row = _row(text, f"| TAR @ FAR {far}")
        assert "20 same, 9 different pairs" in row
        cell = row.split("|")[2]
        assert f"unresolved (needs ≥ {need} different pairs, has 9)" in cell, row
        assert not re.search(r"\d\.\d{4}", cell), row  # never a number


def test_every_headline_figure_has_its_sample_size_and_interval(tmp_path: Path) -> None:
    write_report(_result(150, 150), tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "300 pairs: 150 same, 150 different." in text
    auc = _row(text, "| ROC AUC (cosine; 300 pairs)")
    assert re.search(r"\d\.\d{4} \(95 % CI \d\.\d{3}–\d\.\d{3}\)", auc), auc
    tar = _row(text, "| TAR @ FAR 1e-02")  # 150 different pairs resolve 1 %
    assert re.search(r"\| \d\.\d{4} \(95 % CI", tar) and "unresolved" not in tar, tar
    assert "unresolved" in _row(text, "| TAR @ FAR 1e-03")
    accuracy = _row(text, "| best accuracy on these 300 pairs")
    assert "95 % CI" in accuracy
    for line in text.splitlines():
        if line.startswith("| cosine similarity |"):
            assert line.count("95 % CI") == 2, line  # accuracy and recall


def test_wilson_interval_is_honest_for_small_samples() -> None:
    four = wilson_interval(4, 4)
    assert four.value == 1.0 and four.high == 1.0 and four.low == pytest.approx(0.510, abs=1e-3)
    hundred = wilson_interval(95, 100)
    assert (hundred.low, hundred.high) == pytest.approx((0.888, 0.978), abs=1e-3)
    assert proportion_text(0.75, 4, unit="pairs") == "0.7500 (95 % CI 0.301–0.954) on 4 pairs"
    assert proportion_text(None, 4) == "n/a"
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_tar_text_of_a_resolved_target_is_a_proportion_of_same_pairs() -> None:
    report = _result(150, 150).model.verification["cosine"]["best"]
    text = tar_at_far_text(report, "1e-02")
    assert text.startswith(f"{report.tar_at_far['1e-02']:.4f} (95 % CI")


def test_eval_summary_shows_sample_sizes_and_unresolved_tar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.glyphs import write_identity_folder

    from lookalike.model.network import SiameseModel

    model = tmp_path / "m"
    SiameseModel.create("small_cnn", pretrained=False, input_size=28).save(model)
    data = write_identity_folder(tmp_path / "glyphs", n_ids=4, per_id=5)
    argv = ["eval", str(data), "--model", str(model), "--out", str(tmp_path / "r")]
    assert (
        main([*argv, "--no-baselines", "--episodes", "20", "--ways", "3", "--n-pairs", "40"]) == 0
    )
    out = capsys.readouterr().out
    assert re.search(r"ROC AUC \d\.\d{4} \(95 % CI [\d.]+–[\d.]+\)", out), out
    assert re.search(r"accuracy \d\.\d{4} \(95 % CI [\d.]+–[\d.]+\) on 40 pairs", out), out
    assert "TAR @ FAR 1e-03 unresolved (needs ≥ 1,000 different pairs, has 20)" in out, out
    assert re.search(r"P@1 \d\.\d{4} \(95 % CI [\d.]+–[\d.]+\) on 20 queries", out), out
    assert "(95 % CI, 20 episodes)" in out


def test_metrics_json_carries_the_intervals_with_their_sample_sizes(tmp_path: Path) -> None:
    write_report(_result(150, 150), tmp_path)
    got = json.loads((tmp_path / "metrics.json").read_text())["intervals"]["model"]
    auc, accuracy = got["roc_auc"], got["accuracy"]
    assert auc["n"] == accuracy["n"] == 300 and auc["level"] == 0.95
    for entry in (auc, accuracy):
        assert entry["low"] <= entry["value"] <= entry["high"]
        assert 0.0 <= entry["low"] <= entry["high"] <= 1.0
    resolved = got["tar_at_far"]["1e-02"]  # 150 different pairs resolve 1 %
    assert resolved["n"] == 150 and resolved["low"] <= resolved["value"] <= resolved["high"]
    assert got["tar_at_far"]["1e-03"] is None  # unresolved: no number, no interval
    # the Wilson interval of the accuracy is the one report.md prints
    row = _row((tmp_path / "report.md").read_text(), "| best accuracy on these 300 pairs")
    assert f"{accuracy['low']:.3f}–{accuracy['high']:.3f}" in row, row
