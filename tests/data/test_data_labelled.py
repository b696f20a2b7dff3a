"""LabelledImages: identity folders, arrays, scikit-learn digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.data import LabelledImages
from lookalike.errors import DataError


def test_from_folder_lists_identities_without_decoding(identity_tree: Path) -> None:
    data = LabelledImages.from_folder(identity_tree)
    assert data.classes == ["alice", "bob", "carol"]
    names = [Path(str(s)).relative_to(identity_tree).as_posix() for s in data.sources]
    assert names == [
        "alice/a1.png",
        "alice/a2.png",
        "alice/more/a3.png",
        "bob/b1.png",
        "bob/b2.png",
        "carol/c1.png",
    ]
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert data.counts().tolist() == [3, 2, 1]
    assert len(data) == 6
    assert data.root == identity_tree
    assert all(isinstance(s, str) for s in data.sources)
    assert set(data.dropped) == {"dave"}  # the empty identity folder
    assert "no images" in data.dropped["dave"]


def test_from_folder_drops_small_identities_and_reports_them(identity_tree: Path) -> None:
    data = LabelledImages.from_folder(identity_tree, min_images=2)
    assert data.classes == ["alice", "bob"]
    assert data.counts().tolist() == [3, 2]
    assert set(data.dropped) == {"carol", "dave"}
    assert "only 1 image" in data.dropped["carol"]
    assert "min_images=2" in data.dropped["carol"]


def test_from_folder_include_exclude_are_relative_to_root(identity_tree: Path) -> None:
    data = LabelledImages.from_folder(identity_tree, exclude=("*/more/*",))
    assert data.counts().tolist() == [2, 2, 1]
    only_bob = LabelledImages.from_folder(identity_tree, include=("bob/*",))
    assert only_bob.classes == ["bob"]
    assert set(only_bob.dropped) == {"alice", "carol", "dave"}


def test_from_folder_bad_layouts(tmp_path: Path, write_png) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="does not exist"):
        LabelledImages.from_folder(tmp_path / "nope")
    file = write_png(tmp_path / "one.png")
    with pytest.raises(DataError, match="not a folder"):
        LabelledImages.from_folder(file)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no identity sub-folders"):
        LabelledImages.from_folder(empty)
    flat = tmp_path / "flat"
    write_png(flat / "x.png")
    with pytest.raises(DataError, match="no identity sub-folders"):
        LabelledImages.from_folder(flat)
    no_images = tmp_path / "no_images"
    (no_images / "alice").mkdir(parents=True)
    (no_images / "alice" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no images found"):
        LabelledImages.from_folder(no_images)


def test_from_folder_everything_dropped_is_an_error(identity_tree: Path) -> None:
    with pytest.raises(DataError, match="min_images=4"):
        LabelledImages.from_folder(identity_tree, min_images=4)
    with pytest.raises(ValueError, match="min_images"):
        LabelledImages.from_folder(identity_tree, min_images=0)


def test_from_arrays_stack_and_list() -> None:
    stack = np.zeros((4, 5, 6), dtype=np.uint8)
    data = LabelledImages.from_arrays(stack, [0, 2, 2, 1])
    assert data.classes == ["0", "1", "2"]
    assert data.counts().tolist() == [1, 1, 2]
    assert data.sources[0].shape == (5, 6)  # type: ignore[union-attr]

    images = [np.zeros((3, 3, 3), np.uint8), np.zeros((7, 2), np.uint8)]
    named = LabelledImages.from_arrays(images, ["zebra", "ant"])
    assert named.classes == ["ant", "zebra"]
    assert named.labels.tolist() == [1, 0]

    given = LabelledImages.from_arrays(stack, [0, 0, 1, 1], classes=["x", "y"])
    assert given.classes == ["x", "y"]


def test_from_arrays_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="uint8"):
        LabelledImages.from_arrays([np.zeros((3, 3), np.float32)], [0])
    with pytest.raises(DataError, match=r"shape \(N, H, W\)"):
        LabelledImages.from_arrays(np.zeros((3, 3), np.uint8), [0, 1, 2])
    with pytest.raises(DataError, match="labels must have shape"):
        LabelledImages.from_arrays(np.zeros((2, 3, 3), np.uint8), [0])
    with pytest.raises(DataError, match="index the 2 classes"):
        LabelledImages.from_arrays(np.zeros((2, 3, 3), np.uint8), [0, 2], classes=["a", "b"])


def test_subset_keeps_classes_and_constructor_validates() -> None:
    data = LabelledImages.from_arrays(np.zeros((4, 2, 2), np.uint8), [0, 1, 2, 2])
    part = data.subset([3, 0])
    assert part.labels.tolist() == [2, 0]
    assert part.classes == data.classes
    assert part.counts().tolist() == [1, 0, 1]
    assert len(data.subset(np.array([True, False, False, True]))) == 2
    with pytest.raises(ValueError, match="labels has 1 entries"):
        LabelledImages(["a.png", "b.png"], np.array([0]), ["x"])
    with pytest.raises(ValueError, match="index classes"):
        LabelledImages(["a.png"], np.array([1]), ["x"])


def test_from_digits() -> None:
    data = LabelledImages.from_digits()
    assert len(data) == 1797
    assert data.classes == [str(d) for d in range(10)]
    assert (data.counts() > 0).all()
    first = data.sources[0]
    assert isinstance(first, np.ndarray)
    assert first.shape == (8, 8) and first.dtype == np.uint8
    values = np.stack([np.asarray(s) for s in data.sources])
    assert values.max() == 255
    # Values 0..16 scaled by 255/16 and rounded: 1 -> 16, 8 -> 128.
    assert set(np.unique(values)) <= {round(v * 255 / 16) for v in range(17)}
