"""MNIST: reading its IDX files, and downloading them for online users.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped) are
read with their magic numbers and sizes checked, so a truncated or wrong file is
reported by name rather than turned into garbage images.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from lookalike._io import download_verified, offline_mode
from lookalike.errors import DataError

__all__ = ["DEFAULT_MIRROR", "MNIST_FILES", "download_mnist", "read_idx", "read_mnist"]

DEFAULT_MIRROR: str = "https://ossci-datasets.s3.amazonaws.com/mnist/"
"""Where :func:`download_mnist` fetches the files from (torchvision's mirror)."""

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""The gzipped MNIST files and their md5 checksums."""

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike[str], magic: int) -> npt.NDArray[np.uint8]:
    """Read one unsigned-byte IDX file (plain or gzipped), checking its header.

    Args:
        path: The file; a name ending in ``.gz`` is decompressed.
        magic: The expected magic number (2051 for images, 2049 for labels).

    Returns:
        uint8 array of the shape the header gives, e.g. (N, 28, 28) or (N,).

    Raises:
        DataError: The file cannot be read, or its magic number or size is wrong.
    """
    file = Path(path)
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as handle:
                data = handle.read()
        else:
            data = file.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read MNIST file {file}: {exc}; download it again") from exc
    if len(data) < 4:
        raise DataError(f"MNIST file {file} is truncated ({len(data)} bytes); download it again")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(
            f"MNIST file {file} has magic number {found}, expected {magic}; it is not an "
            "MNIST IDX file of this kind (or is corrupt): download it again"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"MNIST file {file} is truncated in its header; download it again")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"MNIST file {file} has {len(data)} bytes but its header {shape} needs "
            f"{expected}; it is truncated or corrupt: download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_mnist(
    data_dir: str | os.PathLike[str],
    *,
    split: Literal["train", "test"] = "train",
    limit: int | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Read the images and labels of one MNIST split.

    Args:
        data_dir: Folder holding the IDX files (plain or ``.gz``).
        split: ``"train"`` or ``"test"``.
        limit: Keep only the first ``limit`` images (a positive integer), or all.

    Returns:
        Images, uint8 (N, 28, 28) (any rows × columns the header gives), and labels,
        uint8 (N,) in 0..9.

    Raises:
        DataError: A file is missing or corrupt, the counts differ, or a label is over 9.
        ValueError: ``split`` or ``limit`` is invalid.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    folder = Path(data_dir)
    image_file = _find(folder, f"{_PREFIX[split]}-images-idx3-ubyte")
    label_file = _find(folder, f"{_PREFIX[split]}-labels-idx1-ubyte")
    images = read_idx(image_file, _IMAGES_MAGIC)
    labels = read_idx(label_file, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"MNIST files disagree: {image_file} holds {len(images)} images but "
            f"{label_file} holds {len(labels)} labels; download them again"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataError(f"MNIST file {label_file} holds a label over 9; download it again")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def download_mnist(data_dir: str | os.PathLike[str], *, mirror: str = DEFAULT_MIRROR) -> Path:
    """Download the four gzipped MNIST files into ``data_dir`` (files present are kept).

    Each file is written to a temporary name, checked (md5 and IDX header) and then
    renamed, so an interrupted download never leaves a partial file under the real name.

    Args:
        data_dir: Folder to download into (created if needed).
        mirror: Base URL the file names are appended to.

    Returns:
        ``data_dir``, ready for :meth:`LabelledImages.from_mnist`.

    Raises:
        DataError: Offline mode is on, the network fails, or a file is corrupt; the
            message says how to get the files by hand.
    """
    folder = Path(data_dir)
    base = mirror if mirror.endswith("/") else mirror + "/"
    missing = [name for name in MNIST_FILES if not _present(folder, name.removesuffix(".gz"))]
    if not missing:
        return folder
    how = (
        f"download {', '.join(base + n for n in missing)} on a machine with internet "
        f"access and copy them into {folder} (gzipped or not)"
    )
    if offline_mode():
        raise DataError(
            f"MNIST is not in {folder} and offline mode is on (LOOKALIKE_OFFLINE); {how}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in missing:
        try:
            _fetch(base + name, folder / name, MNIST_FILES[name])
        except OSError as exc:  # URLError, timeouts and refused connections are OSErrors
            raise DataError(f"downloading {base + name} failed ({exc}); {how}") from exc
    return folder


def _present(folder: Path, stem: str) -> bool:
    """Whether ``stem`` or ``stem.gz`` exists in ``folder``."""
    return (folder / stem).is_file() or (folder / f"{stem}.gz").is_file()


def _find(folder: Path, stem: str) -> Path:
    """Return the plain or gzipped file ``stem`` in ``folder``.

    Raises:
        DataError: Neither exists.
    """
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"MNIST file {folder / stem} (or {stem}.gz) not found; call "
        f"lookalike.data.download_mnist({str(folder)!r}) or copy the files from "
        f"{DEFAULT_MIRROR} into {folder}"
    )


def _fetch(url: str, target: Path, md5: str) -> None:
    """Download ``url`` to ``target`` atomically, checking its md5 and IDX header.

    Raises:
        OSError: The download failed.
        DataError: The file does not match its checksum.
    """

    def check(tmp: Path, sha256: str) -> None:
        digest = hashlib.md5(tmp.read_bytes(), usedforsecurity=False).hexdigest()
        if digest != md5:
            raise DataError(f"downloaded {url} has md5 {digest}, expected {md5}; try again")
        read_idx(tmp, _IMAGES_MAGIC if "images" in target.name else _LABELS_MAGIC)

    download_verified(url, target, sha256=None, timeout=60, check=check)
