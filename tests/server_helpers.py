"""For the server tests: a tiny model folder, and generated images a pair head can learn."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def small_model_dir(root: Path) -> Path:
    """Save a random-weight 28×28 grayscale small CNN (seed 003's size) and return its folder."""
    from lookalike.model.network import SiameseModel

    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28)
    folder = root / "small-model"
    model.save(folder)
    return folder


def glyph(seed: int, *, noise_seed: int | None = None, size: int = 28) -> np.ndarray:
    """A random 7×7 block glyph scaled to ``size`` px; ``noise_seed`` adds light pixel noise,
    so (glyph(k), glyph(k, noise_seed=j)) is a "same" pair and different ``seed`` "different"."""
    rng = np.random.default_rng(seed)
    cells = (rng.random((7, 7)) > 0.5).astype(np.float64) * 220.0
    image = np.kron(cells, np.ones((size // 7, size // 7)))
    if noise_seed is not None:
        image = image + np.random.default_rng(10_000 + noise_seed).normal(0, 12, image.shape)
    return np.clip(image + 15, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def labelled_pairs(n: int) -> list[tuple[bytes, bytes, str]]:
    """``n`` pairs alternating same (a glyph and a noisy copy) and different (two glyphs)."""
    pairs = []
    for i in range(n):
        if i % 2 == 0:
            pairs.append((png_bytes(glyph(i)), png_bytes(glyph(i, noise_seed=i)), "same"))
        else:
            pairs.append((png_bytes(glyph(i)), png_bytes(glyph(100 + i)), "different"))
    return pairs
