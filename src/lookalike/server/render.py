"""Images the server sends back: heatmap overlays, the explanation figure, thumbnails, zips."""

from __future__ import annotations

import base64
import io
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from lookalike.model.network import SiameseModel
    from lookalike.viz.explain import Explanation

OVERLAY_MAX_SIDE = 512
OVERLAY_MIN_SIDE = 224
MODEL_ZIP_FOLDER = "lookalike-model"


def png_base64(image: Image.Image) -> str:
    """Encode an image as a base64 PNG string."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def heat_overlay(image: Image.Image, heat: np.ndarray, *, alpha: float = 0.5) -> Image.Image:
    """Blend a [0, 1] heatmap (H, W) over the image, green = agrees, red = differs.

    The colours are those of :func:`lookalike.viz.explain.render_explanation` (``RdYlGn`` on a
    fixed 0–1 scale); the result's longest side is between :data:`OVERLAY_MIN_SIDE` and
    :data:`OVERLAY_MAX_SIDE` pixels (or the image's own size when that lies between them).
    """
    rgb = image.convert("RGB")
    longest = max(rgb.size)
    # Small images (28 px digits) are enlarged with hard pixel edges, large ones shrunk.
    scale = (
        OVERLAY_MIN_SIDE / longest
        if longest < OVERLAY_MIN_SIDE
        else min(1.0, OVERLAY_MAX_SIDE / longest)
    )
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = longest < OVERLAY_MIN_SIDE
    rgb = rgb.resize(size, Image.Resampling.NEAREST if small else Image.Resampling.BILINEAR)
    heat_img = Image.fromarray(np.clip(heat, 0.0, 1.0).astype(np.float32))
    heat_small = np.asarray(heat_img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    colours = red_yellow_green(heat_small)
    base = np.asarray(rgb, dtype=np.float32) / 255.0
    mixed = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.clip(mixed * 255.0 + 0.5, 0, 255).astype(np.uint8))


_STOPS = np.array(
    [
        [0.647, 0.0, 0.149],
        [0.957, 0.427, 0.263],
        [1.0, 1.0, 0.749],
        [0.4, 0.741, 0.388],
        [0.0, 0.408, 0.216],
    ],
    dtype=np.float32,
)


def red_yellow_green(values: np.ndarray) -> np.ndarray:
    """Colours (..., 3) in [0, 1] for values in [0, 1]: red → yellow → green (like ``RdYlGn``)."""
    x = np.clip(values, 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.minimum(np.floor(x).astype(np.int64), len(_STOPS) - 2)
    t = (x - low)[..., None]
    out: np.ndarray = (1.0 - t) * _STOPS[low] + t * _STOPS[low + 1]
    return out


def explanation_figure(
    explanation: Explanation, image_a: Image.Image, image_b: Image.Image
) -> Image.Image:
    """The side-by-side figure of :func:`lookalike.viz.explain.render_explanation`, as an image."""
    from lookalike.viz.explain import render_explanation

    with tempfile.TemporaryDirectory(prefix="lookalike-explain-") as tmp:
        out = render_explanation(explanation, image_a, image_b, Path(tmp) / "explain.png")
        with Image.open(out) as figure:
            figure.load()
            return figure.copy()


def thumbnail_jpeg(image: Image.Image, size: int) -> bytes:
    """A JPEG at most ``size`` pixels on a side."""
    small = image.convert("RGB")
    small.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def model_zip(model: SiameseModel, *, reference_backbone: bool) -> bytes:
    """A zip of the model folder, inside a top folder :data:`MODEL_ZIP_FOLDER`.

    Args:
        model: The model (with its head, thresholds and metrics).
        reference_backbone: Store the backbone by name and sha256 instead of its weights
            (only for an unchanged pretrained backbone).
    """
    with tempfile.TemporaryDirectory(prefix="lookalike-download-") as tmp:
        folder = Path(tmp) / MODEL_ZIP_FOLDER
        model.save(folder, include_backbone=not reference_backbone)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(tmp).as_posix())
        return buffer.getvalue()
