"""Choosing the validation split from the data: identities when there are enough, else images."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.data import LabelledImages, split_by_identity, split_by_image
from lookalike.data.split import MIN_VAL_IDENTITIES, choose_split, split


def _data(n_ids: int, per_id: int = 3, empty: int = 0) -> LabelledImages:
    """``n_ids`` identities with ``per_id`` flat images each (image i filled with i mod 256),
    plus ``empty`` classes without images."""
    labels = np.repeat(np.arange(n_ids), per_id)
    classes = [f"id{k}" for k in range(n_ids + empty)]
    images = np.broadcast_to(
        (np.arange(len(labels)) % 256).astype(np.uint8)[:, None, None], (len(labels), 2, 2)
    )
    return LabelledImages.from_arrays(images, labels, classes)


def test_few_identities_hold_out_images_and_say_so() -> None:
    choice = choose_split(_data(4), 0.2)
    assert choice.kind == "image" and choice.chosen and choice.identities == 4
    assert not choice.covers_new_identities
    assert "these identities only" in choice.reason and "not new ones" in choice.reason
    assert "20 %" in choice.reason and choice.reason.startswith("4 identities")


def test_many_identities_hold_out_identities() -> None:
    choice = choose_split(_data(48), 0.2)
    assert choice.kind == "identity" and choice.chosen and choice.identities == 48
    assert choice.covers_new_identities
    assert "holds out 10 of 48 identities" in choice.reason
    assert "never trained on" in choice.reason and "rough" not in choice.reason


def test_the_threshold_is_min_val_identities_held_out() -> None:
    """round(n × fraction) held-out identities must reach MIN_VAL_IDENTITIES (8)."""
    assert MIN_VAL_IDENTITIES == 8
    assert choose_split(_data(40), 0.2).kind == "identity"  # 8 held out
    assert choose_split(_data(37), 0.2).kind == "image"  # round(7.4) = 7 held out
    assert choose_split(_data(16), 0.5).kind == "identity"  # 8 of 16
    assert choose_split(_data(14), 0.5).kind == "image"  # 7 of 14


def test_identities_without_images_do_not_count() -> None:
    choice = choose_split(_data(4, empty=60), 0.2)
    assert choice.kind == "image" and choice.identities == 4


def test_a_given_split_is_kept_with_its_caveat() -> None:
    few = choose_split(_data(6), 0.2, given="identity")
    assert few.kind == "identity" and few.chosen is False
    assert "holds out 2 of 6 identities" in few.reason
    assert "rough estimate" in few.reason
    many = choose_split(_data(48), 0.2, given="image")
    assert many.kind == "image" and many.chosen is False
    assert "these identities only" in many.reason


def test_bad_fraction_is_a_value_error() -> None:
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            choose_split(_data(10), fraction)


def _numbered(side: LabelledImages) -> list[int]:
    """The images' numbers (each image is filled with its index in :func:`_data`)."""
    return [int(image[0, 0]) for image in side.sources]


def test_split_by_name_is_the_named_split() -> None:
    data = _data(20, per_id=5)
    for kind, function in (("identity", split_by_identity), ("image", split_by_image)):
        train, val = split(data, kind, 0.25, seed=3)
        expected_train, expected_val = function(data, 0.25, seed=3)
        assert _numbered(train) == _numbered(expected_train)
        assert _numbered(val) == _numbered(expected_val)
        assert val.labels.tolist() == expected_val.labels.tolist()
    _, by_identity = split(data, "identity", 0.25, seed=3)
    _, by_image = split(data, "image", 0.25, seed=3)
    assert len(set(by_identity.labels.tolist())) == 5
    assert len(set(by_image.labels.tolist())) == 20
