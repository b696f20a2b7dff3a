"""``lookalike eval`` and :func:`lookalike.evaluation.evaluate.evaluate`: metrics beside baselines,
reports, calibration into the model folder, and clear errors for bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.glyphs import glyph_images, write_identity_folder

from lookalike.cli import main
from lookalike.data.augment import Augment
from lookalike.data.labelled import LabelledImages
from lookalike.evaluation.evaluate import EvalConfig, calibrated_thresholds, evaluate
from lookalike.model.network import SiameseModel
from lookalike.training.config import TrainConfig
from lookalike.training.recipes import ModelSpec, train_model

JSON_KEYS = {
    "roc_auc",
    "eer",
    "accuracy",
    "threshold",
    "precision_at_1",
    "map_at_r",
    "n_way_accuracy",
}


@pytest.fixture(scope="module")
def trained_glyph_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained on 10 glyph identities (a model folder)."""
    images, labels = glyph_images(n_ids=10, per_id=30, seed=0)
    data = LabelledImages.from_arrays(images, labels)
    torch.manual_seed(0)
    cfg = TrainConfig(
        loss="contrastive",
        miner="all",
        epochs=8,
        steps_per_epoch=30,
        batch_size=40,
        m_per_class=4,
        lr=3e-3,
        augment=Augment.off(),
        val_pairs=600,
        patience=None,
    )
    out = tmp_path_factory.mktemp("glyph") / "model"
    spec = ModelSpec(backbone="small_cnn", pretrained=False, image_size=28)
    train_model(data, out, model_spec=spec, config=cfg, split="image")
    return out


@pytest.fixture(scope="module")
def unseen_glyphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An identity folder of glyph identities the model never saw (another seed)."""
    return write_identity_folder(tmp_path_factory.mktemp("unseen"), n_ids=8, per_id=8, seed=7)


def test_eval_cli_json_report_and_baselines(
    trained_glyph_model: Path,
    unseen_glyphs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = (trained_glyph_model / "config.json").read_bytes()
    code = main(
        [
            "eval", str(trained_glyph_model), str(unseen_glyphs), "--out", str(tmp_path / "r"),
            "--json", "--episodes", "400", "--n-pairs", "600",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= JSON_KEYS
    # Trained on other glyph identities, the model generalises; raw pixels do not.
    raw = report["baselines"]["raw_pixels"]
    assert report["roc_auc"] > raw["roc_auc"] + 0.1
    assert report["precision_at_1"] > raw["precision_at_1"]
    assert report["n_way_accuracy"] > raw["n_way_accuracy"]
    # The stored threshold (calibrated by training) is what the headline reports.
    assert report["threshold_source"] == "stored"
    stored = json.loads(before)["thresholds"]["cosine"]
    assert report["threshold"] == pytest.approx(stored)
    # small_cnn has no pretrained weights: the frozen baseline is absent, with the reason.
    assert "frozen_backbone" in report["baselines_unavailable"]
    assert report["model"]["episodes"]["episodes"] == 400
    for name in ("metrics.json", "report.md", "roc.png", "scores.png", "embedding_map.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    text = (tmp_path / "r" / "report.md").read_text()
    assert "raw pixels" in text and "MAP@R" in text
    # Without --calibrate, eval never writes the model folder.
    assert (trained_glyph_model / "config.json").read_bytes() == before


def test_eval_calibrate_writes_thresholds_compare_uses_them(
    trained_glyph_model: Path,
    unseen_glyphs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = tmp_path / "m"
    SiameseModel.load(trained_glyph_model).save(model_dir)
    code = main(
        [
            "eval", str(model_dir), str(unseen_glyphs), "--out", str(tmp_path / "r"),
            "--calibrate", "--criterion", "f1", "--episodes", "0", "--no-baselines",
        ]
    )  # fmt: skip
    assert code == 0
    assert "calibrated thresholds (f1)" in capsys.readouterr().out
    config = json.loads((model_dir / "config.json").read_text())
    assert config["metrics"]["threshold_criterion"] == "f1"
    assert set(config["thresholds"]) >= {"cosine", "euclidean"}
    a, b = sorted((unseen_glyphs / "id00").iterdir())[:2]
    assert main(["compare", str(a), str(b), "--model", str(model_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threshold"] == pytest.approx(config["thresholds"]["cosine"])
    assert out["same"] == (out["cosine"] >= out["threshold"])


def test_frozen_backbone_baseline_equals_an_untrained_model(
    default_model: SiameseModel, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """The pretrained backbone, evaluated as a model, equals its own frozen baseline."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for k, photo in enumerate(list(photos.values())[:5]):
        h, w = photo.shape[:2]
        for _ in range(3):
            y, x = rng.integers(0, h // 4), rng.integers(0, w // 4)
            images.append(np.ascontiguousarray(photo[y : y + 3 * h // 4, x : x + 3 * w // 4]))
            labels.append(k)
    data = LabelledImages(images, np.asarray(labels), [f"p{k}" for k in range(5)])
    cfg = EvalConfig(pairs=200, episodes=50, ways=3)
    result = evaluate(default_model, data, config=cfg)
    frozen = result.baselines["frozen_backbone"]
    assert result.model.summary() == frozen.summary() | {
        "threshold_source": result.model.summary()["threshold_source"]
    }
    # Crops of one photo retrieve each other with ImageNet features.
    assert result.model.retrieval is not None
    assert result.model.retrieval.precision_at_1 == 1.0
    thresholds = calibrated_thresholds(result, cfg)
    assert set(thresholds) == {"cosine", "euclidean"}


def test_eval_with_pairs_csv(
    trained_glyph_model: Path,
    unseen_glyphs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = sorted(unseen_glyphs.rglob("*.png"))
    rows = [(f, g, int(f.parent == g.parent)) for f in files[::3] for g in files[1::7]]
    pairs_csv = tmp_path / "pairs.csv"
    with pairs_csv.open("w", newline="") as handle:
        csv.writer(handle).writerows([("a", "b", "label"), *rows])
    code = main(
        ["eval", str(trained_glyph_model), "--pairs", str(pairs_csv), "--out", str(tmp_path / "r"),
         "--json"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == len(rows)
    assert report["pair_source"] == "pairs CSV"
    assert report["precision_at_1"] is None  # no identities without DATA
    assert 0.0 <= report["roc_auc"] <= 1.0


def test_eval_bad_inputs_are_clear_errors(
    trained_glyph_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    few = write_identity_folder(tmp_path / "few", n_ids=3, per_id=4)
    not_model = tmp_path / "not-a-model"
    not_model.mkdir()
    (not_model / "weights.bin").write_bytes(b"x")
    bad_pairs = tmp_path / "bad.csv"
    bad_pairs.write_text("a,b,label\nnope.png,also-missing.png,1\n")
    cases = {
        "not a lookalike model folder": ["eval", str(not_model), str(few)],
        "no such directory": ["eval", str(tmp_path / "missing"), str(few)],
        "need 5 identities": ["eval", str(trained_glyph_model), str(few), "--ways", "5"],
        "do not exist": ["eval", str(trained_glyph_model), "--pairs", str(bad_pairs)],
        "--far": ["eval", str(trained_glyph_model), str(few), "--criterion", "far"],
    }
    for expected, argv in cases.items():
        assert main([*argv, "--out", str(tmp_path / "r")]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("lookalike: error:") and expected in err, (expected, err)
        assert len(err.strip().splitlines()) == 1
