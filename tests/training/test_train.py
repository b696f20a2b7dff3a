"""Training: learning works, resume is exact, bad data is reported, the real CLI runs end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from glyphs import glyph_images, write_identity_folder
from lookalike.cli import main
from lookalike.data.augment import Augment
from lookalike.data.labelled import LabelledImages
from lookalike.data.pairs import PairList
from lookalike.errors import DataError
from lookalike.model.network import SiameseModel
from lookalike.training.checkpoint import Checkpoint
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.recipes import ModelSpec, train_model
from lookalike.training.trainer import Trainer

SMALL = ModelSpec(backbone="small_cnn", pretrained=False, image_size=28)


def _config(**kw: object) -> TrainConfig:
    base = {
        "loss": "contrastive",
        "miner": "all",
        "epochs": 6,
        "batch_size": 40,
        "m_per_class": 4,
        "lr": 3e-3,
        "augment": Augment.off(),
        "val_pairs": 600,
        "patience": None,
        "seed": 0,
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_training_beats_raw_pixels(tmp_path: Path) -> None:
    images, labels = glyph_images(n_ids=10, per_id=30)
    data = LabelledImages.from_arrays(images, labels)
    torch.manual_seed(0)
    cfg = _config(epochs=8, steps_per_epoch=30)
    result = train_model(data, tmp_path / "m", model_spec=SMALL, config=cfg, split="image")
    raw = result.baselines["raw_pixels"]
    assert raw <= 0.65, f"the dataset is too easy for raw pixels ({raw:.3f})"
    losses = [r.train_loss for r in result.history if r.train_loss is not None]
    assert losses[-1] < losses[0]
    assert result.best.val_accuracy >= 0.9
    assert result.best_epoch > 0
    saved = SiameseModel.load(tmp_path / "m")
    assert saved.thresholds["cosine"] == pytest.approx(result.best.val_threshold)
    assert saved.metrics["baseline_raw_pixels_val_pair_accuracy"] == pytest.approx(raw)
    work = tmp_path / "m" / "training"
    for name in ("history.json", "history.csv", "loss.png", "accuracy.png", "checkpoint.pt"):
        assert (work / name).is_file(), name
    assert json.loads((work / "history.json").read_text())["best_epoch"] == result.best_epoch


@pytest.mark.parametrize(
    ("loss", "sampling", "miner"),
    [
        ("triplet", "balanced", "semihard"),
        ("triplet", "balanced", "hard"),
        ("triplet", "triplets", "semihard"),
        ("contrastive", "pairs", "all"),
        ("bce", "balanced", "all"),
    ],
)
def test_every_loss_and_sampling_runs(tmp_path: Path, loss: str, sampling: str, miner: str) -> None:
    images, labels = glyph_images(n_ids=6, per_id=10)
    data = LabelledImages.from_arrays(images, labels)
    result = train_model(
        data,
        tmp_path / "m",
        model_spec=SMALL,
        split="image",
        config=_config(loss=loss, sampling=sampling, miner=miner, epochs=1),
    )
    record = result.history[-1]
    assert record.epoch == 1 and record.train_loss is not None and np.isfinite(record.train_loss)
    assert record.scored > 0
    if loss == "bce":
        assert result.model.head is not None and "probability" in result.model.thresholds


def _trainer(out: Path, images: np.ndarray, labels: np.ndarray) -> Trainer:
    torch.manual_seed(1)
    model = SMALL.build(head=False)
    pixels = torch.from_numpy(images[:, None])
    train = TrainData(pixels[::2], torch.from_numpy(labels[::2]))
    val = TrainData(pixels[1::2], torch.from_numpy(labels[1::2]))
    cfg = _config(epochs=3, augment=Augment())
    return Trainer(model, train, val, cfg, out, pretrained=False)


def test_resume_gives_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bitwise reproducibility on CPU needs one thread: multithreaded reductions in the conv
    # backward pass differ run to run by ~1e-5 even without any interruption.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_resume(tmp_path, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _check_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = glyph_images(n_ids=6, per_id=12)
    _trainer(tmp_path / "straight", images, labels).fit()
    interrupted = _trainer(tmp_path / "resumed", images, labels)
    real_epoch = Trainer._train_epoch

    def crash_at_3(self: Trainer, epoch: int) -> tuple[float, int, int, float]:
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    assert Checkpoint.load(tmp_path / "resumed" / "training" / "checkpoint.pt").epoch == 2
    _trainer(tmp_path / "resumed", images, labels).fit(resume=True)
    a = torch.load(tmp_path / "straight" / "training" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "training" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0, msg=key)
    assert [r["val_accuracy"] for r in a["history"]] == [r["val_accuracy"] for r in b["history"]]


def test_bad_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        LabelledImages.from_folder(tmp_path / "empty")
    root = write_identity_folder(tmp_path / "ids", n_ids=6, per_id=10)
    (root / "loner").mkdir()
    (root / "loner" / "only.png").write_bytes((root / "id00" / "000.png").read_bytes())
    (root / "id01" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    data = LabelledImages.from_folder(root, min_images=2)
    assert "loner" in data.dropped
    result = train_model(
        data,
        tmp_path / "m",
        model_spec=SMALL,
        split="image",
        config=_config(epochs=1, batch_size=24),
    )
    assert len(result.skipped) == 1 and "broken.png" in next(iter(result.skipped))
    assert any("1 unreadable image(s) skipped" in w for w in result.warnings)


def test_bad_pairs_csv(tmp_path: Path) -> None:
    root = write_identity_folder(tmp_path / "ids", n_ids=2, per_id=2)
    files = sorted(root.rglob("*.png"))
    good = tmp_path / "good.csv"
    good.write_text(f"{files[0]},{files[1]},1\n{files[0]},{files[2]},0\n")
    assert len(PairList.from_csv(good)) == 2
    missing = tmp_path / "missing.csv"
    missing.write_text(f"{files[0]},{tmp_path / 'gone.png'},1\n")
    with pytest.raises(DataError, match=r"gone\.png"):
        PairList.from_csv(missing)
    bad_label = tmp_path / "label.csv"
    bad_label.write_text(f"{files[0]},{files[1]},maybe\n")
    with pytest.raises(DataError, match="maybe"):
        PairList.from_csv(bad_label)


def _pairs_csv(root: Path, out: Path, n: int = 40) -> Path:
    files = sorted(root.rglob("*.png"))
    ids = [f.parent.name for f in files]
    rng = np.random.default_rng(0)
    rows = []
    while len(rows) < n:
        i, j = rng.integers(0, len(files), 2)
        if i != j:
            rows.append((files[i], files[j], int(ids[i] == ids[j])))
    rows += [(files[0], files[1], 1), (files[0], files[-1], 0)]
    with out.open("w", newline="") as handle:
        csv.writer(handle).writerows([("a", "b", "label"), *rows])
    return out


def test_cli_train_then_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_identity_folder(tmp_path / "ids", n_ids=6, per_id=6)
    model_dir = tmp_path / "model"
    code = main(
        [
            "train",
            str(root),
            "--out",
            str(model_dir),
            "--backbone",
            "small_cnn",
            "--no-pretrained",
            "--loss",
            "contrastive",
            "--epochs",
            "2",
            "--batch-size",
            "12",
            "--m-per-class",
            "3",
            "--no-augment",
            "--split",
            "image",
            "--patience",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "validation pair accuracy" in out and "raw pixels" in out
    a, b = sorted((root / "id00").glob("*.png"))[:2]
    assert main(["compare", str(a), str(b), "--model", str(model_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["same"] in (True, False) and result["threshold"] is not None
    # Training from pair labels alone, then a few-shot head on the trained model.
    pairs = _pairs_csv(root, tmp_path / "pairs.csv")
    code = main(
        [
            "train",
            str(pairs),
            "--out",
            str(tmp_path / "from_pairs"),
            "--backbone",
            "small_cnn",
            "--no-pretrained",
            "--loss",
            "contrastive",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--no-augment",
        ]
    )
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    code = main(
        ["train-head", str(pairs), "--model", str(model_dir), "--out", str(tmp_path / "head")]
    )
    out = capsys.readouterr().out
    assert code == 0 and "held-out accuracy" in out
    assert main(["compare", str(a), str(b), "--model", str(tmp_path / "head"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["probability"] is not None


def test_cli_train_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "lookalike: error:" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "x.csv"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_through_the_real_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pair accuracy: ")
    assert float(lines[0].split(":")[1]) >= 0.95
    for name in (
        "embedding_map.png",
        "model/training/loss.png",
        "model/training/accuracy.png",
        "model/config.json",
    ):
        assert (tmp_path / "demo" / name).is_file(), name
