"""Grids of images: each query beside the images found closest to it (seed 002)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ImageError
from lookalike.imaging.images import load_image
from lookalike.viz._mpl import pyplot, save

__all__ = ["plot_retrieval_grid", "wrap_caption"]

MAX_COLUMNS = 6
"""Cells per grid row: a query with more hits continues on the next row (no long strips)."""
TITLE_LINES = 3
"""Lines a cell's caption may take; a longer one keeps its start and its end."""


def wrap_caption(text: str, width: int, *, lines: int = TITLE_LINES) -> list[str]:
    """Break a caption (a file name or path) into lines of at most ``width`` characters.

    Breaks after ``/``, ``_``, ``-``, ``.`` or a space when one is near, else anywhere. A caption
    that needs more than ``lines`` lines keeps its first and last parts around ``…`` (the file
    name at the end is what tells images apart).

    Args:
        text: The caption.
        width: Characters per line (at least 4).
        lines: Most lines.

    Returns:
        The lines, each at most ``width`` characters.
    """
    width = max(4, width)
    out: list[str] = []
    rest = text
    while rest:
        if len(rest) <= width:
            out.append(rest)
            break
        cut = max((rest.rfind(c, 0, width) for c in "/_-. "), default=-1) + 1
        cut = cut if cut >= width // 2 else width
        out.append(rest[:cut])
        rest = rest[cut:]
    if len(out) <= lines:
        return out
    if len(text) <= lines * width:  # fits when broken anywhere
        return [text[k : k + width] for k in range(0, len(text), width)]
    keep = (lines * width - 1) // 2
    start, end = text[:keep], text[-(lines * width - 1 - keep) :]
    joined = start + "…" + end
    return [joined[k : k + width] for k in range(0, len(joined), width)][:lines]


def _name(image: Any) -> str:
    """A query's file name, or ``query`` for an in-memory image."""
    if isinstance(image, str | os.PathLike):
        return Path(image).name
    return "query"


def plot_retrieval_grid(
    queries: Sequence[Any],
    results: Sequence[Sequence[tuple[Any, str, float]]],
    path: str | os.PathLike[str],
    *,
    thumb_inches: float = 1.8,
    max_columns: int = MAX_COLUMNS,
) -> Path:
    """Seed 002's closest-images figure: each query (framed in blue) then its hits.

    A query with more than ``max_columns - 1`` hits continues on the next rows, so ten hits
    make a 6×2 block rather than an 11-cell strip. Captions are wrapped, not clipped: the
    query is named by its file name, each hit by its caption and score.

    Args:
        queries: Query images (anything :func:`~lookalike.imaging.load_image` opens), Q of them.
        results: Per query, its hits best first as ``(image, caption, score)``.
        path: The PNG to write.
        thumb_inches: Side of one cell in inches (100 dpi).
        max_columns: Cells per row, at least 2.

    Returns:
        The path written. An image that cannot be read is drawn as "unreadable".
    """
    plt = pyplot()
    columns = max(2, min(max_columns, 1 + max((len(r) for r in results), default=0)))
    blocks = [
        [(query, f"query: {_name(query)}", None), *hits]
        for query, hits in zip(queries, results, strict=True)
    ]
    row_counts = [math.ceil(len(cells) / columns) for cells in blocks]
    n_rows = max(1, sum(row_counts))
    chars = max(8, int(thumb_inches * 100 / 6.6))  # 7 pt DejaVu Sans: about 5.5 px a character
    fig, axes = plt.subplots(
        n_rows, columns, figsize=(thumb_inches * columns, thumb_inches * 1.4 * n_rows),
        dpi=100, squeeze=False,
    )  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    first_row = 0
    for cells, rows in zip(blocks, row_counts, strict=True):
        for k, (image, caption, score) in enumerate(cells):
            ax = axes[first_row + k // columns][k % columns]
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            try:
                picture = load_image(image, mode="RGB")
                picture.thumbnail((256, 256))
                ax.imshow(np.asarray(picture))
            except ImageError:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
            lines = wrap_caption(caption, chars)
            if score is not None:
                lines.append(f"{score:.3f}")
            ax.set_title("\n".join(lines), fontsize=7)
            if k == 0:
                for spine in ax.spines.values():
                    spine.set_color("tab:blue")
                    spine.set_linewidth(2)
        first_row += rows
    return save(fig, path)
