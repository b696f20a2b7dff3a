"""explain: local similarity heatmaps, their rendering, and ``lookalike explain``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.cli import main
from lookalike.inference.comparison import compare
from lookalike.samples import sample_paths
from lookalike.viz.explain import Explanation, explain, local_similarity, render_explanation

SAMPLES = sample_paths()
# Rectangles covering 1/9 of the image, as fractions (top, left) of its height and width.
CORNERS = [(0.0, 0.0), (1 / 3, 1 / 3), (2 / 3, 2 / 3)]


def _painted(image: np.ndarray, top: float, left: float) -> tuple[np.ndarray, tuple[int, ...]]:
    """A copy of ``image`` with a third-by-third rectangle painted over with noise."""
    height, width = image.shape[:2]
    y0, x0 = int(top * height), int(left * width)
    y1, x1 = y0 + height // 3, x0 + width // 3
    out = image.copy()
    rng = np.random.default_rng(7)
    out[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
    return out, (x0, y0, x1, y1)


def _inside(shape: tuple[int, ...], box: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.mark.parametrize(("top", "left"), CORNERS)
@pytest.mark.parametrize("mode", ["best_match", "aligned"])
def test_painted_region_is_where_the_heatmap_is_lowest(
    default_model: object, photos: dict[str, np.ndarray], top: float, left: float, mode: str
) -> None:
    cat = photos["chelsea"]
    painted, rect = _painted(cat, top, left)
    result = explain(cat, painted, default_model, mode=mode)  # type: ignore[arg-type]
    mask = _inside(cat.shape[:2], rect)
    for heat in (result.heatmap_b, result.heatmap_a):
        lowest = heat <= np.quantile(heat, 0.10)
        assert mask[lowest].mean() > 0.5  # the lowest 10% lie mostly in the painted ninth
        assert mask[np.unravel_index(np.argmin(heat), heat.shape)]
        assert heat[mask].mean() < heat[~mask].mean() - 0.1
    box = result.lowest_region("b")
    assert box is not None
    assert _iou(box, rect) > 0.3
    cx, cy = (rect[0] + rect[2]) // 2, (rect[1] + rect[3]) // 2
    assert box[0] <= cx < box[2] and box[1] <= cy < box[3]


def test_image_against_itself_agrees_everywhere(
    default_model: object, photos: dict[str, np.ndarray]
) -> None:
    cat = photos["chelsea"]
    result = explain(cat, cat.copy(), default_model)  # type: ignore[arg-type]
    assert result.cosine == pytest.approx(1.0, abs=1e-5)
    assert result.euclidean == pytest.approx(0.0, abs=3e-3)
    for heat in (result.heatmap_a, result.heatmap_b):
        assert heat.shape == cat.shape[:2]
        assert heat.dtype == np.float32
        assert heat.min() > 0.999
        assert heat.max() <= 1.0
    assert result.lowest_region("a") is None and result.lowest_region("b") is None
    assert result.to_dict()["lowest_region"] is None


def test_heatmaps_have_each_images_own_resolution_and_scores_match_compare(
    default_model: object, photos: dict[str, np.ndarray]
) -> None:
    cat = photos["chelsea"]
    small = np.asarray(Image.fromarray(cat).resize((200, 150)))
    result = explain(cat, small, default_model)  # type: ignore[arg-type]
    assert result.heatmap_a.shape == cat.shape[:2]
    assert result.heatmap_b.shape == (150, 200)
    assert result.similarity_a.shape == result.similarity_b.shape == (7, 7)
    for heat in (result.heatmap_a, result.heatmap_b):
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    expected = compare(cat, small, default_model)  # type: ignore[arg-type]
    assert result.cosine == pytest.approx(expected.cosine, abs=1e-6)
    assert result.euclidean == pytest.approx(expected.euclidean, abs=1e-6)
    assert result.probability is None


def test_finer_heatmaps_with_a_larger_input_size(
    default_model: object, photos: dict[str, np.ndarray]
) -> None:
    cat = photos["chelsea"]
    painted, rect = _painted(cat, 0.0, 0.0)
    result = explain(cat, painted, default_model, input_size=448)  # type: ignore[arg-type]
    assert result.similarity_b.shape == (14, 14)
    lowest = result.heatmap_b <= np.quantile(result.heatmap_b, 0.10)
    assert _inside(cat.shape[:2], rect)[lowest].mean() > 0.8
    # the overall scores still come from the model's own 224 px input
    assert result.cosine == pytest.approx(compare(cat, painted, default_model).cosine, abs=1e-6)  # type: ignore[arg-type]


def test_best_match_forgives_moved_content(
    default_model: object, photos: dict[str, np.ndarray]
) -> None:
    cat = photos["chelsea"]
    shifted = np.roll(cat, (40, 90), axis=(0, 1))  # the same content, moved
    best = explain(cat, shifted, default_model, mode="best_match")  # type: ignore[arg-type]
    aligned = explain(cat, shifted, default_model, mode="aligned")  # type: ignore[arg-type]
    assert np.all(best.similarity_b >= aligned.similarity_b - 1e-6)
    assert best.similarity_b.mean() > aligned.similarity_b.mean() + 0.02
    assert best.cosine == aligned.cosine


def test_local_similarity_against_a_loop_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    fa = torch.rand(5, 3, 4, generator=gen)
    fb = torch.rand(5, 3, 4, generator=gen)
    fa[:, 0, 0] = 0.0  # an all-zero location in A
    fb[:, 2, 3] = 0.0  # and in B
    best_a, best_b = local_similarity(fa, fb, mode="best_match")
    aligned_a, aligned_b = local_similarity(fa, fb, mode="aligned")

    def cos(u: torch.Tensor, v: torch.Tensor) -> float:
        nu, nv = float(u.norm()), float(v.norm())
        if nu == 0 and nv == 0:
            return 1.0
        if nu == 0 or nv == 0:
            return 0.0
        return float(u @ v) / (nu * nv)

    cells = [(i, j) for i in range(3) for j in range(4)]
    for i, j in cells:
        assert aligned_a[i, j] == pytest.approx(cos(fa[:, i, j], fb[:, i, j]), abs=1e-5)
        assert best_a[i, j] == pytest.approx(
            max(cos(fa[:, i, j], fb[:, k, m]) for k, m in cells), abs=1e-5
        )
        assert best_b[i, j] == pytest.approx(
            max(cos(fa[:, k, m], fb[:, i, j]) for k, m in cells), abs=1e-5
        )
    assert torch.equal(aligned_a, aligned_b)
    assert best_a[0, 0] == pytest.approx(1.0)  # zero matches zero
    assert aligned_a[0, 0] == 0.0  # zero against non-zero


def test_moved_feature_matches_only_in_best_match_mode() -> None:
    fa = torch.zeros(2, 2, 2)
    fb = torch.zeros(2, 2, 2)
    fa[0] = 1.0
    fb[0] = 1.0
    fa[1, 0, 0] = 5.0  # a distinctive feature top-left in A ...
    fb[1, 1, 1] = 5.0  # ... bottom-right in B
    best_a, _ = local_similarity(fa, fb, mode="best_match")
    aligned_a, _ = local_similarity(fa, fb, mode="aligned")
    assert float(best_a[0, 0]) == pytest.approx(1.0)
    assert float(aligned_a[0, 0]) < 0.3


def test_invalid_arguments(default_model: object, photos: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        explain(photos["coins"], photos["coins"], default_model, mode="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="feature maps"):
        local_similarity(torch.zeros(3, 2, 2), torch.zeros(3, 2, 3))


def test_render_writes_a_side_by_side_png(
    default_model: object, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    cat = photos["chelsea"]
    painted, _ = _painted(cat, 1 / 3, 1 / 3)
    result = explain(cat, painted, default_model)  # type: ignore[arg-type]
    out = render_explanation(result, cat, painted, tmp_path / "figs" / "diff.png")
    assert out == tmp_path / "figs" / "diff.png"
    with Image.open(out) as png:
        assert png.format == "PNG"
        width, height = png.size
        pixels = np.asarray(png.convert("RGB")).astype(int)
    assert 800 <= width <= 2500 and 300 <= height <= 1200 and width > 1.5 * height
    reddish = (pixels[..., 0] > pixels[..., 1] + 40).mean()
    assert reddish > 0.005  # the painted region shows in red
    with pytest.raises(ValueError, match="render the images that were explained"):
        render_explanation(result, cat, photos["coffee"], tmp_path / "wrong.png")


def test_render_shrinks_large_images(tmp_path: Path) -> None:
    big = np.zeros((2000, 3000, 3), dtype=np.uint8)
    heat = np.ones((2000, 3000), dtype=np.float32)
    sim = np.ones((7, 7), dtype=np.float32)
    result = Explanation(1.0, 0.0, None, None, heat, heat, sim, sim)
    out = render_explanation(result, big, big, tmp_path / "big.png")
    with Image.open(out) as png:
        assert max(png.size) < 2500


def test_cli_explain_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "diff.png"
    args = ["explain", str(SAMPLES["chelsea"]), str(SAMPLES["chelsea_edited"]), "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "cosine similarity:" in text and "euclidean distance:" in text
    assert str(out) in text and "least alike in B" in text
    assert out.stat().st_size > 10_000
    out.unlink()
    assert main([*args, "--json", "--mode", "aligned"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heatmap"] == str(out) and out.exists()
    assert report["mode"] == "aligned"
    assert 0.8 < report["cosine"] <= 1.0
    assert report["euclidean"] == pytest.approx(np.sqrt(2 - 2 * report["cosine"]), abs=1e-4)
    assert report["probability"] is None
    x0, y0, x1, y1 = report["lowest_region_b"]
    with Image.open(SAMPLES["chelsea_edited"]) as image:
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
    # The two images are described by the same keys, _a and _b (nothing only for one).
    per_image = {k[:-2] for k in report if k.endswith(("_a", "_b"))}
    for stem in per_image:
        assert f"{stem}_a" in report and f"{stem}_b" in report, stem
    assert per_image == {"image", "lowest_similarity", "lowest_region"}
    assert "lowest_region" not in report
    assert report["image_b"] == str(SAMPLES["chelsea_edited"])


def test_cli_explain_bad_image_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    out = tmp_path / "diff.png"
    assert main(["explain", str(SAMPLES["chelsea"]), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lookalike: error: ")
    assert "broken.jpg" in err[0]
    assert not out.exists()
