"""Train/validation splits by identity and by image."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.data import LabelledImages, split_by_identity, split_by_image
from lookalike.errors import DataError


def _data(counts: list[int]) -> LabelledImages:
    labels = np.repeat(np.arange(len(counts)), counts)
    return LabelledImages.from_arrays(np.zeros((len(labels), 2, 2), np.uint8), labels)


def test_split_by_identity_is_disjoint_and_deterministic() -> None:
    data = _data([3] * 20)
    train, val = split_by_identity(data, 0.25, seed=1)
    train_ids, val_ids = set(train.labels.tolist()), set(val.labels.tolist())
    assert not train_ids & val_ids
    assert len(val_ids) == 5 and len(train_ids) == 15
    assert len(train) + len(val) == len(data)
    assert train.classes == val.classes == data.classes
    again = split_by_identity(data, 0.25, seed=1)[1]
    assert again.labels.tolist() == val.labels.tolist()
    others = [set(split_by_identity(data, 0.25, seed=s)[1].labels.tolist()) for s in range(2, 6)]
    assert any(o != val_ids for o in others)


def test_split_by_identity_keeps_two_on_each_side() -> None:
    _, val = split_by_identity(_data([2] * 5), 0.01)
    assert len(set(val.labels.tolist())) == 2
    train, _ = split_by_identity(_data([2] * 5), 0.99)
    assert len(set(train.labels.tolist())) == 2
    with pytest.raises(DataError, match="at least 4 identities"):
        split_by_identity(_data([5, 5, 5]))
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_identity(_data([2] * 5), 1.0)


def test_split_by_image_is_stratified() -> None:
    data = _data([10, 20, 5, 1])
    train, val = split_by_image(data, 0.2, seed=3)
    assert val.counts().tolist() == [2, 4, 1, 0]
    assert train.counts().tolist() == [8, 16, 4, 1]
    assert train.classes == val.classes == data.classes
    train_ids = {id(s) for s in train.sources}
    assert not any(id(s) in train_ids for s in val.sources)
    again = split_by_image(data, 0.2, seed=3)[1]
    assert [id(s) for s in again.sources] == [id(s) for s in val.sources]


def test_split_by_image_small_identities_still_give_the_fraction() -> None:
    data = _data([2] * 500)
    train, val = split_by_image(data, 0.2, seed=0)
    assert 0.15 < len(val) / len(data) < 0.25
    assert (train.counts() >= 1).all()  # every identity keeps a training image
    with pytest.raises(DataError, match="empty"):
        split_by_image(_data([1, 1, 1]))
