"""A generated identity dataset that raw pixels cannot solve: each identity is a random 6×6
glyph, drawn at a random position with random contrast on a noisy background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def glyph_images(
    n_ids: int = 10, per_id: int = 24, size: int = 28, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 images (N, size, size) and labels (N,)."""
    rng = np.random.default_rng(seed)
    glyphs = rng.random((n_ids, 6, 6)) > 0.5
    images, labels = [], []
    for k in range(n_ids):
        for _ in range(per_id):
            img = rng.normal(40, 25, (size, size))
            y, x = rng.integers(0, size - 12, 2)
            big = np.kron(glyphs[k], np.ones((2, 2)))
            img[y : y + 12, x : x + 12] += big * rng.uniform(120, 200)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(k)
    return np.stack(images), np.asarray(labels)


def write_identity_folder(root: Path, n_ids: int = 6, per_id: int = 6, seed: int = 0) -> Path:
    """Write glyph images as root/<identity>/<n>.png and return root."""
    images, labels = glyph_images(n_ids, per_id, seed=seed)
    for n, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"id{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{n:03d}.png")
    return root
