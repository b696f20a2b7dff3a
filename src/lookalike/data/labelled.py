"""Labelled images: which image belongs to which identity.

:class:`LabelledImages` is the list every training and evaluation path starts from:
image sources (paths or arrays, not decoded) with an identity label each. It is built
from an identity-folder layout (``root/<identity>/<image>``), from arrays, from MNIST
IDX files or from scikit-learn's bundled digits; decoding it lives in
:mod:`lookalike.data.decode`.

Splits live in :mod:`lookalike.data.split` and MNIST files in :mod:`lookalike.data.mnist`;
:mod:`lookalike.data` is the one re-export surface.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lookalike.data.mnist import read_mnist
from lookalike.errors import DataError
from lookalike.imaging.files import IMAGE_EXTENSIONS, image_folder, iter_image_files
from lookalike.imaging.images import ImageSource

__all__ = ["LabelledImages"]

_DIGITS = [str(d) for d in range(10)]


@dataclass
class LabelledImages:
    """Image sources with an identity (class) label each.

    Attributes:
        sources: N image sources: paths as ``str``, or ``(H, W)`` / ``(H, W, C)`` uint8
            arrays; nothing is decoded.
        labels: int64 array of shape (N,), indexes into ``classes``.
        classes: Identity names; ``classes[labels[i]]`` is the identity of ``sources[i]``.
        root: The folder the images were found in, when there is one.
        dropped: Identities left out while loading (identity -> reason), e.g. those with
            fewer than ``min_images`` images in :meth:`from_folder`.
    """

    sources: list[ImageSource]
    labels: npt.NDArray[np.int64]
    classes: list[str]
    root: Path | None = None
    dropped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = list(self.sources)
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(
                f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
            )
        self.labels = labels.astype(np.int64, copy=False)
        if len(self.labels) != len(self.sources):
            raise ValueError(
                f"labels has {len(self.labels)} entries but there are {len(self.sources)} sources"
            )
        self.classes = [str(c) for c in self.classes]
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be distinct")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) to index classes")

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices: Sequence[int] | npt.NDArray[Any]) -> LabelledImages:
        """Return the images at ``indices`` (in that order), with the same ``classes``.

        Args:
            indices: Integer positions, shape (K,), or a boolean mask, shape (N,).

        Returns:
            A new :class:`LabelledImages` of K images; ``root`` and ``dropped`` are kept.
        """
        index = np.asarray(indices)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False).reshape(-1)
        return LabelledImages(
            sources=[self.sources[int(i)] for i in index],
            labels=self.labels[index].copy(),
            classes=list(self.classes),
            root=self.root,
            dropped=dict(self.dropped),
        )

    def counts(self) -> npt.NDArray[np.int64]:
        """Return the number of images of each class.

        Returns:
            int64 array of shape (n_classes,).
        """
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_folder(
        cls,
        root: str | os.PathLike[str],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        min_images: int = 1,
    ) -> LabelledImages:
        """List an identity-folder layout ``root/<identity>/<image>`` without decoding it.

        Each sub-folder of ``root`` is one identity (sorted by name); its image files are
        found recursively with :func:`lookalike.imaging.files.iter_image_files`. Files directly
        in ``root`` and hidden folders are ignored.

        Args:
            root: The folder holding one sub-folder per identity.
            include: Glob patterns matched against each file's path relative to ``root``
                in POSIX form (``*`` also matches ``/``), e.g. ``"alice/*"``; when given,
                a file must match at least one.
            exclude: Glob patterns as for ``include``; a file matching any is skipped.
            min_images: Identities with fewer images are dropped and reported in
                ``dropped``.

        Returns:
            The images, labelled by identity.

        Raises:
            DataError: ``root`` is missing or not a folder, has no identity sub-folders,
                holds no images at all, or no identity has ``min_images`` images.
            ValueError: ``min_images`` is not a positive integer.
        """
        if isinstance(min_images, bool) or not isinstance(min_images, int) or min_images < 1:
            raise ValueError(f"min_images must be a positive integer, got {min_images!r}")
        base, include, exclude = image_folder(root, include, exclude)
        with os.scandir(base) as scan:
            identities = sorted(e.name for e in scan if not e.name.startswith(".") and e.is_dir())
        if not identities:
            raise DataError(
                f"image folder {base} has no identity sub-folders; lay it out as "
                f"{base}/<identity>/<image>, one sub-folder per identity"
            )
        files: dict[str, list[str]] = {name: [] for name in identities}
        for name in identities:
            for path in iter_image_files(base / name):
                relative = path.relative_to(base).as_posix()
                if include and not any(fnmatch.fnmatchcase(relative, p) for p in include):
                    continue
                if any(fnmatch.fnmatchcase(relative, p) for p in exclude):
                    continue
                files[name].append(str(path))
        if not any(files.values()):
            raise DataError(
                f"no images found in the {len(identities)} identity folders of {base} "
                f"(or none matched include/exclude); image files end in one of "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            )
        dropped: dict[str, str] = {}
        for name, paths in files.items():
            if len(paths) < min_images:
                what = "no images" if not paths else f"only {len(paths)} image(s)"
                dropped[name] = f"{what}, fewer than min_images={min_images}"
        kept = [name for name in identities if name not in dropped]
        if not kept:
            raise DataError(
                f"every identity in {base} has fewer than min_images={min_images} images; "
                "lower min_images or add images"
            )
        sources: list[ImageSource] = []
        labels: list[int] = []
        for label, name in enumerate(kept):
            sources.extend(files[name])
            labels.extend([label] * len(files[name]))
        return cls(sources, np.asarray(labels, dtype=np.int64), kept, root=base, dropped=dropped)

    @classmethod
    def from_arrays(
        cls,
        images: npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]],
        labels: Sequence[Any] | npt.NDArray[Any],
        classes: Sequence[str] | None = None,
    ) -> LabelledImages:
        """Wrap in-memory uint8 images.

        Args:
            images: uint8 array of shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4, or
                a list of N uint8 arrays of shape (H, W) or (H, W, C) (sizes may differ).
            labels: Shape (N,). With ``classes``: integer indexes into it. Without:
                non-negative integers give classes ``"0"`` .. ``str(max)``; other values
                (e.g. strings) give their sorted distinct values as classes.
            classes: Class names, or ``None``.

        Returns:
            The images (the arrays are referenced, not copied).

        Raises:
            DataError: An image has the wrong dtype or shape, the counts differ, or a
                label does not fit ``classes``.
        """
        if isinstance(images, np.ndarray):
            if images.ndim not in (3, 4):
                raise DataError(
                    f"images must have shape (N, H, W) or (N, H, W, C), got {images.shape}"
                )
            items: list[Any] = list(images)
        else:
            items = list(images)
        for i, item in enumerate(items):
            ok_shape = isinstance(item, np.ndarray) and (
                item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4))
            )
            if not ok_shape or item.dtype != np.uint8:
                got = f"{item.dtype} {item.shape}" if isinstance(item, np.ndarray) else type(item)
                raise DataError(
                    f"image {i} must be a uint8 array of shape (H, W) or (H, W, C), got {got}; "
                    "convert floats in [0, 1] with (x * 255).round().astype(np.uint8)"
                )
        values = np.asarray(labels)
        if values.ndim != 1 or len(values) != len(items):
            raise DataError(f"labels must have shape ({len(items)},), got {values.shape}")
        names, index = _label_classes(values, classes)
        return cls(list(items), index, names)

    @classmethod
    def from_mnist(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        split: Literal["train", "test"] = "train",
        limit: int | None = None,
    ) -> LabelledImages:
        """Read MNIST from its IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``).

        Args:
            data_dir: Folder holding the files (see :func:`lookalike.data.download_mnist`).
            split: ``"train"`` (60,000 images) or ``"test"`` (the ``t10k`` files, 10,000).
            limit: Keep only the first ``limit`` images.

        Returns:
            28×28 uint8 images with classes ``"0"`` .. ``"9"``.

        Raises:
            DataError: A file is missing or corrupt (the message names it).
            ValueError: ``split`` or ``limit`` is invalid.
        """
        images, labels = read_mnist(data_dir, split=split, limit=limit)
        return cls(list(images), labels.astype(np.int64), list(_DIGITS), root=Path(data_dir))

    @classmethod
    def from_digits(cls) -> LabelledImages:
        """Load scikit-learn's bundled 8×8 digits (1,797 images; no download).

        Returns:
            8×8 uint8 images, values 0..16 scaled to 0..255 (×255/16, rounded), with
            classes ``"0"`` .. ``"9"``.

        Raises:
            DataError: scikit-learn is not installed.
        """
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise DataError("from_digits needs scikit-learn: pip install scikit-learn") from exc
        digits = load_digits()
        images = np.rint(np.asarray(digits.images, np.float64) * (255.0 / 16.0)).astype(np.uint8)
        labels = np.asarray(digits.target, dtype=np.int64)
        return cls(list(images), labels, list(_DIGITS))


def _label_classes(
    values: npt.NDArray[Any], classes: Sequence[str] | None
) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Turn user labels into (class names, int64 indexes).

    Args:
        values: Labels, shape (N,).
        classes: Class names, or ``None`` to derive them from ``values``.

    Returns:
        The class names and the labels as indexes, shape (N,).

    Raises:
        DataError: The labels do not fit ``classes``, or integer labels are negative.
    """
    is_int = values.dtype.kind in "iu" or (values.size == 0 and classes is not None)
    if classes is not None:
        names = [str(c) for c in classes]
        if not is_int:
            raise DataError(
                f"with classes given, labels must be integer indexes, got {values.dtype}"
            )
        if values.size and (values.min() < 0 or values.max() >= len(names)):
            raise DataError(
                f"labels must lie in [0, {len(names)}) to index the {len(names)} classes"
            )
        return names, values.astype(np.int64)
    if is_int:
        if values.size and values.min() < 0:
            raise DataError("integer labels must be non-negative (or pass classes)")
        top = int(values.max()) + 1 if values.size else 0
        return [str(i) for i in range(top)], values.astype(np.int64)
    unique, index = np.unique(values.astype(str), return_inverse=True)
    return [str(u) for u in unique], index.astype(np.int64).reshape(-1)
