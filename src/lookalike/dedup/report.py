"""A self-contained HTML contact sheet of near-duplicate groups, to review before moving files.

Every thumbnail is embedded as a small base64 JPEG, so the page needs no other file and loads
nothing from the network. The page is also the review: per group, pick the copy to keep or mark
the group "not duplicates", then **Save choices** downloads ``dedup-choices.json``, which
``lookalike dedup DIR --choices dedup-choices.json --move-to DEST --yes`` applies
(:func:`lookalike.dedup.groups.read_choices`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from lookalike.errors import ImageError
from lookalike.imaging.files import shown_path
from lookalike.imaging.images import load_image
from lookalike.inference.uris import is_uri, read_bytes

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
.reason { color: #555; font-size: 12px; margin: -0.3em 0 0.6em; }
.bar { position: sticky; top: 0; background: #fafafa; padding: 0.5em 0; z-index: 1; }
.bar button { font: inherit; padding: 0.3em 0.9em; }
section.notdup .members { opacity: 0.45; }
label.pick { display: block; font-size: 12px; cursor: pointer; }
"""

_SCRIPT = """
function choices() {
  return Array.from(document.querySelectorAll("section[data-paths]")).map((section) => {
    const picked = section.querySelector("input[type=radio]:checked");
    const notdup = section.querySelector("input.notdup").checked;
    return {paths: JSON.parse(section.dataset.paths), keep: notdup ? null : picked.value};
  });
}
function refresh(section) {
  const notdup = section.querySelector("input.notdup").checked;
  section.classList.toggle("notdup", notdup);
  section.querySelectorAll("figure").forEach((figure) => {
    const keep = figure.querySelector("input[type=radio]").checked;
    figure.className = keep ? "keep" : "dup";
    const badge = figure.querySelector(".badge");
    badge.className = keep || notdup ? "badge" : "badge dup";
    badge.textContent = notdup ? "kept" : keep ? "keep" : "duplicate";
  });
}
document.querySelectorAll("section[data-paths]").forEach((section) => {
  section.addEventListener("change", () => { refresh(section); });
});
document.getElementById("save").addEventListener("click", () => {
  const body = JSON.stringify({format: "FORMAT", groups: choices()}, null, 1);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([body], {type: "application/json"}));
  link.download = "dedup-choices.json";
  link.click();
  URL.revokeObjectURL(link.href);
});
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
        root: Folder the group paths are relative to, or a URI whose objects they are (read
            through fsspec; ``None``: as given).
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
    from lookalike.dedup.groups import CHOICES_FORMAT

    if thumb_px < 1:
        raise ValueError(f"thumb_px must be positive, not {thumb_px}")
    base = None if root is None else os.fspath(root)
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
        '<p class="bar"><button id="save" type="button">Save choices</button> '
        "pick the copy to keep in each group (or mark it not duplicates), save, then run "
        "<code>lookalike dedup DIR --choices dedup-choices.json --move-to DEST --yes</code></p>",
    ]
    for number, group in enumerate(shown, 1):
        chain = threshold is not None and group.min_score < threshold
        note = ' <span class="chain">(chained: some members are linked only through others)'
        members = html.escape(json.dumps([shown_path(p) for p in group.paths]))
        parts.append(
            f'<section data-paths="{members}"><h2>Group {number}: {len(group)} images, lowest '
            f"score {group.min_score:.4f}{note + '</span>' if chain else ''}</h2>"
            + (f'<p class="reason">{html.escape(group.reason)}</p>' if group.reason else "")
            + '<label class="pick"><input type="checkbox" class="notdup"> not duplicates: '
            "keep them all</label>"
            '<div class="members">'
        )
        for k, (path, score) in enumerate(zip(group.paths, group.scores, strict=True)):
            file = _member(base, path)
            parts.append(_figure(file, path, score, keep=k == 0, thumb_px=thumb_px, group=number))
        parts.append("</div></section>")
    parts.append(f"<script>{_SCRIPT.replace('FORMAT', CHOICES_FORMAT)}</script></body></html>")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _member(base: str | None, path: str) -> Path | str:
    """A member's file (a ``str`` for a URI under a URI root)."""
    if base is not None and is_uri(base):
        return f"{base.rstrip('/')}/{path}"
    return Path(base) / path if base is not None else Path(path)


def _figure(
    file: Path | str, path: str, score: float, *, keep: bool, thumb_px: int, group: int
) -> str:
    """One member: thumbnail (or a placeholder), path, score, sizes, a keep/duplicate badge
    and the radio button that makes it the group's kept copy."""
    shown = shown_path(path)
    badge = (
        '<span class="badge">keep</span>' if keep else '<span class="badge dup">duplicate</span>'
    )
    pick = (
        f'<label class="pick"><input type="radio" name="g{group}" '
        f'value="{html.escape(shown)}"{" checked" if keep else ""}> keep this one</label>'
    )
    try:
        content = read_bytes(file) if isinstance(file, str) else None  # a URI: read it once
        image = load_image(file if content is None else content, draft_size=(thumb_px, thumb_px))
        width, height = _header_size(file if content is None else io.BytesIO(content))
        image.thumbnail((thumb_px, thumb_px))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        picture = f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(shown)}">'
        size = len(content) if content is not None else Path(file).stat().st_size
        sizes = f"{width}×{height}, {_bytes(size)}"
    except (ImageError, OSError, ValueError) as exc:
        picture = f'<div class="missing">unreadable: {html.escape(type(exc).__name__)}</div>'
        sizes = "—"
    score_text = "the rule's pick" if keep else f"cosine {score:.4f} to the rule's pick"
    return (
        f'<figure class="{"keep" if keep else "dup"}">{picture}<figcaption>{badge} '
        f"{html.escape(shown)}<br>{score_text}<br>{sizes}{pick}</figcaption></figure>"
    )


def _header_size(file: Path | str | io.BytesIO) -> tuple[int, int]:
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
