"""A self-contained HTML contact sheet of near-duplicate groups, to review before moving files.

Every thumbnail is embedded as a small base64 JPEG, so the page needs no other file and loads
nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from lookalike.errors import ImageError
from lookalike.imaging.images import load_image

if TYPE_CHECKING:
    from lookalike.dedup.groups import DuplicateGroup

__all__ = ["write_dedup_html"]

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } .meta { color: #666; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 1em 0;
          padding: 0.8em; }
section h2 { font-size: 1em; margin: 0 0 0.6em; }
.members { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0; width: THUMBpx; }
figure img, .missing { width: THUMBpx; height: THUMBpx; object-fit: contain; background: #eee;
                       display: block; border: 3px solid transparent; border-radius: 4px; }
figure.keep img { border-color: #2a8; }
figcaption { font-size: 12px; word-break: break-all; margin-top: 0.3em; }
.badge { display: inline-block; padding: 0 0.4em; border-radius: 3px; font-size: 11px;
         background: #2a8; color: #fff; } .badge.dup { background: #c84; }
.chain { color: #c33; } .missing { display: flex; align-items: center;
         justify-content: center; color: #999; font-size: 12px; }
"""


def write_dedup_html(
    groups: Sequence[DuplicateGroup],
    root: str | os.PathLike[str] | None,
    out_html: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    thumb_px: int = 160,
    max_groups: int | None = None,
    title: str = "Near-duplicate groups",
) -> Path:
    """Write a contact sheet: one row of thumbnails per group, the kept copy first.

    Each thumbnail shows the path, the cosine similarity to the kept copy, the pixel size and
    the file size; the kept copy is marked "keep", the others "duplicate". A group whose lowest
    score is below ``threshold`` (linked through a chain) is flagged.

    Args:
        groups: From :func:`lookalike.dedup.groups.find_duplicates` or
            :func:`lookalike.dedup.groups.dedup_index`.
        root: Folder the group paths are relative to (``None``: as given).
        out_html: The file to write (its folder is created).
        threshold: The threshold the groups were made with, shown and used to flag chains.
        thumb_px: Thumbnail size in pixels (longest side).
        max_groups: Write at most this many groups (``None``: all).
        title: The page title.

    Returns:
        The file written.

    Raises:
        ValueError: If ``thumb_px`` is not positive.
    """
    if thumb_px < 1:
        raise ValueError(f"thumb_px must be positive, not {thumb_px}")
    base = Path(root) if root is not None else None
    shown = list(groups if max_groups is None else groups[:max_groups])
    files = sum(len(g) - 1 for g in groups)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE.replace('THUMB', str(thumb_px))}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{len(groups)} groups, {files} duplicates to move'
        + (f", threshold {threshold:.4f}" if threshold is not None else "")
        + (f"; the first {len(shown)} groups are shown" if len(shown) < len(groups) else "")
        + "</p>",
    ]
    for number, group in enumerate(shown, 1):
        chain = threshold is not None and group.min_score < threshold
        note = ' <span class="chain">(chained: some members are linked only through others)'
        parts.append(
            f"<section><h2>Group {number}: {len(group)} images, lowest score "
            f"{group.min_score:.4f}{note + '</span>' if chain else ''}</h2>"
            '<div class="members">'
        )
        for k, (path, score) in enumerate(zip(group.paths, group.scores, strict=True)):
            file = base / path if base is not None else Path(path)
            parts.append(_figure(file, path, score, keep=k == 0, thumb_px=thumb_px))
        parts.append("</div></section>")
    parts.append("</body></html>")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _figure(file: Path, path: str, score: float, *, keep: bool, thumb_px: int) -> str:
    """One member: thumbnail (or a placeholder), path, score, sizes and a keep/duplicate badge."""
    badge = (
        '<span class="badge">keep</span>' if keep else '<span class="badge dup">duplicate</span>'
    )
    try:
        image = load_image(file, draft_size=(thumb_px, thumb_px))
        width, height = _header_size(file)
        image.thumbnail((thumb_px, thumb_px))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        picture = f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(path)}">'
        sizes = f"{width}×{height}, {_bytes(file.stat().st_size)}"
    except (ImageError, OSError, ValueError) as exc:
        picture = f'<div class="missing">unreadable: {html.escape(type(exc).__name__)}</div>'
        sizes = "—"
    score_text = "kept copy" if keep else f"cosine {score:.4f}"
    return (
        f'<figure class="{"keep" if keep else "dup"}">{picture}<figcaption>{badge} '
        f"{html.escape(path)}<br>{score_text}<br>{sizes}</figcaption></figure>"
    )


def _header_size(file: Path) -> tuple[int, int]:
    """Width and height from the image header (no decoding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(file) as probe:
            return probe.size


def _bytes(size: int) -> str:
    """A file size in words: 532 B, 14.2 KB, 3.1 MB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
