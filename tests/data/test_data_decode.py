"""decode_all and normalize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.data import LabelledImages, decode_all, normalize
from lookalike.errors import DataError
from lookalike.imaging.preprocess import Preprocess


def test_decode_all_skips_unreadable_images(identity_tree: Path) -> None:
    broken = identity_tree / "bob" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = LabelledImages.from_folder(identity_tree)
    assert len(data) == 7
    decoded = decode_all(data, Preprocess(input_size=(5, 7)))
    assert decoded.pixels.shape == (6, 3, 5, 7)
    assert decoded.pixels.dtype == torch.uint8
    assert decoded.labels.dtype == torch.int64
    assert list(decoded.skipped) == [str(broken)]
    assert "cannot read image" in decoded.skipped[str(broken)]
    assert len(decoded) == 6 == len(decoded.kept)
    assert str(broken) not in decoded.kept.sources
    assert decoded.labels.tolist() == decoded.kept.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert decoded.classes == data.classes
    # Flat colours survive the resize: alice's first image was written with value 10.
    assert int(decoded.pixels[0, 1].median()) == 10


def test_decode_all_grayscale_arrays() -> None:
    images = np.stack([np.full((8, 8), v, np.uint8) for v in (0, 100, 200)])
    data = LabelledImages.from_arrays(images, [0, 1, 1])
    decoded = decode_all(data, Preprocess(input_size=(4, 4), mean=(0.5,), std=(0.5,), channels=1))
    assert decoded.pixels.shape == (3, 1, 4, 4)
    assert decoded.pixels[:, 0, 0, 0].tolist() == [0, 100, 200]
    assert not decoded.skipped


def test_decode_all_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"nope")
    (tmp_path / "a" / "y.jpg").write_bytes(b"")
    data = LabelledImages.from_folder(tmp_path)
    with pytest.raises(DataError, match="none of the 2 images"):
        decode_all(data, Preprocess(input_size=(4, 4)))


def test_normalize() -> None:
    pre = Preprocess(input_size=(2, 2), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    pixels = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(pixels, pre)
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == [1.0, 3.0, 1.0]
    assert torch.equal(normalize(pixels.float() / 255, pre), out)
    with pytest.raises(ValueError, match="shape"):
        normalize(torch.zeros((1, 1, 2, 2), dtype=torch.uint8), pre)
