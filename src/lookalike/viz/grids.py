"""Grids of images: each query beside the images found closest to it (seed 002)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ImageError
from lookalike.imaging.images import load_image
from lookalike.viz._mpl import pyplot, save

__all__ = ["plot_retrieval_grid"]


def plot_retrieval_grid(
    queries: Sequence[Any],
    results: Sequence[Sequence[tuple[Any, str, float]]],
    path: str | os.PathLike[str],
    *,
    thumb_inches: float = 1.8,
) -> Path:
    """Seed 002's closest-images figure: one row per query, the query then its hits.

    Args:
        queries: Query images (anything :func:`~lookalike.imaging.load_image` opens), Q of them.
        results: Per query, its hits best first as ``(image, caption, score)``.
        path: The PNG to write.
        thumb_inches: Side of one cell in inches.

    Returns:
        The path written. An image that cannot be read is drawn as "unreadable".
    """
    plt = pyplot()
    cols = 1 + max((len(r) for r in results), default=0)
    fig, axes = plt.subplots(
        len(queries), cols, figsize=(thumb_inches * cols, thumb_inches * 1.15 * len(queries)),
        dpi=100, squeeze=False,
    )  # fmt: skip
    for row, (query, hits) in enumerate(zip(queries, results, strict=True)):
        cells = [(query, "query", None), *hits]
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(cells):
                ax.axis("off")
                continue
            image, caption, score = cells[col]
            try:
                picture = load_image(image, mode="RGB")
                picture.thumbnail((256, 256))
                ax.imshow(np.asarray(picture))
            except ImageError:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
            name = caption if len(caption) <= 22 else "…" + caption[-21:]
            ax.set_title(name if score is None else f"{name}\n{score:.3f}", fontsize=7)
            if col == 0:
                for spine in ax.spines.values():
                    spine.set_color("tab:blue")
                    spine.set_linewidth(2)
    return save(fig, path)
