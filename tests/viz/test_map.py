"""Embedding maps of a folder: ``lookalike.viz.maps`` and ``lookalike map``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike.cli import main
from lookalike.errors import LookalikeError
from lookalike.viz.maps import folder_images, map_folder, map_vectors, plot_thumbnail_map

IDENTITIES = ("chelsea", "coffee", "astronaut")
TAB10_BLUE = (31, 119, 180)  # the first identity's frame colour


def _variants(photo: np.ndarray) -> list[Image.Image]:
    """Four versions of one photo: as is, mirrored, cropped, darker; at most 160 px."""
    image = Image.fromarray(photo)
    image.thumbnail((160, 160))
    w, h = image.size
    return [
        image,
        ImageOps.mirror(image),
        image.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
        image.point(lambda v: int(v * 0.7)),
    ]


@pytest.fixture()
def identity_folder(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """12 images: 4 variants each of 3 photos, in root/<identity>/<image>."""
    root = tmp_path / "people"
    for name in IDENTITIES:
        folder = root / name
        folder.mkdir(parents=True)
        for k, image in enumerate(_variants(photos[name])):
            image.save(folder / f"{name}_{k}.{'png' if k % 2 else 'jpg'}")
    return root


def test_folder_images_labels_only_identity_folders(identity_folder: Path, tmp_path: Path) -> None:
    paths, labels = folder_images(identity_folder)
    assert len(paths) == 12
    assert labels is not None
    assert sorted(set(labels)) == sorted(IDENTITIES)
    assert all(Path(p).parent.name == label for p, label in zip(paths, labels, strict=True))
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (20, 20), "red").save(flat / "a.png")
    Image.new("RGB", (20, 20), "blue").save(identity_folder / "loose.png")
    assert folder_images(flat) == ([str(flat / "a.png")], None)
    assert folder_images(identity_folder)[1] is None  # an image outside any identity folder
    with pytest.raises(LookalikeError, match="no images"):
        folder_images(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_map_folder_places_identities_together(
    default_model: object, identity_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps" / "map.png"
    result = map_folder(identity_folder, out, default_model)  # type: ignore[arg-type]
    assert result.path == out and out.exists()
    assert result.labels is not None and len(result.paths) == 12 and not result.skipped
    assert result.xy.shape == (12, 2) and result.method == "pca" and result.style == "thumbnails"
    # each image's nearest neighbour on the map is a variant of the same photo
    d = np.linalg.norm(result.xy[:, None] - result.xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    labels = np.asarray(result.labels)
    assert (labels[d.argmin(axis=1)] == labels).mean() >= 0.9
    with Image.open(out) as png:
        width, height = png.size
        pixels = np.asarray(png.convert("RGB")).reshape(-1, 3)
    assert 600 <= width <= 3000 and 400 <= height <= 2500
    blue_frame = np.all(np.abs(pixels.astype(int) - TAB10_BLUE) <= 3, axis=1)
    assert blue_frame.sum() > 12 * 40 * 3  # the first identity's four thumbnails are framed


def test_cli_map_thumbnails(
    identity_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "map.png"
    assert main(["map", str(identity_folder), "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "mapped 12 images, 3 identities (PCA, thumbnails)" in text and str(out) in text
    assert out.stat().st_size > 20_000


def test_cli_map_labels_tsne_and_a_corrupt_file(
    identity_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (identity_folder / "coffee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "labels.png"
    argv = [
        "map",
        str(identity_folder),
        "--out",
        str(out),
        "--labels",
        "--method",
        "tsne",
        "--json",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["images"] == 12 and report["identities"] == 3
    assert report["method"] == "tsne" and report["style"] == "points"
    assert report["skipped"] == [str(identity_folder / "coffee" / "broken.jpg")]
    assert "skipped: cannot read image" in captured.err and "broken.jpg" in captured.err
    assert "1 file(s) skipped" in captured.err
    with Image.open(out) as png:
        assert png.size[0] > 400


def test_tsne_on_three_points_and_too_few_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = [str(tmp_path / f"{k}.png") for k in range(3)]
    for k, path in enumerate(paths):
        Image.new("RGB", (30, 20), (80 * k, 40, 200)).save(path)
    vectors = rng.normal(size=(3, 16)).astype(np.float32)
    result = map_vectors(vectors, paths, tmp_path / "three.png", method="tsne")
    assert result.xy.shape == (3, 2) and result.path.exists()
    with pytest.raises(LookalikeError, match="at least 3 readable images"):
        map_vectors(vectors[:2], paths[:2], tmp_path / "two.png", method="tsne")


def test_map_vectors_skips_unreadable_thumbnails_and_keeps_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = [str(tmp_path / f"{k}.png") for k in range(6)]
    for path in paths[:5]:
        Image.new("RGB", (40, 40), "green").save(path)
    labels = ["x", "x", None, "y", "y", "y"]
    vectors = rng.normal(size=(6, 8))
    thumbs = map_vectors(vectors, paths, tmp_path / "t.png", labels=labels)
    assert thumbs.paths == paths[:5] and list(thumbs.skipped) == [paths[5]]
    assert thumbs.labels == ["x", "x", "(none)", "y", "y"]
    points = map_vectors(vectors, paths, tmp_path / "p.png", style="points")
    assert points.paths == paths and not points.skipped and points.labels is None
    with pytest.raises(ValueError, match="vectors must be"):
        map_vectors(vectors[:3], paths, tmp_path / "bad.png")


def test_plot_thumbnail_map_validates_and_handles_identical_points(tmp_path: Path) -> None:
    images = [Image.new("RGB", (32, 24), "red") for _ in range(3)]
    out = plot_thumbnail_map(np.zeros((3, 2)), images, tmp_path / "same.png")
    assert out.exists()
    with pytest.raises(ValueError, match="xy must be"):
        plot_thumbnail_map(np.zeros((2, 2)), images, tmp_path / "bad.png")


def test_cli_map_user_mistakes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "m.png")
    assert main(["map", "--out", out]) == 2
    assert "give either an image folder or --index" in capsys.readouterr().err
    assert main(["map", str(tmp_path), "--out", out, "--thumb-size", "4"]) == 2
    assert "--thumb-size must be at least 8" in capsys.readouterr().err
    assert main(["map", str(tmp_path / "missing"), "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lookalike: error: ")
    empty = _empty(tmp_path)
    assert main(["map", str(empty), "--out", out]) == 2
    assert "no images found" in capsys.readouterr().err


def test_cli_map_index_uses_stored_vectors(
    default_model: object,
    identity_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("faiss")
    from lookalike.index.index import Index
    from lookalike.model.network import SiameseModel

    index_dir = tmp_path / "idx"
    with Index.create(index_dir, identity_folder, model_key="test", dim=1280) as index:
        index.update(default_model)  # type: ignore[arg-type]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("map --index must not embed")

    monkeypatch.setattr(SiameseModel, "embed", refuse)
    monkeypatch.setattr(SiameseModel, "create", refuse)
    out = tmp_path / "index-map.png"
    assert main(["map", "--index", str(index_dir), "--out", str(out)]) == 0
    assert "mapped 12 images, 3 identities (PCA, thumbnails)" in capsys.readouterr().out
    assert out.exists()
    with Index.open(index_dir) as index:  # labels stored in the index win over folders
        index.set_labels({p: ("cat" if "chelsea" in p else "other") for p in index.paths()})
    argv = ["map", "--index", str(index_dir), "--out", str(out), "--labels", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["identities"] == 2
    assert main([*argv, "--model", str(tmp_path)]) == 2
    assert "drop --model" in capsys.readouterr().err
    assert main(["map", "--index", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no index in" in capsys.readouterr().err


def test_missing_projection_package_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--method umap`` without umap-learn: one line at once, no model loaded, no eval run."""
    import importlib.util

    from lookalike.cli import options

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "umap" else real_find_spec(name, *a),
    )

    def no_model(*_: object) -> None:
        raise AssertionError("a model was loaded before the method was checked")

    monkeypatch.setattr(options, "load_model", no_model)
    (tmp_path / "imgs").mkdir()
    assert (
        main(["map", str(tmp_path / "imgs"), "--out", str(tmp_path / "m.png"), "--method", "umap"])
        == 2
    )
    err = capsys.readouterr().err
    assert "pip install umap-learn" in err and err.count("\n") == 1
    from lookalike.evaluation import evaluate as evaluation

    monkeypatch.setattr(evaluation, "evaluate", no_model)
    argv = ["eval", str(tmp_path), str(tmp_path / "imgs"), "--map", "umap"]
    argv += ["--out", str(tmp_path / "report")]
    assert main(argv) == 2
    assert "pip install umap-learn" in capsys.readouterr().err
