"""Fuzzing the image loader: mutated bytes of small valid images never escape as anything
but a lookalike :class:`~lookalike.errors.ImageError` or a valid image.

Bounded to a few seconds here (``max_examples``); ``benchmarks/fuzz_loader.py`` runs the same
mutations for minutes.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike.errors import ImageError
from lookalike.imaging.images import load_image
from lookalike.imaging.preprocess import Preprocess

FUZZ_LIMITS = {"max_pixels": 1 << 20, "max_decoded_bytes": 8 << 20, "max_aspect": 50.0}
"""Tight limits, so a mutated header that claims a large image is refused at once."""


def seed_images() -> dict[str, bytes]:
    """Small valid images, one per allowed format and a few pixel modes."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    gray16 = Image.fromarray(rng.integers(0, 65536, (9, 7), dtype=np.uint16))
    floats = Image.fromarray(rng.random((8, 8), dtype=np.float32), mode="F")
    rgba = rgb.convert("RGBA")
    out: dict[str, bytes] = {}

    def add(name: str, img: Image.Image, fmt: str, **params: object) -> None:
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        out[name] = buf.getvalue()

    add("png", rgb, "PNG")
    add("png-rgba", rgba, "PNG")
    add("png-16", gray16, "PNG")
    add("png-palette", rgb.convert("P"), "PNG", transparency=3)
    add("jpeg", rgb, "JPEG", quality=80)
    add("jpeg-progressive", rgb, "JPEG", progressive=True)
    add("gif", rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P")])
    add("tiff", rgb, "TIFF")
    add("tiff-float", floats, "TIFF")
    add("tiff-deflate", rgb, "TIFF", compression="tiff_deflate")
    add("webp", rgb, "WEBP", quality=70)
    add("webp-lossless", rgba, "WEBP", lossless=True)
    add("bmp", rgb, "BMP")
    return out


SEEDS = seed_images()
NAMES = sorted(SEEDS)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed image with a few byte-level mutations: flips, overwrites, cuts, insertions."""
    data = bytearray(SEEDS[draw(st.sampled_from(NAMES))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "word", "cut", "insert", "dup"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "word":  # a size or offset field set to an extreme
            value = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 40000]))
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "dup" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def check_one(data: bytes, **limits: object) -> None:
    """Load ``data``; only an ImageError or a valid image (and model input) may come out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd metadata; that is fine
        try:
            image = load_image(data, **limits)  # type: ignore[arg-type]
        except ImageError:
            return
        assert image.mode == "RGB"
        assert image.width >= 1 and image.height >= 1
        array = Preprocess(input_size=(16, 16)).image_to_array(image)
    assert array.shape == (3, 16, 16)
    assert array.dtype == np.float32
    assert np.isfinite(array).all()


def test_seeds_are_valid_images() -> None:
    for name, data in SEEDS.items():
        image = load_image(data)
        assert image.size in ((16, 12), (7, 9), (8, 8)), name


@settings(
    max_examples=500,
    deadline=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutated())
def test_mutated_images_give_only_image_errors_or_images(data: bytes) -> None:
    check_one(data, **FUZZ_LIMITS)


@settings(max_examples=60, deadline=2000, database=None)
@given(st.binary(max_size=256))
def test_random_bytes_give_only_image_errors(data: bytes) -> None:
    check_one(data)


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_of_every_seed(name: str) -> None:
    data = SEEDS[name]
    for stop in range(0, len(data), max(1, len(data) // 40)):
        check_one(data[:stop], **FUZZ_LIMITS)
