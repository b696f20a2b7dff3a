"""Near-duplicate groups, moving duplicates, the HTML contact sheet, the near-duplicate edit
generator and threshold calibration — plus the default threshold measured with the real model."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.dedup.calibrate import (
    DEFAULT_DEDUP_THRESHOLD,
    calibrate_dedup_threshold,
    dedup_threshold,
    pair_metrics,
)
from lookalike.dedup.edits import EDIT_KINDS, apply_edit, near_duplicates
from lookalike.dedup.groups import (
    MANIFEST_FORMAT,
    dedup_index,
    duplicate_pairs,
    find_duplicates,
    move_duplicates,
    undo_moves,
)
from lookalike.dedup.keep import rank_copies
from lookalike.dedup.report import write_dedup_html
from lookalike.errors import DataError
from lookalike.imaging.images import load_image
from lookalike.index import faiss_structures as vi
from lookalike.index.index import Index

pytest.importorskip("faiss")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim)))


def brute_pairs(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def photo(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


# --------------------------------------------------------------------------- groups


def test_duplicate_pairs_equal_brute_force() -> None:
    x = clustered(600, 16, 60, 0.15, seed=0)
    threshold = 0.95
    i, j, s = duplicate_pairs(x, threshold, chunk=97)  # awkward chunk size
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    scores = x @ x.T
    near_edge = {
        (a, b) for a, b in brute_pairs(x, threshold - 1e-5) if scores[a, b] < threshold + 1e-5
    }
    assert got - near_edge == brute_pairs(x, threshold) - near_edge
    assert len(got) > 100 and all(a < b for a, b in got)
    np.testing.assert_allclose(s, scores[i, j], atol=1e-5)
    # IVF (approximate) finds nearly all of them
    config = vi.VectorIndexConfig(kind="ivf")
    ia, ja, _ = duplicate_pairs(x, threshold, config=config)
    assert len(set(zip(ia.tolist(), ja.tolist(), strict=True)) & got) >= 0.95 * len(got)


def test_groups_are_connected_components_and_record_chains() -> None:
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=(6, 32)))
    a = base[0]
    ortho = unit(base[1] - (base[1] @ a) * a)

    def at(angle: float) -> np.ndarray:
        return np.cos(angle) * a + np.sin(angle) * ortho

    # a chain a0 — a1 — a2 with cos(a0, a2) below the threshold; a pair; three singletons
    x = np.stack(
        [at(0.0), base[2], at(0.4), base[3], at(0.8), base[4], base[4] * 0.999 + base[5] * 0.001]
    )
    threshold = float(np.cos(0.45))
    groups = find_duplicates(x, threshold)
    assert [g.indices for g in groups] == [(0, 2, 4), (5, 6)]
    chain = groups[0]
    assert chain.keep == "0" and chain.duplicates == ("2", "4")  # vectors only: the first row
    assert chain.scores[0] == 1.0
    assert chain.scores[1] == pytest.approx(np.cos(0.4), abs=1e-5)
    assert chain.min_score == pytest.approx(np.cos(0.8), abs=1e-5) and chain.min_score < threshold
    assert find_duplicates(x[:1], 0.5) == [] and find_duplicates(np.zeros((0, 4)), 0.5) == []
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates(x, 1.5)
    with pytest.raises(ValueError, match="one entry per vector"):
        find_duplicates(x, 0.9, paths=["a"])


def test_keep_rule_resolution_then_file_size_then_path(tmp_path: Path) -> None:
    v = unit(np.ones((1, 8)))
    photo(0, (40, 30)).save(tmp_path / "small.png")
    photo(0, (80, 60)).save(tmp_path / "big.png")
    photo(0, (80, 60)).save(tmp_path / "big_low_quality.jpg", quality=20)
    groups = find_duplicates(
        np.repeat(v, 3, 0),
        0.9,
        paths=["small.png", "big_low_quality.jpg", "big.png"],
        ids=[7, 8, 9],
        root=tmp_path,
    )
    (group,) = groups
    assert group.keep == "big.png" and group.ids[0] == 9  # same pixels: the larger file
    assert set(group.duplicates) == {"small.png", "big_low_quality.jpg"}
    assert "JPEG quality" in group.reason  # big.png (lossless) beat the quality-20 JPEG
    # equal pixels and quality: the older file; equal times too: the shorter path
    (tmp_path / "sub").mkdir()
    for name in ("sub/copy.png", "copy.png"):
        photo(1, (20, 20)).save(tmp_path / name)
    os.utime(tmp_path / "sub/copy.png", (1_000_000, 1_000_000))
    os.utime(tmp_path / "copy.png", (2_000_000, 2_000_000))
    paths = ["sub/copy.png", "copy.png"]
    (group,) = find_duplicates(np.repeat(v, 2, 0), 0.9, paths=paths, root=tmp_path)
    assert group.keep == "sub/copy.png" and "oldest file" in group.reason
    (group,) = find_duplicates(
        np.repeat(v, 2, 0), 0.9, paths=paths, root=tmp_path, keep="shortest-path"
    )
    assert group.keep == "copy.png" and "shortest path" in group.reason
    os.utime(tmp_path / "sub/copy.png", (2_000_000, 2_000_000))
    (group,) = find_duplicates(np.repeat(v, 2, 0), 0.9, paths=paths, root=tmp_path)
    assert group.keep == "copy.png"


def test_move_duplicates_dry_run_real_run_and_no_overwrite(tmp_path: Path) -> None:
    root, dest = tmp_path / "photos", tmp_path / "dups"
    for name in ("a/x.png", "a/x_copy.png", "b/x2.png", "y.png", "y_copy.png", "z.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        photo(ord(name[0]), (30, 20)).save(root / name)
    x = unit(np.array([[1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0], [0, 1, 0.01], [0, 0, 1]]))
    paths = ["a/x.png", "a/x_copy.png", "b/x2.png", "y.png", "y_copy.png", "z.png"]
    groups = find_duplicates(x, 0.99, paths=paths, root=root)
    assert [len(g) for g in groups] == [3, 2]

    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    plan = move_duplicates(groups, root, dest)  # dry run by default
    assert len(plan) == 3
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == before
    assert not dest.exists()

    (dest / groups[1].duplicates[0]).parent.mkdir(parents=True)
    (dest / groups[1].duplicates[0]).write_bytes(b"already here")
    with pytest.raises(DataError, match="never overwritten"):
        move_duplicates(groups, root, dest, dry_run=False)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == before
    (dest / groups[1].duplicates[0]).unlink()

    moved = move_duplicates(groups, root, dest, dry_run=False)
    assert moved == plan
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert left == sorted([g.keep for g in groups] + ["z.png"])
    for group in groups:
        for path in group.duplicates:
            assert (dest / path).is_file() and not (root / path).exists()
    with pytest.raises(DataError, match="does not exist"):
        move_duplicates(groups, root, dest, dry_run=False)  # sources are gone now


def test_undo_restores_every_move_and_is_safe_to_repeat(tmp_path: Path) -> None:
    root, dest = tmp_path / "photos", tmp_path / "dups"
    paths = ["a/x.png", "a/x_copy.png", "b/x2.png", "y.png"]
    for name in paths:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        photo(ord(name[-5]), (30, 20)).save(root / name)
    x = unit(np.array([[1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0]]))
    groups = find_duplicates(x, 0.99, paths=paths, root=root)
    before = {p: (root / p).read_bytes() for p in paths}
    manifest = tmp_path / "moves.json"
    moved = move_duplicates(groups, root, dest, dry_run=False, manifest=manifest)
    assert len(moved) == 2 and manifest.is_file()
    record = json.loads(manifest.read_text())
    assert record["format"] == MANIFEST_FORMAT and len(record["moves"]) == 2
    assert {m["kept"] for m in record["moves"]} == {groups[0].keep}

    preview = undo_moves(manifest, dry_run=True)
    assert len(preview.restored) == 2 and not any((root / p).exists() for p in groups[0].duplicates)
    done = undo_moves(manifest)
    assert len(done.restored) == 2 and done.problems == [] and done.in_place == 0
    assert {p: (root / p).read_bytes() for p in paths} == before
    again = undo_moves(manifest)
    assert again.restored == [] and again.in_place == 2 and again.problems == []

    # A file that came back meanwhile is never overwritten.
    move_duplicates(groups, root, dest, dry_run=False, manifest=manifest)
    clash = root / groups[0].duplicates[0]
    clash.write_bytes(b"new file")
    result = undo_moves(manifest)
    assert len(result.restored) == 1 and len(result.problems) == 1
    assert "exists again" in result.problems[0] and clash.read_bytes() == b"new file"
    with pytest.raises(DataError, match="cannot undo"):
        undo_moves(root / "y.png")


def _overlaid(image: Image.Image) -> Image.Image:
    """The same photo with a caption drawn on it (as a reposted copy would carry)."""
    from PIL import ImageDraw, ImageFont

    copy = image.copy()
    draw = ImageDraw.Draw(copy)
    font = ImageFont.load_default(size=max(12, image.height // 8))
    draw.text((8, image.height * 3 // 4), "SALE 50% OFF", fill="white", font=font)
    return copy


def test_keep_rule_prefers_the_clean_original_over_an_overlaid_copy(
    tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    """The old rule (most pixels, then largest file) kept the overlaid copy: it is larger."""
    v = unit(np.ones((1, 8)))
    for name, array in photos.items():
        original = Image.fromarray(array).convert("RGB")
        original.thumbnail((320, 320))
        original.save(tmp_path / f"{name}.jpg", quality=90)
        _overlaid(original).save(tmp_path / f"{name}_text.jpg", quality=90)
        paths = [f"{name}_text.jpg", f"{name}.jpg"]
        assert (tmp_path / paths[0]).stat().st_size > (tmp_path / paths[1]).stat().st_size
        (group,) = find_duplicates(np.repeat(v, 2, 0), 0.9, paths=paths, root=tmp_path)
        assert group.keep == f"{name}.jpg", (name, group.reason)
        assert "overlay" in group.reason
        (group,) = find_duplicates(
            np.repeat(v, 2, 0), 0.9, paths=paths, root=tmp_path, keep="largest"
        )
        assert group.keep == f"{name}_text.jpg"  # the rule asked for


def test_keep_rule_border_blur_and_resize(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    from PIL import ImageFilter, ImageOps

    original = Image.fromarray(next(iter(photos.values()))).convert("RGB")
    original.thumbnail((320, 320))
    original.save(tmp_path / "photo.png")
    ImageOps.expand(original, border=24, fill="black").save(tmp_path / "framed.png")
    original.filter(ImageFilter.GaussianBlur(2)).save(tmp_path / "blurred.png")
    original.resize((original.width // 2, original.height // 2)).save(tmp_path / "small.png")
    for other, words in (("framed", "border"), ("blurred", ""), ("small", "most pixels")):
        order, reason, _ = rank_copies([f"{other}.png", "photo.png"], tmp_path)
        assert order[0] == 1, (other, reason)
        assert words in reason
    assert not any(f.overlay for f in rank_copies(["blurred.png", "photo.png"], tmp_path)[2])
    with pytest.raises(ValueError, match="keep rule"):
        rank_copies(["photo.png"], tmp_path, "best")  # type: ignore[arg-type]


def test_html_contact_sheet_is_self_contained(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    names = ["a&b <1>.png", "a&b copy.png", "gone.png"]
    for name in names[:2]:
        photo(3, (64, 48)).save(root / name)
    x = unit(np.ones((3, 4)))
    groups = find_duplicates(x, 0.9, paths=names, root=root)
    out = write_dedup_html(groups, root, tmp_path / "report" / "dups.html", threshold=0.9)
    text = out.read_text()
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', text)
    assert len(images) == 2  # the missing file gets a placeholder
    Image.open(io.BytesIO(base64.b64decode(images[0]))).verify()
    assert "unreadable" in text and "a&amp;b &lt;1&gt;.png" in text and "<1>" not in text
    assert not re.search(r'(src|href)="(https?:|//)', text)
    assert "keep" in text and "duplicate" in text and "cosine" in text


# --------------------------------------------------------------------------- edits & calibration


def test_near_duplicates_are_seeded_and_within_ranges() -> None:
    image = photo(5, (200, 150))
    a = near_duplicates(image, 6, seed=3)
    b = near_duplicates(image, 6, seed=3)
    assert [d.edits for d in a] == [d.edits for d in b]
    assert all(
        np.array_equal(np.asarray(p.image), np.asarray(q.image)) for p, q in zip(a, b, strict=True)
    )
    assert all(1 <= len(d.edits) <= 3 and d.image.mode == "RGB" for d in a)
    assert all("flip" not in d.description for d in near_duplicates(image, 30, seed=0))

    rng = np.random.default_rng(0)
    for _ in range(20):
        out, text = apply_edit(image, "crop", rng)
        assert 0.78 <= out.size[0] * out.size[1] / (200 * 150) <= 0.96, text
        out, text = apply_edit(image, "resize", rng)
        assert 0.29 <= out.size[0] / 200 <= 0.81, text
        out, text = apply_edit(image, "rotate", rng)
        assert out.size[0] >= 0.85 * 200 and abs(float(text.split()[1][:-1])) <= 5
        q = int(apply_edit(image, "jpeg", rng)[1].split("=")[1])
        assert 30 <= q <= 90
    for kind in (*EDIT_KINDS, "flip"):
        out, _ = apply_edit(image, kind, rng)
        assert out.mode == "RGB" and min(out.size) >= 16
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit(image, "blur", rng)
    with pytest.raises(ValueError, match="kinds"):
        near_duplicates(image, 1, kinds=("crop", "sharpen"))


class ThumbEmbedder:
    """A fast stand-in model: 8×8 grayscale thumbnail, centred, L2-normalised."""

    def embed(self, images: list[object], *, batch_size: int = 32) -> np.ndarray:
        rows = []
        for image in images:
            v = np.asarray(load_image(image, mode="L").resize((8, 8)), np.float32).ravel()
            rows.append(v - v.mean())
        return unit(np.stack(rows))


def test_calibration_scores_pairs_and_picks_a_separating_threshold() -> None:
    photos = [photo(s, (96, 72)) for s in range(6)]
    cal = calibrate_dedup_threshold(
        ThumbEmbedder(), photos, edits_per_photo=3, seed=0, kinds=("jpeg", "color", "resize")
    )
    assert len(cal.positive_scores) == 18 and len(cal.edits) == 18
    assert len(cal.negative_scores) == 15 * 16  # photo pairs × (1 + 3)²
    assert (cal.precision, cal.recall, cal.f1) == pair_metrics(
        cal.positive_scores, cal.negative_scores, cal.threshold
    )
    assert cal.precision >= 0.9 and cal.recall >= 0.9
    assert "threshold" in cal.summary()
    strict = calibrate_dedup_threshold(
        ThumbEmbedder(), photos, edits_per_photo=3, seed=0, target_recall=0.5
    )
    assert strict.recall >= 0.5
    assert np.count_nonzero(strict.positive_scores > strict.threshold) <= 9
    with pytest.raises(ValueError):
        calibrate_dedup_threshold(ThumbEmbedder(), photos[:1])


class Named(ThumbEmbedder):
    """A stand-in engine with a name and stored thresholds."""

    def __init__(self, name: str, thresholds: dict[str, float]) -> None:
        self.name = name
        self.thresholds = thresholds


def test_dedup_threshold_is_given_else_stored_else_the_default() -> None:
    assert dedup_threshold(Named("x", {"dedup": 0.9}), 0.5) == (0.5, "given")
    assert dedup_threshold(Named("x", {"dedup": 0.9})) == (0.9, "stored with the model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default model's own default: no warning
        threshold, how = dedup_threshold(Named("mobilenet_v2", {"cosine": 0.5}))
    assert (threshold, how) == (DEFAULT_DEDUP_THRESHOLD, "default (calibrated for mobilenet_v2)")
    with pytest.warns(UserWarning, match="folder/model has no calibrated dedup threshold"):
        assert dedup_threshold(Named("folder/model", {}))[0] == DEFAULT_DEDUP_THRESHOLD


# --------------------------------------------------------------------------- real model


def skimage_photos() -> dict[str, np.ndarray]:
    from skimage import data

    def rgb(image: np.ndarray) -> np.ndarray:
        return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]

    names = [
        "chelsea", "coffee", "astronaut", "rocket", "camera", "coins",
        "hubble_deep_field", "immunohistochemistry", "moon", "page",
    ]  # fmt: skip
    return {name: rgb(getattr(data, name)()) for name in names}


def test_default_threshold_with_the_default_model(tmp_path: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    """Edits never seen by the threshold's calibration: 10 photos, 2 edits each (30 images)."""
    root = tmp_path / "photos"
    root.mkdir()
    owner = {}
    for p, (name, array) in enumerate(skimage_photos().items()):
        Image.fromarray(array).save(root / f"{name}.png")
        owner[f"{name}.png"] = name
        for k, copy in enumerate(near_duplicates(array, 2, seed=1000 + p)):
            copy.image.save(root / f"{name}_edit{k}.jpg", quality=85)
            owner[f"{name}_edit{k}.jpg"] = name
    past = time.time() - 60
    for f in root.iterdir():
        os.utime(f, (past, past))

    index = Index.create(tmp_path / "idx", root, model_key="mobilenet_v2", dim=1280)
    report = index.update(default_model, batch_size=8)
    assert len(report.added) == 30

    snap = index.vectors()
    who = np.asarray([owner[p] for p in snap.paths])
    edit = np.asarray(["_edit" in p for p in snap.paths])
    scores = snap.vectors @ snap.vectors.T
    originals = {owner[p]: i for i, p in enumerate(snap.paths) if "_edit" not in p}
    pos = np.asarray([scores[i, originals[who[i]]] for i in np.flatnonzero(edit)])
    a, b = np.triu_indices(len(who), k=1)
    neg = scores[a, b][who[a] != who[b]]
    precision, recall, _ = pair_metrics(pos, neg, DEFAULT_DEDUP_THRESHOLD)
    assert precision >= 0.95 and recall >= 0.95, (pos.min(), neg.max())

    groups = dedup_index(index, DEFAULT_DEDUP_THRESHOLD)
    for group in groups:  # no two distinct photos grouped
        assert len({owner[p] for p in group.paths}) == 1, group.paths
    grouped_edits = sum(len(g) - 1 for g in groups)
    assert grouped_edits >= 0.95 * 20
    wrong = [(g.paths, g.reason) for g in groups if "_edit" in g.keep]
    assert not wrong, wrong
    index.close()
