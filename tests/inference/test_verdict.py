"""A verdict with the default model: "same picture" at its measured near-duplicate threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.cli import main
from lookalike.dedup.calibrate import DEFAULT_DEDUP_THRESHOLD
from lookalike.inference import ModelSource, load_embedder
from lookalike.inference.comparison import NEAR_DUPLICATE, compare, near_duplicate_threshold

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "lookalike" / "samples"


@pytest.fixture(scope="module")
def default_embedder():  # type: ignore[no-untyped-def]
    return load_embedder(engine="torch")


def test_default_model_says_same_picture_or_different(default_embedder) -> None:  # type: ignore[no-untyped-def]
    edited = compare(SAMPLES / "chelsea.jpg", SAMPLES / "chelsea_edited.jpg", default_embedder)
    assert edited.same is True and edited.metric == NEAR_DUPLICATE
    assert edited.threshold == DEFAULT_DEDUP_THRESHOLD == 0.75
    other = compare(SAMPLES / "chelsea.jpg", SAMPLES / "coffee.jpg", default_embedder)
    assert other.same is False and other.metric == NEAR_DUPLICATE
    threshold, how = near_duplicate_threshold(default_embedder) or (None, "")
    assert threshold == 0.75 and "168 edited copies" in how


def test_no_verdict_where_the_threshold_was_not_measured(tmp_path: Path) -> None:
    # Another input size changes the embeddings: the measured threshold does not apply.
    resized = load_embedder(ModelSource(image_size=160), engine="torch")
    assert near_duplicate_threshold(resized) is None
    result = compare(SAMPLES / "chelsea.jpg", SAMPLES / "chelsea_edited.jpg", resized)
    assert result.same is None and result.metric is None
    # A model with a stored dedup threshold (calibrate-dedup) uses its own.
    from lookalike.model.network import SiameseModel

    model = SiameseModel.create("small_cnn", pretrained=False, input_size=32)
    assert near_duplicate_threshold(model) is None
    model.save(tmp_path / "folder")  # named by its path, which is no registry backbone
    folder = load_embedder(str(tmp_path / "folder"), engine="torch")
    assert near_duplicate_threshold(folder) is None
    assert compare(SAMPLES / "chelsea.jpg", SAMPLES / "coffee.jpg", folder).same is None
    model.thresholds["dedup"] = 0.9
    assert near_duplicate_threshold(model) == (
        0.9,
        "calibrated for this model with lookalike calibrate-dedup",
    )


def test_compare_prints_what_same_means(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = str(SAMPLES / "chelsea.jpg"), str(SAMPLES / "chelsea_edited.jpg")
    assert main(["compare", a, b, "--engine", "torch"]) == 0
    out = capsys.readouterr().out
    assert "decision:           same picture (cosine" in out and "≥ 0.7500" in out
    assert "the same picture after edits" in out and "not the same object" in out
    assert main(["compare", a, b, "--engine", "torch", "--image-size", "160"]) == 0
    assert "decision:           none: this model has no calibrated threshold" in (
        capsys.readouterr().out
    )
