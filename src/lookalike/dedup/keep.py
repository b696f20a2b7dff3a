"""Which copy of a near-duplicate group to keep: what users mean by "the original".

A group's members are described by :class:`CopyFacts` (read from each file's header and a
small grey thumbnail) and ordered by a :data:`KeepRule`:

``original`` (the default) keeps, in this order of precedence,

1. a copy **without an added overlay or border**: text, a logo or a watermark drawn on the
   picture shows as a *local* difference from the other copies (under a quarter of the
   picture) where the copy has *more* fine detail than they do; a border or letterbox shows
   as flat bands along an edge that the other copies lack. Blur and recompression, by
   contrast, remove detail everywhere, so they never look like an overlay;
2. the **most pixels** (a resized copy is smaller);
3. the **highest JPEG quality**, estimated from the file's quantisation tables (a lossless
   format such as PNG counts as 100);
4. the **earliest EXIF date** (``DateTimeOriginal``, else ``DateTime``), copies with none last;
5. the **oldest file** (modification time: a copy made with ``cp`` is newer);
6. the largest file, the shortest path, then the path in code-point order.

The other rules put one fact first and fall back on ``original``'s order: ``largest`` (most
pixels, then largest file: the rule before this module existed), ``oldest`` and ``newest``
(EXIF date, else file time), ``shortest-path``. :func:`rank_copies` returns the order and a
sentence saying why the first copy won, which ``lookalike dedup`` prints beside each group.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.errors import ImageError
from lookalike.inference.uris import filesystem, is_uri, modified_ns, read_bytes

__all__ = ["KEEP_RULES", "CopyFacts", "KeepRule", "copy_facts", "rank_copies"]

KeepRule = Literal["original", "largest", "oldest", "newest", "shortest-path"]
KEEP_RULES: tuple[str, ...] = get_args(KeepRule)

THUMB = 96
"""Side of the grey thumbnails compared for overlays (pixels)."""

MAX_COMPARED = 24
"""Members of one group compared for overlays; larger groups compare their first 24 by path."""

_STANDARD_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip
"""The JPEG standard's luminance quantisation table (Annex K), quality 50."""


@dataclass(frozen=True)
class CopyFacts:
    """What the keep rules know about one copy.

    Attributes:
        path: The path as the group names it.
        width, height: Pixels (0 when the file cannot be read).
        bytes: File size in bytes.
        jpeg_quality: Estimated JPEG quality 1–100; 100 for lossless formats; ``None``
            when unknown.
        taken: EXIF date as ``YYYY:MM:DD HH:MM:SS`` (``None`` without one).
        mtime: Modification time, seconds since the epoch.
        overlay: A local overlay (text, logo, watermark) the other copies lack.
        border: Flat bands along an edge that the other copies lack.
    """

    path: str
    width: int
    height: int
    bytes: int
    jpeg_quality: int | None
    taken: str | None
    mtime: float
    overlay: bool = False
    border: bool = False

    @property
    def pixels(self) -> int:
        """Width × height."""
        return self.width * self.height


def copy_facts(path: str, root: str | os.PathLike[str] | None = None) -> CopyFacts:
    """Read one copy's facts (no overlay or border verdict: that needs the group).

    Args:
        path: The path as the group names it.
        root: Folder the path is relative to, or a URI (``None``: as given).
    """
    facts, _ = _read(path, _base(root))
    return facts


def rank_copies(
    paths: Sequence[str],
    root: str | os.PathLike[str] | None = None,
    rule: KeepRule = "original",
) -> tuple[list[int], str, list[CopyFacts]]:
    """Order a group's copies, the one to keep first, and say why it was chosen.

    Args:
        paths: The group's members (K ≥ 1).
        root: Folder the paths are relative to, or a URI whose objects they are (read
            through fsspec; ``None``: as given).
        rule: One of :data:`KEEP_RULES` (see the module notes).

    Returns:
        ``(order, reason, facts)``: positions into ``paths`` with the kept copy first, one
        sentence naming the fact that decided, and each member's :class:`CopyFacts`.

    Raises:
        ValueError: An unknown rule.
    """
    if rule not in KEEP_RULES:
        raise ValueError(f"keep rule must be one of {', '.join(KEEP_RULES)}, not {rule!r}")
    base = _base(root)
    read = [_read(p, base) for p in paths]
    facts = _with_edits([f for f, _ in read], [t for _, t in read])
    keys = _KEYS[rule]
    order = sorted(range(len(facts)), key=lambda k: tuple(key(facts[k]) for _, key in keys))
    return order, _reason(facts, order, keys), facts


# --------------------------------------------------------------------------- reading


def _base(root: str | os.PathLike[str] | None) -> Path | str | None:
    """The folder paths are relative to, or a URI root (a ``str``, without a trailing ``/``)."""
    if root is None:
        return None
    text = os.fspath(root)
    return text.rstrip("/") if is_uri(text) else Path(root)


def _source(path: str, root: Path | str | None) -> tuple[Path | io.BytesIO | None, int, float]:
    """What to open for a member (a file, or a URI's bytes), its size and its modification
    time in seconds (0 when unknown; ``None`` to open when the object cannot be read)."""
    if isinstance(root, str):
        uri = f"{root}/{path}"
        try:
            data = read_bytes(uri)
        except ImageError:
            return None, 0, 0.0
        return io.BytesIO(data), len(data), _object_time(uri)
    file = root / path if root is not None else Path(path)
    try:
        stat = file.stat()
        return file, stat.st_size, stat.st_mtime
    except OSError:
        return file, 0, 0.0


def _object_time(uri: str) -> float:
    """An object's modification time in seconds (0 when its store gives none)."""
    try:
        fs, where = filesystem(uri)
        ns = modified_ns(fs.info(where))
    except Exception:  # the store's client errors, not only OSError: the fact is unknown
        return 0.0
    return 0.0 if ns is None else ns / 1e9


def _read(path: str, root: Path | str | None) -> tuple[CopyFacts, npt.NDArray[np.float32] | None]:
    """Facts of one file and its grey thumbnail (THUMB, THUMB) in [0, 1] (``None``: unreadable)."""
    file, size, mtime = _source(path, root)
    width = height = 0
    quality: int | None = None
    taken: str | None = None
    thumb: npt.NDArray[np.float32] | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if file is None:
                raise ImageError(path, "cannot read it")
            with Image.open(file) as image:
                width, height = image.size
                quality = _jpeg_quality(image)
                taken = _exif_date(image)
                image.draft("L", (THUMB * 2, THUMB * 2))
                grey = image.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
                thumb = np.asarray(grey, dtype=np.float32) / 255.0
    except Exception:  # unreadable or refused: it ranks last on pixels
        pass
    return CopyFacts(path, width, height, size, quality, taken, mtime), thumb


def _jpeg_quality(image: Image.Image) -> int | None:
    """Estimated quality 1–100 from the luminance table; 100 for lossless formats."""
    if image.format in ("PNG", "BMP", "TIFF", "GIF"):
        return 100
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables or 0 not in tables:
        return None
    luma = np.asarray(tables[0], dtype=np.float64)[:64]
    scale = float(np.mean(luma / _STANDARD_LUMA[: len(luma)])) * 100.0
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))


def _exif_date(image: Image.Image) -> str | None:
    """EXIF ``DateTimeOriginal`` (else ``DateTime``), or ``None``."""
    try:
        exif = image.getexif()
        value = exif.get_ifd(0x8769).get(36867) or exif.get(306)
    except Exception:
        return None
    text = str(value).strip() if value else ""
    return text if len(text) >= 10 and text[:4].isdigit() and text[:4] != "0000" else None


# --------------------------------------------------------------------------- overlays


def _with_edits(
    facts: list[CopyFacts], thumbs: list[npt.NDArray[np.float32] | None]
) -> list[CopyFacts]:
    """The facts with ``overlay`` and ``border`` judged against the other members."""
    if len(facts) < 2:
        return facts
    compared = sorted(range(len(facts)), key=lambda k: facts[k].path)[:MAX_COMPARED]
    out = list(facts)
    for k in compared:
        thumb = thumbs[k]
        if thumb is None:
            continue
        others = [
            thumbs[o]
            for o in compared
            if o != k and thumbs[o] is not None and _same_framing(facts[k], facts[o])
        ]
        border_others = [thumbs[o] for o in compared if o != k and thumbs[o] is not None]
        # In pairs: a median of several misaligned copies would be a blurred reference.
        overlay = any(_has_overlay(thumb, [t]) for t in others if t is not None)
        border = bool(border_others) and _added_border(
            thumb, [t for t in border_others if t is not None]
        )
        out[k] = CopyFacts(**{**facts[k].__dict__, "overlay": overlay, "border": border})
    return out


def _same_framing(a: CopyFacts, b: CopyFacts) -> bool:
    """Whether two copies can be compared pixel by pixel (aspect ratios within 3 %)."""
    if not (a.height and b.height):
        return False
    return abs(a.width / a.height - b.width / b.height) <= 0.03 * (a.width / a.height)


def _aligned(
    own: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``own`` mapped by the gain and offset that best match ``reference`` (brightness and
    contrast edits removed), fitted on the three quarters of pixels that agree best, so
    that an overlay does not bend the fit."""
    x, y = own.ravel().astype(np.float64), reference.ravel().astype(np.float64)
    use = np.ones(x.shape, dtype=bool)
    gain, offset = 1.0, 0.0
    for _ in range(2):
        design = np.stack([x[use], np.ones(int(use.sum()))], axis=1)
        (gain, offset), *_ = np.linalg.lstsq(design, y[use], rcond=None)
        residual = np.abs(gain * x + offset - y)
        use = residual <= np.quantile(residual, 0.75)
    return np.asarray(gain * own + offset, dtype=np.float32)


def _detail(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Gradient magnitude, same shape as ``x``."""
    gy, gx = np.gradient(x)
    return np.asarray(np.hypot(gx, gy), dtype=np.float32)


def _has_overlay(thumb: npt.NDArray[np.float32], others: list[npt.NDArray[np.float32]]) -> bool:
    """Whether ``thumb`` carries something local (text, a logo) that the others lack.

    The reference is the per-pixel median of the other copies. The copy has an overlay when
    it differs from the reference by more than 12 % of the grey range on 0.3–25 % of the
    picture, agrees elsewhere (median difference ≤ 4 %), and
    has at least 1.2× the reference's fine detail where it differs, but not elsewhere; and
    what differs is compact (half of it in 4 of 16 cells), not spread along every edge.
    """
    reference = np.asarray(np.median(np.stack(others), axis=0), dtype=np.float32)
    own = _aligned(thumb, reference)
    difference = np.abs(own - reference)
    changed = difference > 0.12
    share = float(changed.mean())
    if not 0.003 <= share <= 0.25:
        return False
    if float(np.median(difference[~changed])) > 0.04:  # differs everywhere: not an overlay
        return False
    if _spread(changed) > 0.5:  # along every edge of the picture: misaligned, not an overlay
        return False
    own_detail, reference_detail = _detail(own), _detail(reference)
    # Sharper everywhere (the other copies are blurred or resized): not an overlay. The
    # overlay's own soft edges (2 px around it) do not count as "everywhere".
    away = ~_grown(changed, 2)
    if float(own_detail[away].mean()) > 1.25 * float(reference_detail[away].mean()):
        return False
    return float(own_detail[changed].mean()) >= 1.2 * float(reference_detail[changed].mean())


def _spread(mask: npt.NDArray[np.bool_], cells: int = 4, densest: int = 4) -> float:
    """Share of ``mask``'s pixels outside its ``densest`` cells of a ``cells``×``cells`` grid.

    An overlay (a caption, a logo) is compact: most of what changed lies in a few cells. A
    copy shifted or rotated by a degree or two differs along every edge in the picture.
    """
    h, w = mask.shape
    rows = [slice(r * h // cells, (r + 1) * h // cells) for r in range(cells)]
    cols = [slice(c * w // cells, (c + 1) * w // cells) for c in range(cells)]
    counts = [int(mask[r, c].sum()) for r in rows for c in cols]
    total = sum(counts)
    return 1.0 - sum(sorted(counts)[-densest:]) / total if total else 0.0


def _grown(mask: npt.NDArray[np.bool_], steps: int) -> npt.NDArray[np.bool_]:
    """``mask`` (H, W) dilated by ``steps`` pixels (8-neighbourhood)."""
    out = mask.copy()
    for _ in range(steps):
        padded = np.pad(out, 1)
        out = np.zeros_like(out)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                out |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def _flat_edges(thumb: npt.NDArray[np.float32]) -> list[int]:
    """Lines of flat colour (std < 1/255) along each edge: top, bottom, left, right."""
    counts = []
    for strip in (thumb, thumb[::-1], thumb.T, thumb.T[::-1]):
        flat = 0
        for line in strip[: THUMB // 3]:
            if float(line.std()) >= 1.0 / 255.0:
                break
            flat += 1
        counts.append(flat)
    return counts


def _added_border(thumb: npt.NDArray[np.float32], others: list[npt.NDArray[np.float32]]) -> bool:
    """Whether ``thumb`` has a flat band (≥ 3 % of its side) on an edge where no other copy has
    any: padding or a letterbox added to the picture, not a flat sky the picture already had."""
    own = _flat_edges(thumb)
    theirs = [_flat_edges(t) for t in others]
    least = max(3, THUMB * 3 // 100)
    return any(
        own[side] >= least and all(counts[side] < 2 for counts in theirs) for side in range(4)
    )


# --------------------------------------------------------------------------- ordering

_Key = Callable[[CopyFacts], object]

_ORIGINAL: tuple[tuple[str, _Key], ...] = (
    ("has no added overlay or border", lambda f: f.overlay or f.border),
    ("has the most pixels", lambda f: -f.pixels),
    ("has the highest JPEG quality", lambda f: -(f.jpeg_quality or 0)),
    ("has the earliest EXIF date", lambda f: (f.taken is None, f.taken or "")),
    ("is the oldest file", lambda f: f.mtime),
    ("is the largest file", lambda f: -f.bytes),
    ("has the shortest path", lambda f: (len(f.path), f.path)),
)

_DATE_OLD: _Key = lambda f: (f.taken is None, f.taken or "", f.mtime)  # noqa: E731
_KEYS: dict[str, tuple[tuple[str, _Key], ...]] = {
    "original": _ORIGINAL,
    "largest": (
        ("has the most pixels", lambda f: -f.pixels),
        ("is the largest file", lambda f: -f.bytes),
        *_ORIGINAL,
    ),
    "oldest": (("is the oldest (EXIF date, else file time)", _DATE_OLD), *_ORIGINAL),
    "newest": (
        ("is the newest (EXIF date, else file time)", lambda f: (f.taken is None, _neg(f))),
        *_ORIGINAL,
    ),
    "shortest-path": (("has the shortest path", lambda f: (len(f.path), f.path)), *_ORIGINAL),
}


def _neg(f: CopyFacts) -> tuple[str, float]:
    """Sort key for the newest first: the EXIF date's characters inverted, then -mtime."""
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in (f.taken or ""))
    return inverted, -f.mtime


def _reason(facts: list[CopyFacts], order: list[int], keys: tuple[tuple[str, _Key], ...]) -> str:
    """The sentence saying which fact made the first copy win over the runner-up."""
    if len(order) < 2:
        return "the only copy"
    kept, runner = facts[order[0]], facts[order[1]]
    for words, key in keys:
        if key(kept) != key(runner):
            return f"kept because it {words}{_detail_words(words, kept, runner, facts)}"
    return "kept: the copies are alike in every respect checked; first path"


def _detail_words(words: str, kept: CopyFacts, runner: CopyFacts, facts: list[CopyFacts]) -> str:
    """The figures behind a reason, e.g. `` (1024×768 vs 800×600)``."""
    if "overlay" in words:
        marked = sum(f.overlay for f in facts)
        bordered = sum(f.border for f in facts)
        parts = [f"{marked} with an overlay"] if marked else []
        parts += [f"{bordered} with a border"] if bordered else []
        return f" (of {len(facts)} copies: {', '.join(parts)})"
    if "pixels" in words:
        return f" ({kept.width}×{kept.height} vs {runner.width}×{runner.height})"
    if "JPEG" in words:
        return f" ({kept.jpeg_quality or '?'} vs {runner.jpeg_quality or '?'})"
    if "EXIF" in words or "oldest" in words or "newest" in words:
        return f" ({kept.taken or 'file time'} vs {runner.taken or 'file time'})"
    if "largest file" in words:
        return f" ({kept.bytes:,} vs {runner.bytes:,} bytes)"
    return ""
