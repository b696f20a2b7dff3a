"""``search --grid``: rows wrap instead of one long strip, captions wrap instead of being
clipped (and do not run into their neighbours), and the query is named by its file name."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lookalike.viz import grids
from lookalike.viz.grids import plot_retrieval_grid, wrap_caption

LONG = "holiday-photos/2024/chelsea_very_long_descriptive_name_copy_final_{k}.jpg"


def _images(tmp_path: Path, count: int) -> list[Path]:
    paths = []
    for k in range(count):
        path = tmp_path / f"img{k}.png"
        Image.new("RGB", (64, 48), (20 * k % 255, 90, 160)).save(path)
        paths.append(path)
    return paths


def test_ten_hits_wrap_into_rows_with_whole_captions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures: list[Any] = []
    real_save = grids.save  # type: ignore[attr-defined]

    def keep(fig: Any, path: Any, **kwargs: Any) -> Path:
        fig.tight_layout()  # as save() lays it out
        fig.canvas.draw()
        figures.append(
            [
                (ax.get_title(), ax.title.get_window_extent(), ax.get_window_extent())
                for ax in fig.axes
                if ax.get_title()
            ]
        )
        return real_save(fig, path, **kwargs)

    monkeypatch.setattr(grids, "save", keep)
    images = _images(tmp_path, 11)
    hits = [(p, LONG.format(k=k), 0.9 - k / 100) for k, p in enumerate(images[1:])]
    out = plot_retrieval_grid([images[0]], [hits], tmp_path / "grid.png")
    with Image.open(out) as picture:
        width, height = picture.size
    assert width <= 6 * 180 + 20 and height >= 2 * 180, (width, height)  # not a 1980×207 strip
    titles = figures[0]
    assert titles[0][0] == "query: img0.png"
    for k, (title, _, _) in enumerate(titles[1:]):
        *caption, score = title.split("\n")
        assert "".join(caption) == LONG.format(k=k), title  # whole, only wrapped
        assert score == f"{0.9 - k / 100:.3f}"
    for (_, left, cell), (_, right, _) in itertools.pairwise(titles):
        if abs(left.y0 - right.y0) < 1 and right.x0 > left.x0:  # neighbours in one row
            assert left.x1 <= right.x0, "captions run into each other"
            assert left.width <= cell.width * 1.1


def test_wrap_caption_keeps_every_character_or_both_ends() -> None:
    lines = wrap_caption("photos/2024/a_long_file_name.jpg", 12)
    assert "".join(lines) == "photos/2024/a_long_file_name.jpg"
    assert all(len(line) <= 12 for line in lines)
    assert lines[0] == "photos/2024/"  # broken after a separator
    huge = "x" * 100 + "_end.jpg"
    short = wrap_caption(huge, 10)
    assert len(short) == 3 and "…" in "".join(short) and "".join(short).endswith("_end.jpg")
