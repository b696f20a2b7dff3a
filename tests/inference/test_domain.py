"""Out-of-domain warnings: a model trained on digits warns about photos, not about digits."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.cli import main
from lookalike.data.labelled import LabelledImages
from lookalike.data.split import split_by_image
from lookalike.errors import ModelFolderError
from lookalike.inference import load_embedder
from lookalike.inference.domain import domain_of, domain_warnings
from lookalike.model.card import ModelCard
from lookalike.model.domain import MIN_IMAGES, DomainRecord
from lookalike.model.folder import read_card

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's small CNN trained on scikit-learn digits (2 epochs), with its domain record."""
    from lookalike.training.demo import demo_config, run_demo

    out = tmp_path_factory.mktemp("demo")
    run_demo(out, config=replace(demo_config(0), epochs=2, val_pairs=400))
    return out / "model"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two photos and two digits the model never saw (the demo's held-out test split)."""
    folder = tmp_path_factory.mktemp("images")
    data = LabelledImages.from_digits()
    _, rest = split_by_image(data, 0.4, seed=0)
    _, test = split_by_image(rest, 0.5, seed=0)
    out = {}
    for name, pixels in (("digit_a", test.sources[0]), ("digit_b", test.sources[1])):
        out[name] = folder / f"{name}.png"
        Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(out[name])
    for name in ("astronaut", "coffee"):
        out[name] = folder / f"{name}.jpg"
        Image.fromarray(getattr(skimage_data, name)()).save(out[name])
    return out


def _compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_photos_warned_digits_not(
    digits_model: Path,
    images: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    engine: str,
) -> None:
    model = ["--model", str(digits_model), "--engine", engine]
    code, out, _ = _compare(
        capsys, str(images["astronaut"]), str(images["coffee"]), *model, "--json"
    )
    assert code == 0
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 2
    assert "astronaut.jpg looks unlike the handwritten digits" in warnings[0]
    assert "coffee.jpg" in warnings[1]
    code, out, _ = _compare(
        capsys, str(images["digit_a"]), str(images["digit_b"]), *model, "--json"
    )
    assert code == 0 and json.loads(out)["warnings"] == []
    # Text: the verdict on stdout, one "warning:" line per photo on stderr.
    code, out, err = _compare(capsys, str(images["astronaut"]), str(images["coffee"]), *model)
    assert code == 0 and "decision:" in out and "warning" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    code, out, err = _compare(capsys, str(images["digit_a"]), str(images["digit_b"]), *model)
    assert code == 0 and "warning" not in err


def test_record_is_stored_and_measured(digits_model: Path) -> None:
    card = read_card(digits_model)
    record = card.domain
    assert record is not None and record.dim == card.embedding_dim == 64
    assert record.images == 1080 and record.held_out == 717  # every val and test digit: 1,797
    assert record.false_alarm_rate is not None and record.false_alarm_rate <= 0.05
    assert len(json.dumps(record.to_dict())) < 20_000
    embedder = load_embedder(digits_model, engine="onnx")
    assert domain_of(embedder) == record


def test_info_shows_the_record(digits_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(digits_model)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("domain:"))
    assert "handwritten digits" in line and "held-out in-domain images above it" in line


def test_search_warns_for_photo_queries(
    digits_model: Path,
    images: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ("digit_a", "digit_b"):
        shutil.copy(images[name], folder)
    model = ["--model", str(digits_model), "--engine", "onnx"]
    assert main(["index", str(folder), "--index", str(tmp_path / "idx"), *model]) == 0
    capsys.readouterr()
    queries = [str(images["coffee"]), str(images["digit_a"])]
    assert main(["search", *queries, "--index", str(tmp_path / "idx"), "-k", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["warnings"]) == 1 and "coffee.jpg" in payload["warnings"][0]
    assert [len(r["warnings"]) for r in payload["results"]] == [1, 0]
    assert main(["search", *queries, "--index", str(tmp_path / "idx"), "-k", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "coffee.jpg" in err


def test_old_folder_without_record_still_works(
    digits_model: Path,
    images: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = tmp_path / "old-model"
    shutil.copytree(digits_model, old)
    config = json.loads((old / "config.json").read_text())
    del config["domain"]
    (old / "config.json").write_text(json.dumps(config))
    for engine in ("onnx", "torch"):
        args = [str(images["astronaut"]), str(images["coffee"]), "--model", str(old)]
        code, out, err = _compare(capsys, *args, "--engine", engine, "--json")
        assert code == 0 and json.loads(out)["warnings"] == [] and err == ""
    embedder = load_embedder(old, engine="torch")
    assert domain_of(embedder) is None
    assert domain_warnings(embedder, np.ones((2, 64), np.float32), ["a", "b"]) == []


def _bad(record: dict[str, object], **changes: object) -> dict[str, object]:
    return {**record, **changes}


def test_bad_records_refused_with_one_line(
    digits_model: Path,
    images: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = json.loads((digits_model / "config.json").read_text())
    good = config["domain"]
    bad_values = [
        "not an object",
        _bad(good, score="cosine"),
        _bad(good, dim=63),
        _bad(good, rank=0),
        _bad(good, rank=33),
        _bad(good, mean="@@@"),
        _bad(good, mean=good["mean"][:-8]),
        _bad(good, variances=[1.0] * 31 + [-1.0]),
        _bad(good, variances=[1.0] * 31 + [float("nan")]),
        _bad(good, threshold=float("inf")),
        _bad(good, threshold=True),
        _bad(good, false_alarm_rate=1.5),
        _bad(good, images=0),
        _bad(good, quantiles={"high": 1.0}),
        _bad(good, source="line\nbreak"),
    ]
    for value in bad_values:
        with pytest.raises(ModelFolderError, match="field 'domain' must be a domain record"):
            ModelCard.from_dict({**config, "domain": value})
    # Through the CLI: exit 2 and one line naming the field.
    broken = tmp_path / "broken-model"
    shutil.copytree(digits_model, broken)
    (broken / "config.json").write_text(json.dumps({**config, "domain": _bad(good, rank=0)}))
    code, out, err = _compare(
        capsys, str(images["digit_a"]), str(images["digit_b"]), "--model", str(broken)
    )
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "'domain'" in err


def test_record_round_trip_and_limits() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 16)).astype(np.float32)
    record = DomainRecord.fit(train, rng.normal(size=(200, 16)))
    assert record is not None and record.rank == 15
    assert DomainRecord.from_dict(record.to_dict(), 16) == record
    assert record.summary().startswith("400 training images (PCA Mahalanobis, rank 15 of 16)")
    assert 0.0 <= (record.false_alarm_rate or 0.0) <= 0.06 and record.held_out == 200
    # Far away and in another direction: scored far above the threshold.
    assert record.score(np.full((1, 16), 5.0))[0] > 10 * record.threshold
    assert DomainRecord.fit(train[: MIN_IMAGES - 1]) is None
    with pytest.raises(ValueError, match="size 8"):
        record.score(np.zeros((1, 8)))
    wide = DomainRecord.fit(rng.normal(size=(100, 1280)))
    assert wide is not None and wide.rank * 1280 <= 16384
    assert len(json.dumps(wide.to_dict())) < 100_000


def test_train_model_records_the_domain(tmp_path: Path) -> None:
    from lookalike.training.config import TrainConfig
    from lookalike.training.recipes import ModelSpec, train_model

    data = LabelledImages.from_digits()
    spec = ModelSpec(backbone="small_cnn", pretrained=False, image_size=28, projection=(32,))
    config = TrainConfig(loss="contrastive", miner="all", epochs=1, batch_size=40, val_pairs=200)
    small = LabelledImages(data.sources[:300], data.labels[:300], data.classes)
    train_model(small, tmp_path / "m", model_spec=spec, split="image", config=config)
    record = read_card(tmp_path / "m").domain
    assert record is not None and record.dim == 32 and record.source == "training images"
    # Validation images of the same digits, not trained on: the false alarms measured there.
    assert record.images + record.held_out == 300 and record.held_out >= 40
    assert record.false_alarm_rate is not None and record.false_alarm_rate < 0.1
    # Too few images for statistics: no record, and never the stale one of the start model.
    from lookalike.model.network import SiameseModel
    from lookalike.training.domain import record_domain

    model = SiameseModel.load(tmp_path / "m")
    assert model.domain == record
    assert record_domain(model, torch.zeros((MIN_IMAGES - 1, 1, 28, 28), dtype=torch.uint8)) is None
    assert model.domain is None and model.card().domain is None


def test_head_training_keeps_the_record(
    digits_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    from lookalike.model.layers import PairHead
    from lookalike.model.network import SiameseModel
    from lookalike.training.fewshot import train_head_on_pairs

    model = SiameseModel.load(digits_model)
    record = model.domain
    assert record is not None
    digits, photos = [str(images["digit_a"]), str(images["digit_b"])], [str(images["coffee"])]
    a = [digits[0], digits[1], digits[0], photos[0]]
    b = [digits[0], digits[1], digits[1], digits[1]]
    model.head = PairHead(model.embedding_dim)
    train_head_on_pairs(model, a, b, np.array([1, 1, 0, 0]), holdout=0, steps=5)
    model.save(tmp_path / "with-head")
    # The backbone is frozen: the embeddings, and so their statistics, are unchanged.
    assert read_card(tmp_path / "with-head").domain == record


def test_pairs_csv_carries_the_warnings(
    digits_model: Path,
    images: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lookalike.inference.comparison import score_pairs

    pairs = tmp_path / "pairs.csv"
    digit_a, digit_b, coffee = images["digit_a"], images["digit_b"], images["coffee"]
    pairs.write_text(
        f"a,b,label\n{digit_a},{digit_b},0\n{digit_a},{coffee},0\n{coffee},{coffee},1\n"
    )
    scores = score_pairs(load_embedder(digits_model, engine="onnx"), pairs)
    assert [len(c.warnings) for c in scores.comparisons] == [0, 1, 2]
    out = tmp_path / "scores.csv"
    args = ["--pairs", str(pairs), "--out", str(out), "--model", str(digits_model)]
    code, _, err = _compare(capsys, *args)
    assert code == 0 and err.count("warning: ") == 1 and "coffee.jpg" in err


def test_another_input_size_has_no_record(digits_model: Path) -> None:
    from lookalike.inference import ModelSource

    assert domain_of(load_embedder(digits_model, engine="torch")) is not None
    resized = ModelSource(folder=str(digits_model), image_size=40)
    for engine in ("torch", "onnx"):
        assert domain_of(load_embedder(resized, engine=engine)) is None


def test_api_compare_warns(digits_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    app = create_app(digits_model, data_dir=tmp_path / "data")
    with TestClient(app, base_url="http://localhost") as client:

        def post(a: str, b: str) -> dict[str, object]:
            files = {k: (images[n].name, images[n].read_bytes()) for k, n in (("a", a), ("b", b))}
            response = client.post("/api/compare", files=files)
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            return body

        photos = post("astronaut", "coffee")["warnings"]
        assert isinstance(photos, list) and len(photos) == 2
        assert photos[0].startswith("image a looks unlike the handwritten digits")
        assert post("digit_a", "digit_b")["warnings"] == []
        mixed = post("digit_a", "coffee")["warnings"]
        assert isinstance(mixed, list) and len(mixed) == 1 and mixed[0].startswith("image b ")
