"""The figures of ``lookalike.viz``: curves, grids, the one embedding-map renderer, lazy names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import lookalike.viz
from fresh_python import run_fresh
from lookalike.errors import LookalikeError
from lookalike.training.checkpoint import EpochRecord
from lookalike.viz import maps
from lookalike.viz.curves import plot_history, plot_roc, plot_score_histograms
from lookalike.viz.grids import plot_retrieval_grid


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_import_viz_imports_neither_matplotlib_nor_torch() -> None:
    run_fresh(
        "import sys, lookalike.viz as v\n"
        "assert 'plot_roc' in dir(v) and 'plot_embedding_map' in v.__all__\n"
        "v.plot_roc, v.plot_embedding_map, v.plot_retrieval_grid, v.Explanation\n"
        "bad = {'matplotlib', 'torch'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )


def test_lazy_names_are_the_module_objects() -> None:
    assert lookalike.viz.plot_embedding_map is maps.plot_embedding_map
    assert lookalike.viz.plot_history is plot_history
    with pytest.raises(AttributeError):
        _ = lookalike.viz.no_such_figure


def test_plot_embedding_map_goes_through_the_point_renderer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 5
    labels = np.repeat(np.arange(3), 10)
    vectors = centres[labels] + rng.normal(0, 0.1, (30, 8))
    calls: list[dict[str, Any]] = []
    real = maps.plot_point_map

    def spy(xy: Any, path: Any, **kwargs: Any) -> Path:
        calls.append({"xy": np.asarray(xy), **kwargs})
        return real(xy, path, **kwargs)

    monkeypatch.setattr(maps, "plot_point_map", spy)
    out = maps.plot_embedding_map(
        vectors, labels, ["cat", "dog", "owl"], tmp_path / "sub" / "map.png", title="Held out"
    )
    assert out == tmp_path / "sub" / "map.png" and _png_size(out)[0] > 100
    (call,) = calls
    assert call["labels"] == ["cat"] * 10 + ["dog"] * 10 + ["owl"] * 10
    assert call["title"] == "Held out (PCA, 30 images)"
    assert call["xy"].shape == (30, 2)
    with pytest.raises(LookalikeError, match="at least 2"):
        maps.plot_embedding_map(vectors[:1], labels[:1], ["cat"], tmp_path / "one.png")


def test_project_2d_pca_and_its_refusals() -> None:
    xy = maps.project_2d(np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 0.0, 1.0]]))
    assert xy.shape == (3, 2)
    np.testing.assert_allclose(np.abs(xy[:, 0]), [2.0, 0.0, 2.0], atol=1e-9)
    assert maps.project_2d(np.array([[1.0], [2.0]])).shape == (2, 2)  # 1-D padded
    with pytest.raises(LookalikeError, match="at least 2"):
        maps.project_2d(np.zeros((1, 4)))
    with pytest.raises(LookalikeError, match="unknown projection"):
        maps.project_2d(np.zeros((3, 4)), "mds")  # type: ignore[arg-type]


def test_curves_write_pngs(tmp_path: Path) -> None:
    history = [
        EpochRecord(
            epoch=k,
            train_loss=None if k == 0 else 1.0 / (k + 1),
            val_loss=1.0 / (k + 2),
            val_accuracy=0.6 + 0.1 * k,
            val_threshold=0.5,
            lr=1e-3,
            seconds=0.1,
            scored=10,
            forward_passes=20,
        )
        for k in range(3)
    ]
    loss, accuracy = plot_history(history, tmp_path / "training")
    assert (loss.name, accuracy.name) == ("loss.png", "accuracy.png")
    assert _png_size(loss) == _png_size(accuracy)
    far = np.array([0.0, 0.01, 0.1, 1.0])
    tar = np.array([0.0, 0.5, 0.9, 1.0])
    assert _png_size(plot_roc({"model": (far, tar, 0.9)}, tmp_path / "roc.png"))
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.3])
    labels = np.array([1, 1, 1, 0, 0, 0])
    out = plot_score_histograms(scores, labels, tmp_path / "s.png", threshold=0.5)
    assert _png_size(out)


def test_retrieval_grid_draws_unreadable_cells(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "red").save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = plot_retrieval_grid(
        [good, good], [[(good, "a.png", 1.0), (bad, "bad.png", 0.5)], []], tmp_path / "g.png"
    )
    width, height = _png_size(out)
    assert width > height  # two rows of three cells
