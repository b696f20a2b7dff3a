"""Near-duplicate edits of photos, and choosing a de-duplication threshold from them.

A *near duplicate* here is what people keep by accident: the same photo cropped a little,
downscaled, recompressed, brightened, straightened by a few degrees, or stamped with a caption
or logo. :func:`near_duplicates` makes such edits, reproducibly from a seed, and
:func:`calibrate_dedup_threshold` scores edit-versus-original pairs (positives) against pairs of
images from different photos (negatives) and picks the cosine threshold.

Horizontal flips are not near duplicates by default: for most collections a mirrored photo
was made on purpose (and a selfie mirror is a different picture). ``kinds=(*EDIT_KINDS,
"flip")`` includes them.

A threshold chosen on distinct photos is optimistic about negatives: two different shots of
the same scene (a burst, a re-take) score higher than two unrelated photos. Use
``target_recall`` to put the threshold as high as the edits allow, or calibrate on photos like
the ones you will de-duplicate.
"""

from __future__ import annotations

import io
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from lookalike.errors import LookalikeError
from lookalike.imaging.images import ImageSource, load_image
from lookalike.index.update import ImageEmbedder
from lookalike.metrics.calibration import best_accuracy_threshold
from lookalike.metrics.distances import unit_rows

__all__ = [
    "EDIT_KINDS",
    "DedupCalibration",
    "NearDuplicate",
    "apply_edit",
    "calibrate_dedup_threshold",
    "near_duplicate",
    "near_duplicates",
    "pair_metrics",
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


@dataclass(frozen=True)
class DedupCalibration:
    """A de-duplication threshold and how well it separates the pairs it was chosen on.

    Attributes:
        threshold: Cosine similarity at or above which two images are near duplicates.
        precision: Of the pairs called duplicates, the fraction that are.
        recall: Of the edit-versus-original pairs, the fraction called duplicates.
        f1: Harmonic mean of precision and recall.
        positive_scores: Cosine of each edit to its original (P,).
        negative_scores: Cosine of each pair from different photos (M,).
        edits: Description of each positive's edits (P).
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    positive_scores: npt.NDArray[np.float64]
    negative_scores: npt.NDArray[np.float64]
    edits: tuple[str, ...]

    def summary(self) -> str:
        """One line: the threshold, its precision and recall, and the score ranges."""
        return (
            f"threshold {self.threshold:.4f}: precision {self.precision:.4f}, recall "
            f"{self.recall:.4f} on {len(self.positive_scores)} edits and "
            f"{len(self.negative_scores)} different-photo pairs (positives "
            f"{self.positive_scores.min():.3f}–{self.positive_scores.max():.3f}, negatives up "
            f"to {self.negative_scores.max():.3f})"
        )


def pair_metrics(
    positive_scores: npt.ArrayLike, negative_scores: npt.ArrayLike, threshold: float
) -> tuple[float, float, float]:
    """Precision, recall and F1 of calling pairs with score ≥ ``threshold`` duplicates.

    Args:
        positive_scores: Scores of true duplicate pairs (P,).
        negative_scores: Scores of distinct pairs (M,).
        threshold: The cosine threshold.

    Returns:
        ``(precision, recall, f1)``; precision is 1 when nothing is called a duplicate.
    """
    pos = np.asarray(positive_scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64)
    tp = int(np.count_nonzero(pos >= threshold))
    fp = int(np.count_nonzero(neg >= threshold))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / len(pos) if len(pos) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def calibrate_dedup_threshold(
    embedder: ImageEmbedder,
    photos: Sequence[ImageSource],
    *,
    edits_per_photo: int = 4,
    seed: int = 0,
    kinds: Sequence[str] = EDIT_KINDS,
    max_edits: int = 3,
    target_recall: float | None = None,
    batch_size: int = 32,
) -> DedupCalibration:
    """Choose a cosine threshold for near duplicates from edited copies of distinct photos.

    Each photo gets ``edits_per_photo`` near duplicates. Positives are (original, edit) pairs;
    negatives are all pairs of images (originals or edits) from different photos. The threshold
    maximises accuracy on these pairs (``calibration.best_accuracy_threshold``,
    midway between neighbouring scores), or, with ``target_recall``, is the highest one that
    still finds that fraction of the edits.

    Args:
        embedder: The model, with ``embed(images, batch_size=...)`` returning unit rows.
        photos: Distinct photos, at least two.
        edits_per_photo: Near duplicates made of each photo.
        seed: Seed of the edits.
        kinds: Edit kinds (see :func:`apply_edit`).
        max_edits: Most edits combined in one copy.
        target_recall: If given, in (0, 1]: choose for this recall instead of accuracy.
        batch_size: Images per forward pass.

    Returns:
        The threshold with its precision and recall on these pairs, and the scores.

    Raises:
        ValueError: If there are fewer than two photos, ``edits_per_photo < 1``, or
            ``target_recall`` is out of range.
    """
    if len(photos) < 2 or edits_per_photo < 1:
        raise ValueError("need at least two photos and edits_per_photo ≥ 1")
    if target_recall is not None and not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], not {target_recall}")
    rng = np.random.default_rng(seed)
    images: list[Image.Image] = []
    owner: list[int] = []
    is_edit: list[bool] = []
    edits: list[str] = []
    for p, photo in enumerate(photos):
        original = load_image(photo)
        images.append(original)
        owner.append(p)
        is_edit.append(False)
        for _ in range(edits_per_photo):
            copy = near_duplicate(original, rng, kinds=kinds, max_edits=max_edits)
            images.append(copy.image)
            owner.append(p)
            is_edit.append(True)
            edits.append(copy.description)
    emb = unit_rows(np.asarray(embedder.embed(images, batch_size=batch_size), dtype=np.float32))
    who, edited = np.asarray(owner), np.asarray(is_edit)
    originals = {p: i for i, p in enumerate(owner) if not is_edit[i]}
    edit_rows = np.flatnonzero(edited)
    pos = np.einsum("ij,ij->i", emb[edit_rows], emb[[originals[p] for p in who[edit_rows]]])
    a, b = np.triu_indices(len(images), k=1)
    different = who[a] != who[b]
    neg = np.einsum("ij,ij->i", emb[a[different]], emb[b[different]])
    pos, neg = pos.astype(np.float64), neg.astype(np.float64)
    if target_recall is None:
        labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        value = best_accuracy_threshold(np.concatenate([pos, neg]), labels).value
    else:
        ranked = np.sort(pos)[::-1]
        keep = max(1, math.ceil(target_recall * len(pos) - 1e-9))
        value = float(np.nextafter(ranked[keep - 1], -np.inf))
    precision, recall, f1 = pair_metrics(pos, neg, value)
    return DedupCalibration(float(value), precision, recall, f1, pos, neg, tuple(edits))


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


OFFLINE_PHOTOS: tuple[str, ...] = (
    "chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "clock", "brick", "grass", "gravel",
    "retina", "colorwheel", "cell", "horse",
)  # fmt: skip
"""scikit-image sample images that ship in its wheel (no download)."""


def offline_photos() -> list[np.ndarray]:
    """Distinct photos that ship offline: scikit-image's samples and scikit-learn's two.

    Returns:
        21 RGB uint8 arrays (H, W, 3), in a fixed order.

    Raises:
        LookalikeError: scikit-image or scikit-learn is not installed.
    """
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError as exc:
        raise LookalikeError(
            "the calibration photos need scikit-image and scikit-learn: pip install lookalike[all]"
        ) from exc

    def rgb(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        return np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]

    photos = [rgb(getattr(data, name)()) for name in OFFLINE_PHOTOS]
    return photos + [rgb(x) for x in load_sample_images().images]
