"""Train/validation splits of :class:`~lookalike.data.labelled.LabelledImages`.

Two questions need two splits. :func:`split_by_identity` holds out whole identities,
which measures what a similarity model is for: telling apart people (or objects) it
has never seen. :func:`split_by_image` holds out some images of every identity, which
measures how well the training identities themselves are learned. Both are pure
functions of their seed, and both halves keep the full ``classes`` list, so a label
means the same identity on either side.

:func:`choose_split` picks one from the data and says why: with few identities, holding
some out leaves a validation set of a handful of identities (a coin toss as an estimate)
and a training set missing whole classes, so it holds out images instead — and says that
the estimate then covers the training identities only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lookalike.data.labelled import LabelledImages
from lookalike.errors import DataError

__all__ = [
    "MIN_VAL_IDENTITIES",
    "SplitChoice",
    "choose_split",
    "identity_folds",
    "split",
    "split_by_identity",
    "split_by_image",
]

MIN_VAL_IDENTITIES = 8
"""Fewest held-out identities for which :func:`choose_split` holds out identities; below
it, the validation estimate would rest on too few identities to say anything about new ones."""

SplitKind = Literal["identity", "image"]


@dataclass(frozen=True)
class SplitChoice:
    """Which split a training run uses, and why (printed by ``lookalike train``).

    Attributes:
        kind: ``"identity"`` (held-out identities) or ``"image"`` (held-out images).
        reason: One sentence for the user.
        identities: Identities with images in the data.
        chosen: ``True`` when the split was chosen from the data, ``False`` when given.
    """

    kind: SplitKind
    reason: str
    identities: int
    chosen: bool

    @property
    def covers_new_identities(self) -> bool:
        """Whether validation figures estimate performance on identities never trained on."""
        return self.kind == "identity"


def choose_split(
    data: LabelledImages, val_fraction: float = 0.2, *, given: SplitKind | None = None
) -> SplitChoice:
    """Choose the validation split from the data (or explain a given one).

    Held-out identities when there are enough of them that ``val_fraction`` of them is at
    least :data:`MIN_VAL_IDENTITIES`; otherwise held-out images of every identity.

    Args:
        data: The training images.
        val_fraction: Share held out, in (0, 1).
        given: A split the user asked for (``--split``): kept, with its caveat.

    Returns:
        The choice with its reason.

    Raises:
        ValueError: ``val_fraction`` is not in (0, 1).
    """
    _check_fraction(val_fraction)
    n = int((data.counts() > 0).sum())
    n_val = min(max(round(n * val_fraction), 2), max(n - 2, 0))
    if given is None:
        kind: SplitKind = "identity" if n_val >= MIN_VAL_IDENTITIES else "image"
    else:
        kind = given
    if kind == "identity":
        reason = (
            f"validation holds out {n_val} of {n} identities, so its figures estimate "
            "performance on identities never trained on"
        )
        if n_val < MIN_VAL_IDENTITIES:
            reason += f" (only {n_val}: a rough estimate, wide interval)"
    else:
        reason = (
            f"{n} identities: validation holds out {val_fraction:.0%} of each identity's "
            "images, so its figures cover these identities only, not new ones"
        ).replace("%", " %", 1)
    return SplitChoice(kind, reason, n, chosen=given is None)


def split(
    data: LabelledImages, kind: SplitKind, val_fraction: float = 0.2, *, seed: int = 0
) -> tuple[LabelledImages, LabelledImages]:
    """:func:`split_by_identity` or :func:`split_by_image`, by name."""
    if kind == "identity":
        return split_by_identity(data, val_fraction, seed=seed)
    return split_by_image(data, val_fraction, seed=seed)


def _check_fraction(val_fraction: float) -> None:
    """Raise ValueError unless ``0 < val_fraction < 1``."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")


def split_by_identity(
    data: LabelledImages, val_fraction: float = 0.2, *, seed: int = 0
) -> tuple[LabelledImages, LabelledImages]:
    """Split so that validation holds whole identities never seen in training.

    ``round(val_fraction × identities)`` identities (at least 2, leaving at least 2)
    are drawn at random for validation; every image of them goes there.

    Args:
        data: The images; only identities with at least one image count.
        val_fraction: Fraction of the identities held out, in (0, 1).
        seed: Seed of the draw; the same seed gives the same split.

    Returns:
        (train, val), each in the original image order, with ``data.classes``.

    Raises:
        DataError: Fewer than 4 identities have images (2 are needed on each side).
        ValueError: ``val_fraction`` is not in (0, 1).
    """
    _check_fraction(val_fraction)
    present = np.flatnonzero(data.counts() > 0)
    if len(present) < 4:
        raise DataError(
            f"split_by_identity needs at least 4 identities with images (2 for training, "
            f"2 for validation) but found {len(present)}; add identities, or use "
            "split_by_image to hold out images of the same identities instead"
        )
    n_val = min(max(round(len(present) * val_fraction), 2), len(present) - 2)
    rng = np.random.default_rng(seed)
    val_ids = rng.permutation(present)[:n_val]
    in_val = np.isin(data.labels, val_ids)
    return data.subset(np.flatnonzero(~in_val)), data.subset(np.flatnonzero(in_val))


def split_by_image(
    data: LabelledImages, val_fraction: float = 0.2, *, seed: int = 0
) -> tuple[LabelledImages, LabelledImages]:
    """Split each identity's images, stratified, so both sides hold the same identities.

    An identity with n images sends ``n × val_fraction`` of them to validation, rounded
    up or down at random in proportion to the fraction (so many small identities still
    give the right overall fraction), and always keeps at least one in training; an
    identity with a single image stays in training.

    Args:
        data: The images.
        val_fraction: Fraction of each identity's images held out, in (0, 1).
        seed: Seed of the draw; the same seed gives the same split.

    Returns:
        (train, val), each in the original image order, with ``data.classes``.

    Raises:
        DataError: The validation side would be empty (every identity has one image,
            or the fraction is too small for the data).
        ValueError: ``val_fraction`` is not in (0, 1).
    """
    _check_fraction(val_fraction)
    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(data), dtype=bool)
    order = np.argsort(data.labels, kind="stable")
    ends = np.cumsum(data.counts())
    for start, end in zip(ends - data.counts(), ends, strict=True):
        members = order[start:end]
        if len(members) < 2:
            continue
        target = len(members) * val_fraction
        n_val = int(np.floor(target)) + int(rng.random() < target - np.floor(target))
        n_val = min(n_val, len(members) - 1)
        in_val[rng.permutation(members)[:n_val]] = True
    if not in_val.any():
        raise DataError(
            f"split_by_image left the validation side empty ({len(data)} images, "
            f"val_fraction={val_fraction}); identities need at least 2 images to be split: "
            "raise val_fraction or add images"
        )
    return data.subset(np.flatnonzero(~in_val)), data.subset(np.flatnonzero(in_val))


def identity_folds(
    data: LabelledImages, folds: int, *, seed: int = 0
) -> list[tuple[LabelledImages, LabelledImages]]:
    """K splits that rotate the held-out identities (each identity is held out once).

    Args:
        data: The images.
        folds: K, at least 2 and at most half the identities.
        seed: Seed of the partition.

    Returns:
        K (train, val) pairs.

    Raises:
        DataError: Too few identities for K folds of at least 2 identities each.
        ValueError: ``folds`` < 2.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    present = np.flatnonzero(data.counts() > 0)
    if len(present) < 2 * folds:
        raise DataError(
            f"{folds} folds need at least {2 * folds} identities (2 held out per fold); "
            f"found {len(present)}"
        )
    groups = np.array_split(np.random.default_rng(seed).permutation(present), folds)
    out = []
    for group in groups:
        held = np.isin(data.labels, group)
        out.append((data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))))
    return out
