"""MNIST IDX files: reading them back, corruption, and the offline download path."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from lookalike.data import LabelledImages, download_mnist, mnist
from lookalike.errors import DataError


def _idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
        data = _idx(array, magic)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


@pytest.fixture()
def tiny() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = (np.arange(12) % 10).astype(np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path: Path, tiny: tuple[np.ndarray, np.ndarray], gz: bool) -> None:
    images, labels = tiny
    _write(tmp_path, "train", images, labels, gz=gz)
    _write(tmp_path, "t10k", images[:5], labels[:5], gz=gz)
    data = LabelledImages.from_mnist(tmp_path)
    assert data.classes == [str(d) for d in range(10)]
    assert len(data) == 12
    assert np.array_equal(np.stack(data.sources), images)  # type: ignore[arg-type]
    assert data.labels.tolist() == labels.tolist()
    assert len(LabelledImages.from_mnist(tmp_path, split="test")) == 5
    assert len(LabelledImages.from_mnist(tmp_path, limit=3)) == 3


def test_corrupt_files_are_named(tmp_path: Path, tiny: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = tiny
    _write(tmp_path, "train", images, labels, gz=False)
    image_file = tmp_path / "train-images-idx3-ubyte"
    good = image_file.read_bytes()

    image_file.write_bytes(struct.pack(">I", 2049) + good[4:])  # the labels' magic
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has magic number 2049"):
        LabelledImages.from_mnist(tmp_path)

    image_file.write_bytes(good[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte .*truncated"):
        LabelledImages.from_mnist(tmp_path)

    image_file.unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz"):
        LabelledImages.from_mnist(tmp_path)


def test_counts_must_agree_and_files_must_exist(
    tmp_path: Path, tiny: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = tiny
    with pytest.raises(DataError, match="download_mnist"):
        LabelledImages.from_mnist(tmp_path)
    _write(tmp_path, "train", images, labels[:5], gz=False)
    with pytest.raises(DataError, match=r"12 images but .* 5 labels"):
        LabelledImages.from_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        LabelledImages.from_mnist(tmp_path, split="val")  # type: ignore[arg-type]


def test_download_offline_explains_how(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="offline mode is on") as info:
        download_mnist(tmp_path / "mnist")
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert not (tmp_path / "mnist").exists()


def test_download_network_failure_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKALIKE_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(DataError, match="failed"):
        download_mnist(tmp_path, mirror="http://127.0.0.1:9/")
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_download_checks_md5_and_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: tuple[np.ndarray, np.ndarray]
) -> None:
    monkeypatch.setenv("LOOKALIKE_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    mirror = tmp_path / "mirror"  # served through file:// URLs: real urllib, no network
    _write(mirror, "train", *tiny, gz=True)
    _write(mirror, "t10k", *tiny, gz=True)
    for name in mnist.MNIST_FILES:
        digest = hashlib.md5((mirror / name).read_bytes(), usedforsecurity=False).hexdigest()
        monkeypatch.setitem(mnist.MNIST_FILES, name, digest)
    first = "train-images-idx3-ubyte.gz"
    good = mnist.MNIST_FILES[first]
    monkeypatch.setitem(mnist.MNIST_FILES, first, "0" * 32)
    with pytest.raises(DataError, match=f"md5 {good}, expected 0"):
        download_mnist(tmp_path / "data", mirror=mirror.as_uri())
    assert not list((tmp_path / "data").iterdir())  # the bad file is gone, no temporary
    monkeypatch.setitem(mnist.MNIST_FILES, first, good)
    assert download_mnist(tmp_path / "data", mirror=mirror.as_uri()) == tmp_path / "data"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(mnist.MNIST_FILES)


def test_download_keeps_files_present(tmp_path: Path, tiny: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = tiny
    _write(tmp_path, "train", images, labels, gz=True)
    _write(tmp_path, "t10k", images, labels, gz=False)
    assert download_mnist(tmp_path) == tmp_path  # nothing to fetch, even offline
