"""Pairs and triplets: read from CSV files, or drawn from identity labels.

CSV files name images by path (relative paths resolved against the CSV's folder). Every
named file is checked up front, so a typo fails before any training starts, with the
missing paths listed. :func:`make_pairs` and :func:`make_triplets` draw index pairs and
triplets from labels, deterministically for a seed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookalike.errors import DataError

__all__ = ["PairList", "make_pairs", "make_triplets", "read_pairs_csv", "read_triplets_csv"]

_SAME = frozenset({"1", "same", "true", "yes"})
_DIFFERENT = frozenset({"0", "different", "false", "no"})
_SHOWN = 5


def read_pairs_csv(path: str | os.PathLike[str]) -> Iterator[tuple[int, str, str, str | None]]:
    """Read a pairs CSV with columns ``a,b[,label]`` (a header row is optional).

    Yields:
        (row number, path a, path b, label or None); relative paths resolved against the
        CSV's folder.

    Raises:
        DataError: Missing file, or a row without two columns.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise DataError(f"pairs file {csv_path} does not exist")
    base = csv_path.parent
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if number == 1 and [c.strip().lower() for c in row[:2]] == ["a", "b"]:
                continue
            if len(row) < 2:
                raise DataError(f"{csv_path}:{number}: expected columns a,b[,label], got {row}")
            label = row[2].strip() if len(row) > 2 else None
            yield number, str(base / row[0].strip()), str(base / row[1].strip()), label


def _check_files(csv_path: Path, paths: Sequence[str]) -> None:
    """Raise DataError listing the files named in a CSV that do not exist.

    Args:
        csv_path: The CSV, for the message.
        paths: Every path it names (duplicates allowed).

    Raises:
        DataError: Any path is not a file; the first few are listed.
    """
    unique = list(dict.fromkeys(paths))
    missing = [p for p in unique if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise DataError(
            f"{len(missing)} of the {len(unique)} images named in {csv_path} do not exist: "
            f"{shown}{more}; fix the paths (relative paths are resolved against the CSV's folder)"
        )


@dataclass
class PairList:
    """Labelled image pairs, e.g. read from a CSV.

    Attributes:
        a: First image of each pair (paths), length N.
        b: Second image of each pair (paths), length N.
        labels: float32 array of shape (N,): 1.0 for the same identity, 0.0 for
            different, NaN where the CSV gives no label.
    """

    a: list[str]
    b: list[str]
    labels: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.float32).reshape(-1)
        if not len(self.a) == len(self.b) == len(self.labels):
            raise ValueError(
                f"a, b and labels must have the same length, got "
                f"{len(self.a)}, {len(self.b)} and {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], *, require_labels: bool = True) -> PairList:
        """Read a pairs CSV (columns ``a,b,label``; a header row is optional).

        Labels may be ``1``/``0``, ``same``/``different``, ``true``/``false`` or
        ``yes``/``no``, in any case.

        Args:
            path: The CSV file.
            require_labels: Whether every row must have a label; when ``False``,
                rows without one get NaN.

        Returns:
            The pairs, paths resolved against the CSV's folder.

        Raises:
            DataError: The CSV is missing or empty, a row is malformed, a label is
                missing (when required) or not understood (the row is named), or
                image files do not exist (their count and the first 5 are listed).
        """
        csv_path = Path(path)
        a: list[str] = []
        b: list[str] = []
        labels: list[float] = []
        for number, first, second, label in read_pairs_csv(csv_path):
            a.append(first)
            b.append(second)
            labels.append(_parse_label(csv_path, number, label, require_labels))
        if not a:
            raise DataError(f"pairs file {csv_path} holds no pairs; add rows a,b,label")
        _check_files(csv_path, a + b)
        return cls(a, b, np.asarray(labels, dtype=np.float32))


def _parse_label(csv_path: Path, number: int, label: str | None, required: bool) -> float:
    """Turn one CSV label into 1.0, 0.0 or NaN.

    Raises:
        DataError: The label is missing while required, or not understood.
    """
    if label is None or not label:
        if required:
            raise DataError(
                f"{csv_path}:{number}: the pair has no label; add a third column "
                "(1/0, same/different, true/false or yes/no) or pass require_labels=False"
            )
        return float("nan")
    word = label.lower()
    if word in _SAME:
        return 1.0
    if word in _DIFFERENT:
        return 0.0
    raise DataError(
        f"{csv_path}:{number}: label {label!r} is not understood; use 1/0, "
        "same/different, true/false or yes/no"
    )


def read_triplets_csv(path: str | os.PathLike[str]) -> tuple[list[str], list[str], list[str]]:
    """Read a triplets CSV with columns ``anchor,positive,negative`` (header optional).

    Args:
        path: The CSV file.

    Returns:
        (anchors, positives, negatives), paths resolved against the CSV's folder.

    Raises:
        DataError: The CSV is missing or empty, a row has fewer than 3 columns (the row
            is named), or image files do not exist (count and first 5 listed).
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise DataError(f"triplets file {csv_path} does not exist")
    base = csv_path.parent
    columns: tuple[list[str], list[str], list[str]] = ([], [], [])
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if number == 1 and [c.lower() for c in cells[:3]] == ["anchor", "positive", "negative"]:
                continue
            if len(cells) < 3 or not all(cells[:3]):
                raise DataError(
                    f"{csv_path}:{number}: expected columns anchor,positive,negative, got {row}"
                )
            for column, cell in zip(columns, cells[:3], strict=True):
                column.append(str(base / cell))
    if not columns[0]:
        raise DataError(f"triplets file {csv_path} holds no triplets")
    _check_files(csv_path, columns[0] + columns[1] + columns[2])
    return columns


# ---------------------------------------------------------------------------- mining


class _Groups:
    """Images grouped by label, for vectorised draws of same- and other-label partners."""

    def __init__(self, labels: npt.NDArray[np.int64]) -> None:
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        self.order: npt.NDArray[np.int64] = np.argsort(labels, kind="stable").astype(np.int64)
        self.inverse: npt.NDArray[np.int64] = inverse.reshape(-1).astype(np.int64)
        self.counts: npt.NDArray[np.int64] = counts.astype(np.int64)
        self.starts: npt.NDArray[np.int64] = np.concatenate(
            [[0], np.cumsum(self.counts)[:-1]]
        ).astype(np.int64)
        self.rank: npt.NDArray[np.int64] = np.empty(len(labels), dtype=np.int64)  # within group
        self.rank[self.order] = np.arange(len(labels)) - self.starts[self.inverse[self.order]]

    def same(
        self, anchors: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> npt.NDArray[np.int64]:
        """Draw, per anchor, another image of the same label (groups of ≥ 2 only)."""
        group = self.inverse[anchors]
        k: npt.NDArray[np.int64] = rng.integers(0, self.counts[group] - 1).astype(np.int64)
        k = k + (k >= self.rank[anchors])
        index: npt.NDArray[np.int64] = self.starts[group] + k
        return self.order[index]

    def other(
        self, anchors: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> npt.NDArray[np.int64]:
        """Draw, per anchor, an image of a different label (needs ≥ 2 labels)."""
        group = self.inverse[anchors]
        k: npt.NDArray[np.int64] = rng.integers(0, len(self.order) - self.counts[group]).astype(
            np.int64
        )
        k = k + self.counts[group] * (k >= self.starts[group])
        return self.order[k]


def _labels_array(labels: npt.ArrayLike, count: int, what: str) -> npt.NDArray[np.int64]:
    """Validate labels and a count; return labels as int64 (N,).

    Raises:
        ValueError: Labels are not 1-D integers, or ``count`` is not a positive integer.
    """
    values = np.asarray(labels)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {values.dtype} {values.shape}")
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"{what} must be a positive integer, got {count!r}")
    return values.astype(np.int64)


def make_pairs(
    labels: npt.ArrayLike, n_pairs: int, *, positive_fraction: float = 0.5, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Draw random index pairs with a chosen share of same-identity pairs.

    Exactly ``round(n_pairs × positive_fraction)`` pairs are positive. A positive pair
    starts from an image drawn uniformly among identities with at least 2 images and
    adds another image of its identity; a negative pair starts from any image and adds
    an image of another identity. Pairs are drawn with replacement and shuffled.

    Args:
        labels: Identity of each image, integer array of shape (N,).
        n_pairs: How many pairs, a positive integer.
        positive_fraction: Share of positive pairs in [0, 1] (set it to match the class
            balance you want, e.g. 0.1 for one positive per nine negatives).
        seed: Seed; the same seed gives the same pairs.

    Returns:
        ``(i, j, y)``: int64 (n_pairs,) image indexes with ``i != j``, and float32
        (n_pairs,) labels, 1.0 for the same identity and 0.0 for different.

    Raises:
        DataError: Positives are asked for but no identity has 2 images, or negatives
            are asked for but fewer than 2 identities have images.
        ValueError: Invalid ``labels``, ``n_pairs`` or ``positive_fraction``.
    """
    values = _labels_array(labels, n_pairs, "n_pairs")
    if not 0.0 <= float(positive_fraction) <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
    n_pos = round(n_pairs * float(positive_fraction))
    n_neg = n_pairs - n_pos
    groups = _Groups(values)
    rng = np.random.default_rng(seed)
    i_parts: list[npt.NDArray[np.int64]] = []
    j_parts: list[npt.NDArray[np.int64]] = []
    if n_pos:
        eligible = np.flatnonzero(groups.counts[groups.inverse] >= 2)
        if not len(eligible):
            raise DataError(
                "positive pairs need an identity with at least 2 images, but every identity "
                "has 1; add images or set positive_fraction=0"
            )
        anchors = eligible[rng.integers(0, len(eligible), n_pos)]
        i_parts.append(anchors)
        j_parts.append(groups.same(anchors, rng))
    if n_neg:
        if len(groups.counts) < 2:
            raise DataError(
                f"negative pairs need at least 2 identities, found {len(groups.counts)}; "
                "add identities or set positive_fraction=1"
            )
        anchors = rng.integers(0, len(values), n_neg).astype(np.int64)
        i_parts.append(anchors)
        j_parts.append(groups.other(anchors, rng))
    y = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_neg, np.float32)])
    shuffle = rng.permutation(n_pairs)
    return np.concatenate(i_parts)[shuffle], np.concatenate(j_parts)[shuffle], y[shuffle]


def make_triplets(
    labels: npt.ArrayLike, n_triplets: int, *, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Draw random valid triplets (anchor, positive of its identity, negative of another).

    Anchors are drawn uniformly among images whose identity has at least 2 images.

    Args:
        labels: Identity of each image, integer array of shape (N,).
        n_triplets: How many triplets, a positive integer.
        seed: Seed; the same seed gives the same triplets.

    Returns:
        ``(a, p, n)``, int64 arrays of shape (n_triplets,): ``labels[a] == labels[p]``,
        ``a != p`` and ``labels[n] != labels[a]``.

    Raises:
        DataError: No identity has 2 images, or fewer than 2 identities have images.
        ValueError: Invalid ``labels`` or ``n_triplets``.
    """
    values = _labels_array(labels, n_triplets, "n_triplets")
    groups = _Groups(values)
    eligible = np.flatnonzero(groups.counts[groups.inverse] >= 2)
    if not len(eligible) or len(groups.counts) < 2:
        raise DataError(
            f"triplets need an identity with at least 2 images and at least 2 identities; "
            f"found {len(groups.counts)} identities, {len(np.unique(values[eligible]))} with "
            "2 or more images: add images or identities"
        )
    rng = np.random.default_rng(seed)
    anchors = eligible[rng.integers(0, len(eligible), n_triplets)]
    return anchors, groups.same(anchors, rng), groups.other(anchors, rng)
