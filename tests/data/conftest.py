"""Fixtures for the data tests: tiny generated images in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WritePng = Callable[..., Path]


@pytest.fixture()
def write_png() -> WritePng:
    """Return a function writing a tiny RGB PNG of one flat colour (parents created)."""

    def write(path: Path, value: int = 128, size: tuple[int, int] = (6, 4)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
        pixels[0, 0] = (255 - value, 0, value)
        Image.fromarray(pixels).save(path)
        return path

    return write


@pytest.fixture()
def identity_tree(tmp_path: Path, write_png: WritePng) -> Path:
    """``root/<identity>/<image>``: alice 3 (one nested), bob 2, carol 1, dave none.

    Also a hidden folder, a file directly in the root and a non-image file, which
    must all be ignored.
    """
    root = tmp_path / "people"
    write_png(root / "alice" / "a1.png", 10)
    write_png(root / "alice" / "a2.png", 20)
    write_png(root / "alice" / "more" / "a3.png", 30)
    write_png(root / "bob" / "b1.png", 40)
    write_png(root / "bob" / "b2.png", 50)
    write_png(root / "carol" / "c1.png", 60)
    (root / "dave").mkdir()
    write_png(root / ".cache" / "x.png", 70)
    write_png(root / "stray.png", 80)
    (root / "bob" / "notes.txt").write_text("not an image")
    return root
