"""Pairs and triplets: CSV input and draws from labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.data import PairList, make_pairs, make_triplets, read_pairs_csv, read_triplets_csv
from lookalike.errors import DataError

LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])


def test_make_pairs_ratio_and_validity() -> None:
    i, j, y = make_pairs(LABELS, 200, positive_fraction=0.3, seed=5)
    assert i.dtype == j.dtype == np.int64 and y.dtype == np.float32
    assert i.shape == j.shape == y.shape == (200,)
    assert int(y.sum()) == 60
    assert (i != j).all()
    same = LABELS[i] == LABELS[j]
    assert np.array_equal(same, y == 1)
    assert not (LABELS[i[y == 1]] == 2).any()  # identity 2 has a single image
    assert 0 < y[:100].sum() < 60  # positives and negatives are shuffled together
    again = make_pairs(LABELS, 200, positive_fraction=0.3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip((i, j, y), again, strict=True))
    other = make_pairs(LABELS, 200, positive_fraction=0.3, seed=6)
    assert not np.array_equal(i, other[0])


def test_make_pairs_extremes_and_errors() -> None:
    _, _, y = make_pairs(LABELS, 10, positive_fraction=1.0)
    assert y.tolist() == [1.0] * 10
    i, j, y = make_pairs(np.array([0, 1, 2]), 10, positive_fraction=0.0)
    assert y.sum() == 0 and (i != j).all()
    with pytest.raises(DataError, match="at least 2 images"):
        make_pairs(np.array([0, 1, 2]), 10)
    with pytest.raises(DataError, match="at least 2 identities"):
        make_pairs(np.array([4, 4, 4]), 10)
    with pytest.raises(ValueError, match="positive_fraction"):
        make_pairs(LABELS, 10, positive_fraction=1.5)
    with pytest.raises(ValueError, match="n_pairs"):
        make_pairs(LABELS, 0)


def test_make_triplets_are_valid() -> None:
    a, p, n = make_triplets(LABELS, 300, seed=2)
    assert a.shape == p.shape == n.shape == (300,)
    assert (a != p).all()
    assert (LABELS[a] == LABELS[p]).all()
    assert (LABELS[a] != LABELS[n]).all()
    assert set(LABELS[n].tolist()) == {0, 1, 2, 3}
    assert np.array_equal(a, make_triplets(LABELS, 300, seed=2)[0])
    with pytest.raises(DataError, match="triplets need"):
        make_triplets(np.array([0, 1, 2]), 5)


def _images(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).write_bytes(b"x")


def test_pair_list_from_csv(tmp_path: Path) -> None:
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    csv = tmp_path / "pairs.csv"
    csv.write_text("a,b,label\na.png,b.png,Same\na.png,c.png,0\nb.png,c.png,TRUE\nc.png,a.png,no\n")
    pairs = PairList.from_csv(csv)
    assert len(pairs) == 4
    assert pairs.labels.dtype == np.float32
    assert pairs.labels.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert pairs.a[0] == str(tmp_path / "a.png")


def test_pair_list_errors_name_rows_and_files(tmp_path: Path) -> None:
    _images(tmp_path, ["a.png"])
    csv = tmp_path / "pairs.csv"
    csv.write_text("a.png,a.png,1\na.png,a.png,maybe\n")
    with pytest.raises(DataError, match=r"pairs.csv:2: label 'maybe'"):
        PairList.from_csv(csv)

    csv.write_text("a.png,a.png\n")
    with pytest.raises(DataError, match=r"pairs.csv:1: the pair has no label"):
        PairList.from_csv(csv)
    assert np.isnan(PairList.from_csv(csv, require_labels=False).labels).all()

    rows = [f"a.png,missing{k}.png,1" for k in range(7)]
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        PairList.from_csv(csv)
    message = str(info.value)
    assert "7 of the 8 images" in message
    assert "missing0.png" in message and "missing4.png" in message
    assert "missing5.png" not in message and "and 2 more" in message

    with pytest.raises(DataError, match="does not exist"):
        PairList.from_csv(tmp_path / "nope.csv")


def test_read_pairs_csv_is_shared_with_scoring(tmp_path: Path) -> None:
    import lookalike.inference.comparison

    assert lookalike.inference.comparison.read_pairs_csv is read_pairs_csv
    csv = tmp_path / "p.csv"
    csv.write_text("a,b\nx.png,y.png\n\nz.png,w.png,same\n")
    rows = list(read_pairs_csv(csv))
    assert rows == [
        (2, str(tmp_path / "x.png"), str(tmp_path / "y.png"), None),
        (4, str(tmp_path / "z.png"), str(tmp_path / "w.png"), "same"),
    ]


def test_read_triplets_csv(tmp_path: Path) -> None:
    _images(tmp_path, ["a.png", "p.png", "n.png"])
    csv = tmp_path / "t.csv"
    csv.write_text("anchor,positive,negative\na.png,p.png,n.png\np.png,a.png,n.png\n")
    a, p, n = read_triplets_csv(csv)
    assert a == [str(tmp_path / "a.png"), str(tmp_path / "p.png")]
    assert p == [str(tmp_path / "p.png"), str(tmp_path / "a.png")]
    assert n == [str(tmp_path / "n.png")] * 2
    csv.write_text("a.png,p.png,n.png\na.png,p.png\n")
    with pytest.raises(DataError, match=r"t.csv:2: expected columns anchor,positive,negative"):
        read_triplets_csv(csv)
    csv.write_text("a.png,p.png,gone.png\n")
    with pytest.raises(DataError, match=r"1 of the 3 images .*gone.png"):
        read_triplets_csv(csv)
