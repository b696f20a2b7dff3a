"""A deterministic stand-in model for index and dedup tests: a 4×4 RGB thumbnail, centred and
L2-normalised (48 numbers), with the :class:`~lookalike.inference.embedder.Embedder` members.

It records the name of every file it opens (``seen``), so tests can tell what was embedded; the
index decodes the bytes it has hashed, not a path, and those are recorded as their BLAKE2b-128
hex digest (the index's content hash): :func:`seen_names` turns them back into file names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.imaging.images import DEFAULT_MAX_PIXELS, ImageSource
from lookalike.imaging.preprocess import Preprocess

DIM = 48


@dataclass(frozen=True)
class RecordingPreprocess(Preprocess):
    """4×4 RGB pixels in [0, 1]; each file opened is added to ``seen`` (its name; for bytes,
    their content hash)."""

    input_size: tuple[int, int] = (4, 4)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    seen: list[str] = field(default_factory=list, compare=False, repr=False)

    def load(
        self, source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> np.ndarray:
        out = super().load(source, max_pixels=max_pixels)
        if isinstance(source, (str, Path)):
            self.seen.append(Path(source).name)
        elif isinstance(source, bytes):
            self.seen.append(hashlib.blake2b(source, digest_size=16).hexdigest())
        return out


class PixelEmbedder:
    """The thumbnail as the embedding (an :class:`Embedder` without a network)."""

    embedding_dim = DIM

    def __init__(self) -> None:
        self.preprocess = RecordingPreprocess()
        self.thresholds: dict[str, float] = {}

    @property
    def seen(self) -> list[str]:
        """Names of the files embedded so far (clear it to start counting again)."""
        return self.preprocess.seen

    def embed(
        self, images: Sequence[ImageSource] | np.ndarray, *, batch_size: int = 32
    ) -> np.ndarray:
        if not (isinstance(images, np.ndarray) and images.ndim == 4):
            images = self.preprocess.batch(list(images))
        x = images.reshape(len(images), -1).astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)

    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        return None


def seen_names(embedder: PixelEmbedder, root: Path) -> list[str]:
    """What ``embedder`` embedded, as file names: a content hash becomes the first name (in
    sorted order) of the files under ``root`` holding that content."""
    names: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
            names.setdefault(digest, path.name)
    return [names.get(item, item) for item in embedder.seen]


def random_image(seed: int, size: tuple[int, int] = (40, 32)) -> Image.Image:
    """A smooth random colour image, different for every seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def write(path: Path, seed: int) -> Path:
    """Save :func:`random_image` ``seed`` at ``path`` (its folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    random_image(seed).save(path)
    return path
