"""Near-duplicate edits of photos: what people keep by accident, made reproducibly.

A *near duplicate* here is the same photo cropped a little, downscaled, recompressed,
brightened, straightened by a few degrees, or stamped with a caption or logo.
:func:`near_duplicates` makes such edits from a seed (:func:`near_duplicate` one,
:func:`apply_edit` one edit of a kind); :mod:`lookalike.dedup.calibrate` scores them against
their originals to choose a de-duplication threshold, and the tests and benchmarks build
collections with them.

Horizontal flips are not near duplicates by default: for most collections a mirrored photo
was made on purpose (and a selfie mirror is a different picture). ``kinds=(*EDIT_KINDS,
"flip")`` includes them.
"""

from __future__ import annotations

import io
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from lookalike.imaging.images import ImageSource, load_image

__all__ = [
    "EDIT_KINDS",
    "NearDuplicate",
    "apply_edit",
    "near_duplicate",
    "near_duplicates",
]

EDIT_KINDS: tuple[str, ...] = ("crop", "rotate", "resize", "color", "overlay", "jpeg")
"""Default edits, in the order they are applied (JPEG last, so its artefacts survive)."""

_ORDER: tuple[str, ...] = ("crop", "rotate", "flip", "resize", "color", "overlay", "jpeg")
_MIN_SIDE = 16


@dataclass(frozen=True)
class NearDuplicate:
    """An edited copy of a photo.

    Attributes:
        image: The edited image, RGB.
        edits: What was done, in order, e.g. ``("crop 0.87", "jpeg q=45")``.
    """

    image: Image.Image
    edits: tuple[str, ...]

    @property
    def description(self) -> str:
        """The edits joined with ``" + "``."""
        return " + ".join(self.edits)


def apply_edit(image: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Apply one random edit of a kind.

    Kinds and their ranges: ``"crop"`` keeps 80–95% of the area (aspect ratio within ±10%,
    anywhere in the frame); ``"resize"`` scales by 0.3–0.8; ``"jpeg"`` recompresses at quality
    30–90; ``"color"`` changes brightness and contrast by 0.75–1.3× and saturation by 0.7–1.3×;
    ``"rotate"`` turns by up to ±5° and crops away the empty corners; ``"overlay"`` stamps a
    semi-transparent caption or logo over 2–6% of the image; ``"flip"`` mirrors left-right.

    Args:
        image: An RGB image.
        kind: One of :data:`EDIT_KINDS` or ``"flip"``.
        rng: The random generator.

    Returns:
        The edited image (RGB) and a short description.

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    w, h = image.size
    if kind == "crop":
        area, aspect = rng.uniform(0.80, 0.95), math.exp(rng.uniform(-0.1, 0.1))
        cw = min(w, max(1, round(w * math.sqrt(area * aspect))))
        ch = min(h, max(1, round(h * math.sqrt(area / aspect))))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return image.crop((x, y, x + cw, y + ch)), f"crop {cw * ch / (w * h):.2f}"
    if kind == "resize":
        scale = rng.uniform(0.3, 0.8)
        size = (max(_MIN_SIDE, round(w * scale)), max(_MIN_SIDE, round(h * scale)))
        method = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
        return image.resize(size, method[int(rng.integers(0, 3))]), f"resize {scale:.2f}"
    if kind == "jpeg":
        quality = int(rng.integers(30, 91))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
        return load_image(buffer.getvalue()), f"jpeg q={quality}"
    if kind == "color":
        b, c, s = rng.uniform(0.75, 1.3), rng.uniform(0.75, 1.3), rng.uniform(0.7, 1.3)
        out = ImageEnhance.Brightness(image).enhance(b)
        out = ImageEnhance.Contrast(out).enhance(c)
        out = ImageEnhance.Color(out).enhance(s)
        return out, f"color b={b:.2f} c={c:.2f} s={s:.2f}"
    if kind == "rotate":
        return _rotate(image, rng.uniform(-5.0, 5.0))
    if kind == "overlay":
        return _overlay(image, rng)
    if kind == "flip":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "flip"
    raise ValueError(f"unknown edit kind {kind!r}; expected one of {', '.join(_ORDER)}")


def near_duplicate(
    image: ImageSource,
    rng: np.random.Generator,
    *,
    kinds: Sequence[str] = EDIT_KINDS,
    max_edits: int = 3,
) -> NearDuplicate:
    """Make one near duplicate: 1 to ``max_edits`` distinct random edits, in a fixed order.

    Args:
        image: The photo (anything :func:`~lookalike.imaging.images.load_image` accepts).
        rng: The random generator.
        kinds: The edit kinds to draw from.
        max_edits: Most edits combined.

    Returns:
        The edited copy.

    Raises:
        ValueError: If ``kinds`` is empty or has an unknown kind, or ``max_edits < 1``.
    """
    unknown = sorted(set(kinds) - set(_ORDER))
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {_ORDER}, got {tuple(kinds)}")
    if max_edits < 1:
        raise ValueError(f"max_edits must be at least 1, not {max_edits}")
    pool = sorted(set(kinds), key=_ORDER.index)
    count = int(rng.integers(1, min(max_edits, len(pool)) + 1))
    chosen = sorted(rng.choice(len(pool), size=count, replace=False).tolist())
    out = load_image(image)
    edits = []
    for i in chosen:
        out, text = apply_edit(out, pool[i], rng)
        edits.append(text)
    return NearDuplicate(out.convert("RGB"), tuple(edits))


def near_duplicates(
    image: ImageSource,
    count: int,
    *,
    seed: int = 0,
    kinds: Sequence[str] = EDIT_KINDS,
    max_edits: int = 3,
) -> list[NearDuplicate]:
    """Make ``count`` near duplicates of one photo, reproducibly.

    Args:
        image: The photo.
        count: How many.
        seed: Seed of the random edits.
        kinds: The edit kinds to draw from.
        max_edits: Most edits combined in one copy.

    Returns:
        The edited copies.
    """
    rng = np.random.default_rng(seed)
    return [near_duplicate(image, rng, kinds=kinds, max_edits=max_edits) for _ in range(count)]


# --------------------------------------------------------------------------- edits


def _rotate(image: Image.Image, degrees: float) -> tuple[Image.Image, str]:
    """Rotate about the centre and crop to the largest same-aspect box without empty corners."""
    w, h = image.size
    theta = math.radians(abs(degrees))
    cos, sin = math.cos(theta), math.sin(theta)
    fit = min(w / (w * cos + h * sin), h / (w * sin + h * cos))
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC)
    cw, ch = max(1, math.floor(w * fit)), max(1, math.floor(h * fit))
    x, y = (w - cw) // 2, (h - ch) // 2
    return turned.crop((x, y, x + cw, y + ch)), f"rotate {degrees:+.1f}°"


def _overlay(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Stamp a semi-transparent caption or logo over about 2–6% of the image."""
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    alpha = int(rng.integers(150, 231))
    shade = int(rng.choice([0, 255]))
    fill: Any = (shade, shade, shade, alpha)
    if rng.random() < 0.5:
        letters = string.ascii_uppercase + string.digits
        text = "".join(rng.choice(list(letters), size=int(rng.integers(5, 11))).tolist())
        font = ImageFont.load_default(size=max(8, round(h * rng.uniform(0.06, 0.10))))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = math.ceil(right - left), math.ceil(bottom - top)
        x = int(rng.integers(0, max(1, w - tw)))
        y = int(rng.integers(0, max(1, h - th)))
        draw.text((x - left, y - top), text, font=font, fill=fill)
        what = f"caption {text!r}"
    else:
        side = math.sqrt(rng.uniform(0.02, 0.06) * w * h)
        bw, bh = min(w, round(side * 1.4)), min(h, round(side / 1.4))
        x = int(rng.choice([0, w - bw])) + int(rng.integers(-bw // 10, bw // 10 + 1))
        y = int(rng.choice([0, h - bh])) + int(rng.integers(-bh // 10, bh // 10 + 1))
        x, y = min(max(0, x), w - bw), min(max(0, y), h - bh)
        draw.rounded_rectangle((x, y, x + bw, y + bh), radius=max(1, bh // 4), fill=fill)
        draw.ellipse(
            (x + bh // 6, y + bh // 6, x + bh - bh // 6, y + bh - bh // 6),
            fill=(255 - shade,) * 3 + (alpha,),
        )
        what = "logo"
    out = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
    return out, f"overlay {what}"
