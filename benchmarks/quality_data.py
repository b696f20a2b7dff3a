"""Offline dataset generators for the training-quality benchmark.

Three regimes, all written as ``ROOT/<split>/<identity>/<n>.png`` (8-bit grayscale, white ink
on black, like MNIST) plus a ``ROOT/manifest.json`` that records the parameters, the fonts
used and the counts:

* :func:`digits_closed_set`: closed set. The same ten identities (digits 0-9) at train and
  test time, disjoint images. Either scikit-learn's bundled 8x8 digits (upscaled) or an
  MNIST-like set rendered from the fonts installed on the machine; by default the train and
  test splits use disjoint font designs, like MNIST's disjoint writers.
* :func:`glyph_open_set`: Omniglot-like open set. Each character (code point) is one
  identity, its instances are that character rendered by different fonts plus augmentation;
  train and test characters are disjoint.
* :func:`glyph_shifted_set`: open set with a domain shift: train characters from one kind of
  script (by default Latin, Greek and Cyrillic letters), test characters from another (by
  default CJK ideographs).

Nothing touches the network; the only dependencies are numpy, Pillow and (for the
``"sklearn"`` digits) scikit-learn. Fonts come from the system font folders; on Debian:
``apt-get install fonts-noto-core fonts-noto-cjk fonts-freefont-ttf fonts-dejavu-core
fonts-liberation fonts-unifont``. A character only counts as covered by a font when the
rendered glyph is visible and differs from that font's .notdef ("tofu") glyph, and identities
whose renderings (nearly) coincide with an earlier identity's, such as Latin ``A`` and Greek
capital alpha, are dropped. Output is deterministic for a given seed and font set.

Run ``python benchmarks/quality_data.py OUT`` to generate every set into ``OUT`` and print the
counts (``--small`` for a quick sample, ``--census`` for how many identities each script can
provide).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shutil
import sys
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "DEFAULT_OPEN_SCRIPTS",
    "DEFAULT_SHIFT_TEST_SCRIPTS",
    "DEFAULT_SHIFT_TRAIN_SCRIPTS",
    "DIGIT_AUGMENT",
    "FONT_PACKAGES",
    "GLYPH_AUGMENT",
    "SCRIPTS",
    "Augment",
    "DatasetInfo",
    "FontFace",
    "digits_closed_set",
    "find_fonts",
    "glyph_open_set",
    "glyph_shifted_set",
    "main",
    "script_capacity",
]

FloatArray = NDArray[np.float32]

#: Debian packages that provide the fonts these generators were written against.
FONT_PACKAGES: tuple[str, ...] = (
    "fonts-noto-core",
    "fonts-noto-cjk",
    "fonts-freefont-ttf",
    "fonts-dejavu-core",
    "fonts-liberation",
    "fonts-unifont",
)
_INSTALL_HINT = "apt-get install -y " + " ".join(FONT_PACKAGES)

_FONT_SUFFIXES = frozenset({".ttf", ".otf", ".ttc"})
_MAX_TTC_FACES = 64
# Code points no font maps: what a font draws for them is its .notdef ("tofu") glyph.
_TOFU_PROBES = ("\uffff", "\U0010ffff")
_LETTER_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo"})
_SIG = 16  # side of the small bitmaps used to compare renderings
_SPLITS = ("train", "test")
_INK_LUT = [255 if v >= 96 else 0 for v in range(256)]  # pixels that count as ink when cropping
# Bitmap-derived fonts (GNU Unifont), smoothed after rendering, and the ramp used to do so.
_PIXEL_FONTS = ("unifont",)
_SMOOTH_LUT = [int(np.clip((v - 80) * 255 / 60, 0, 255)) for v in range(256)]
# Words stripped from a font file's stem to get its family (FreeSansBoldOblique -> FreeSans).
_STYLE_WORDS = (
    "Bold",
    "Oblique",
    "Italic",
    "Regular",
    "Book",
    "ExtraLight",
    "Light",
    "Medium",
    "Condensed",
    "Narrow",
    "Display",
    "Slanted",
)
# Mean absolute differences (0-1 pixels, on 16x16 renderings). Measured on the Debian fonts:
# homoglyphs (Latin/Greek/Cyrillic A, o, x; turned e and schwa) are at most 0.025 apart in the
# same face, distinct letters at least 0.075 (``p`` and ``rho``; ``E``/``F`` 0.10, ``O``/``o``
# 0.12); the digits that Noto's script fonts copy from Noto Sans differ by 0.02-0.035 from it.
_STYLE_EPS = 0.04  # two fonts' renderings of a character closer than this: one style
_CHAR_EPS = 0.045  # two characters closer than this (over shared faces): one identity
_SAME_EPS = 0.025  # two digits of one font closer than this: not a digit font
_DESIGN_EPS = 0.05  # digit fonts closer than this stay on one side of a train/test split

#: Named code point ranges (inclusive). Only letters (categories Lu, Ll, Lt, Lo) without a
#: Unicode decomposition are used from them, so precomposed accented letters, compatibility
#: forms and combining marks are skipped.
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x0250, 0x02AF)),
    "greek": ((0x0370, 0x03FF),),
    "cyrillic": ((0x0400, 0x052F),),
    "armenian": ((0x0531, 0x058F),),
    "hebrew": ((0x05D0, 0x05EA),),
    "arabic": ((0x0620, 0x064A), (0x066E, 0x06D3)),
    "syriac": ((0x0710, 0x074F),),
    "thaana": ((0x0780, 0x07B1),),
    "nko": ((0x07C0, 0x07FF),),
    "devanagari": ((0x0900, 0x097F),),
    "bengali": ((0x0980, 0x09FF),),
    "gurmukhi": ((0x0A00, 0x0A7F),),
    "gujarati": ((0x0A80, 0x0AFF),),
    "oriya": ((0x0B00, 0x0B7F),),
    "tamil": ((0x0B80, 0x0BFF),),
    "telugu": ((0x0C00, 0x0C7F),),
    "kannada": ((0x0C80, 0x0CFF),),
    "malayalam": ((0x0D00, 0x0D7F),),
    "sinhala": ((0x0D80, 0x0DFF),),
    "thai": ((0x0E00, 0x0E7F),),
    "lao": ((0x0E80, 0x0EFF),),
    "tibetan": ((0x0F00, 0x0FFF),),
    "myanmar": ((0x1000, 0x109F),),
    "georgian": ((0x10A0, 0x10FF),),
    "ethiopic": ((0x1200, 0x137F),),
    "cherokee": ((0x13A0, 0x13FF),),
    "canadian": ((0x1400, 0x167F),),
    "runic": ((0x16A0, 0x16F0),),
    "khmer": ((0x1780, 0x17FF),),
    "mongolian": ((0x1800, 0x18AF),),
    "tifinagh": ((0x2D30, 0x2D7F),),
    "hiragana": ((0x3040, 0x309F),),
    "katakana": ((0x30A0, 0x30FF),),
    "bopomofo": ((0x3100, 0x312F),),
    "cjk": ((0x4E00, 0x9FFF),),
    "yi": ((0xA000, 0xA48F),),
    "vai": ((0xA500, 0xA63F),),
    "hangul": ((0xAC00, 0xD7A3),),
}

#: Scripts mixed in :func:`glyph_open_set` by default: the 32 that the Debian Noto, FreeFont,
#: DejaVu, Liberation and Unifont packages cover with at least 4 distinct fonts for 25+ letters
#: (like Omniglot's 50 alphabets; syriac, tibetan, runic, mongolian, yi and vai fall short).
DEFAULT_OPEN_SCRIPTS: tuple[str, ...] = (
    "latin",
    "greek",
    "cyrillic",
    "armenian",
    "georgian",
    "hebrew",
    "arabic",
    "thaana",
    "nko",
    "devanagari",
    "bengali",
    "gurmukhi",
    "gujarati",
    "oriya",
    "tamil",
    "telugu",
    "kannada",
    "malayalam",
    "sinhala",
    "thai",
    "lao",
    "myanmar",
    "khmer",
    "ethiopic",
    "cherokee",
    "canadian",
    "tifinagh",
    "hiragana",
    "katakana",
    "bopomofo",
    "hangul",
    "cjk",
)
#: Train and test scripts of :func:`glyph_shifted_set` by default.
DEFAULT_SHIFT_TRAIN_SCRIPTS: tuple[str, ...] = ("latin", "greek", "cyrillic")
DEFAULT_SHIFT_TEST_SCRIPTS: tuple[str, ...] = ("cjk",)


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """Random per-image distortions applied to a rendered glyph.

    Attributes:
        rotation: Maximum absolute rotation in degrees.
        scale: Range of the isotropic scale factor.
        shear: Maximum absolute horizontal shear factor.
        translate: Maximum absolute shift in output pixels, after centring by centre of mass.
        thickness: Stroke changes to draw from, at twice the output resolution: ``-k`` erodes
            with ``MinFilter(k)``, ``k`` dilates with ``MaxFilter(k)``, 0 leaves the stroke.
        blur: Maximum Gaussian blur radius, at twice the output resolution.
        noise: Maximum standard deviation of the additive Gaussian noise (0-255 scale).
    """

    rotation: float = 15.0
    scale: tuple[float, float] = (0.85, 1.05)
    shear: float = 0.25
    translate: float = 1.5
    thickness: tuple[int, ...] = (-3, 0, 0, 3, 5)
    blur: float = 1.2
    noise: float = 10.0


#: MNIST-like distortions for the rendered digits.
DIGIT_AUGMENT = Augment()
#: Milder distortions for the glyph sets (complex characters at 32 px have little room).
GLYPH_AUGMENT = Augment(
    rotation=10.0,
    scale=(0.9, 1.05),
    shear=0.15,
    translate=1.0,
    thickness=(-3, 0, 0, 3),
    blur=1.0,
    noise=6.0,
)


@dataclass(frozen=True, order=True)
class FontFace:
    """One face of a font file (``.ttc`` collections hold several).

    Attributes:
        path: Font file.
        index: Face index inside the file (0 for ``.ttf`` and ``.otf``).
    """

    path: Path
    index: int = 0

    @property
    def label(self) -> str:
        """The file name, with ``#index`` for faces of a collection."""
        if self.path.suffix.lower() == ".ttc":
            return f"{self.path.name}#{self.index}"
        return self.path.name

    @property
    def family(self) -> str:
        """A family key (file stem up to ``-``, less style words such as ``Bold``).

        Used to keep related designs on one side of a train/test font split.
        """
        family = self.path.stem.split("-")[0]
        stripped = True
        while stripped:
            stripped = False
            for suffix in _STYLE_WORDS:
                if family.endswith(suffix) and len(family) > len(suffix):
                    family = family[: -len(suffix)]
                    stripped = True
        return family

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        """Open the face at ``size`` pixels with Pillow's basic (per-code-point) layout.

        Args:
            size: Font size in pixels.

        Returns:
            The Pillow font.

        Raises:
            OSError: If FreeType cannot open the face at that size (bitmap-only fonts).
        """
        # FreeTypeFont, not ImageFont.truetype: truetype silently falls back to searching the
        # system font folders for a file of the same name when the path does not open.
        return ImageFont.FreeTypeFont(
            str(self.path), size, index=self.index, layout_engine=ImageFont.Layout.BASIC
        )


@dataclass
class DatasetInfo:
    """What a generator wrote.

    Attributes:
        name: Generator name (``digits_closed_set`` ...).
        root: Output folder.
        counts: ``{split: {identity: number of images}}``.
        fonts: ``{split: {font file path (with #index for collections): images}}``; empty for
            the scikit-learn digits.
        seconds: Wall-clock generation time.
        params: The parameters that define the set (for the manifest).
    """

    name: str
    root: Path
    counts: dict[str, dict[str, int]]
    fonts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    params: dict[str, object] = field(default_factory=dict)

    def images(self, split: str) -> int:
        """Number of images in ``split``.

        Args:
            split: ``"train"`` or ``"test"``.

        Returns:
            The image count (0 for an unknown split).
        """
        return sum(self.counts.get(split, {}).values())

    def summary(self) -> str:
        """One line per split: identities and images.

        Returns:
            A short human-readable summary.
        """
        lines = [f"{self.name} -> {self.root} ({self.seconds:.1f} s)"]
        for split, per_id in self.counts.items():
            fonts = len(self.fonts.get(split, {}))
            used = f", {fonts} fonts" if fonts else ""
            lines.append(
                f"  {split}: {len(per_id)} identities, {sum(per_id.values())} images{used}"
            )
        return "\n".join(lines)

    def report(self) -> str:
        """The summary plus every font path used and how many images each rendered.

        Returns:
            A human-readable report.
        """
        lines = [self.summary()]
        for split, used in self.fonts.items():
            lines.append(f"  fonts used for {split}:")
            lines.extend(f"    {n:6d}  {path}" for path, n in sorted(used.items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable form (what ``manifest.json`` holds).

        Returns:
            The manifest dictionary.
        """
        return {
            "generator": self.name,
            "params": self.params,
            "seconds": round(self.seconds, 3),
            "counts": self.counts,
            "fonts": self.fonts,
        }


# --------------------------------------------------------------------------------------------
# Fonts and glyph rendering
# --------------------------------------------------------------------------------------------


def _default_font_dirs() -> list[Path]:
    dirs = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts")]
    try:
        home = Path.home()
    except RuntimeError:
        return dirs
    return [*dirs, home / ".local" / "share" / "fonts", home / ".fonts"]


def find_fonts(dirs: Iterable[Path | str] | None = None) -> list[FontFace]:
    """Every face of every ``.ttf``/``.otf``/``.ttc`` file under ``dirs``, sorted by path.

    Faces FreeType cannot open at an arbitrary size (bitmap-only fonts) are skipped.

    Args:
        dirs: Folders searched recursively; by default the system and user font folders.

    Returns:
        The faces, in a deterministic order (resolved path, then face index).
    """
    roots = [Path(d) for d in dirs] if dirs is not None else _default_font_dirs()
    files = sorted(
        {
            p.resolve()
            for root in roots
            if root.is_dir()
            for p in root.rglob("*")
            if p.suffix.lower() in _FONT_SUFFIXES and p.is_file()
        }
    )
    faces: list[FontFace] = []
    for path in files:
        count = _MAX_TTC_FACES if path.suffix.lower() == ".ttc" else 1
        for index in range(count):
            face = FontFace(path, index)
            try:
                face.load(32)
            except OSError:
                break
            faces.append(face)
    return faces


@dataclass(frozen=True)
class _Glyph:
    """A rendered glyph: cropped to its ink, scaled to fit the renderer's box."""

    image: Image.Image
    sig: FloatArray  # _SIG x _SIG rendering on the box, flattened, in [0, 1]
    digest: bytes  # exact identity of the bitmap


@dataclass(frozen=True)
class _Style:
    face: FontFace
    glyph: _Glyph


class _Renderer:
    """Renders and caches glyphs per (face, character) for one output size."""

    def __init__(self, size: int, fit: float) -> None:
        if size < 8:
            raise ValueError(f"size must be at least 8 px, got {size}")
        self.size = size
        self.work = 2 * size  # augmentation happens here, then a 2x box downsample
        self.px = 3 * size  # glyphs are rasterised at this font size, then scaled down
        self.box = max(4, round(fit * self.work))
        self._fonts: dict[FontFace, ImageFont.FreeTypeFont | None] = {}
        self._tofu: dict[FontFace, list[tuple[tuple[int, int, int, int], bytes]]] = {}
        self._glyphs: dict[tuple[FontFace, str], _Glyph | None] = {}

    def font(self, face: FontFace) -> ImageFont.FreeTypeFont | None:
        if face not in self._fonts:
            try:
                self._fonts[face] = face.load(self.px)
            except OSError:
                self._fonts[face] = None
        return self._fonts[face]

    @staticmethod
    def _bbox(font: ImageFont.FreeTypeFont, ch: str) -> tuple[int, int, int, int]:
        left, top, right, bottom = font.getbbox(ch)
        return int(left), int(top), int(right), int(bottom)

    @staticmethod
    def _raw(font: ImageFont.FreeTypeFont, ch: str, bbox: tuple[int, int, int, int]) -> bytes:
        left, top, right, bottom = bbox
        im = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(im).text((-left, -top), ch, fill=255, font=font)
        return im.tobytes()

    def _tofus(self, face: FontFace) -> list[tuple[tuple[int, int, int, int], bytes]]:
        if face not in self._tofu:
            font = self.font(face)
            found: list[tuple[tuple[int, int, int, int], bytes]] = []
            if font is not None:
                for probe in _TOFU_PROBES:
                    bbox = self._bbox(font, probe)
                    if bbox[2] > bbox[0] and bbox[3] > bbox[1]:
                        found.append((bbox, self._raw(font, probe, bbox)))
            self._tofu[face] = found
        return self._tofu[face]

    def maybe_covers(self, face: FontFace, ch: str) -> bool:
        """Cheap test (metrics only): non-empty and not shaped like the face's .notdef."""
        font = self.font(face)
        if font is None:
            return False
        bbox = self._bbox(font, ch)
        if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
            return False
        return all(bbox != tofu_bbox for tofu_bbox, _ in self._tofus(face))

    def glyph(self, face: FontFace, ch: str) -> _Glyph | None:
        """The normalised glyph, or None when the face lacks a visible, non-tofu glyph."""
        key = (face, ch)
        if key not in self._glyphs:
            self._glyphs[key] = self._render(face, ch)
        return self._glyphs[key]

    def _render(self, face: FontFace, ch: str) -> _Glyph | None:
        font = self.font(face)
        if font is None:
            return None
        bbox = self._bbox(font, ch)
        width, height = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if width <= 0 or height <= 0:
            return None
        raw = self._raw(font, ch, bbox)
        if any(bbox == tb and raw == tofu for tb, tofu in self._tofus(face)):
            return None
        im = Image.frombytes("L", (width, height), raw)
        if face.path.name.lower().startswith(_PIXEL_FONTS):
            # Outlines traced from a 16 px bitmap: diagonal strokes are squares that touch at
            # their corners and turn into dotted lines once scaled down. Round them off.
            padded = Image.new("L", (width + 2 * self.px // 16, height + 2 * self.px // 16), 0)
            padded.paste(im, (self.px // 16, self.px // 16))
            im = padded.filter(ImageFilter.GaussianBlur(self.px / 40)).point(_SMOOTH_LUT)
        ink = im.point(_INK_LUT).getbbox()
        if ink is None:
            return None
        im = im.crop(ink)
        w, h = im.size
        if max(w, h) < self.px // 12:  # a dot or a mark, not a character
            return None
        # Fit the box, but scale glyphs smaller than half an em (Hebrew yod, Arabic hamza,
        # syllabics finals) as if they were half an em, so they stay small marks.
        scale = self.box / max(w, h, self.px // 2)
        im = im.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
        )
        canvas = Image.new("L", (self.box, self.box), 0)
        canvas.paste(im, ((self.box - im.width) // 2, (self.box - im.height) // 2))
        small = canvas.resize((_SIG, _SIG), Image.Resampling.BOX)
        sig = (np.asarray(small, dtype=np.float32) / 255.0).ravel()
        if float(sig.max()) < 0.2:
            return None
        digest = hashlib.blake2b(canvas.tobytes(), digest_size=16, person=b"quality-glyph").digest()
        return _Glyph(canvas, sig, digest)

    def compose(self, glyph: _Glyph, rng: np.random.Generator, aug: Augment) -> Image.Image:
        """One augmented ``size`` x ``size`` image of ``glyph``, centred by centre of mass."""
        margin = 4
        base = Image.new("L", (self.box + 2 * margin, self.box + 2 * margin), 0)
        base.paste(glyph.image, (margin, margin))
        k = int(rng.choice(np.asarray(aug.thickness)))
        if k < 0:
            thin = base.filter(ImageFilter.MinFilter(-k))
            # Do not erase hairline fonts: keep the original when too little ink survives.
            if _ink(thin) >= 0.4 * _ink(base):
                base = thin
        elif k > 0:
            base = base.filter(ImageFilter.MaxFilter(k))
        arr = np.asarray(base, dtype=np.float64)
        total = float(arr.sum())
        centres = np.arange(arr.shape[0], dtype=np.float64) + 0.5
        com = np.array(
            [float(arr.sum(axis=0) @ centres) / total, float(arr.sum(axis=1) @ centres) / total]
        )
        angle = np.deg2rad(rng.uniform(-aug.rotation, aug.rotation))
        scale = rng.uniform(aug.scale[0], aug.scale[1])
        shear = rng.uniform(-aug.shear, aug.shear)
        shift = rng.uniform(-aug.translate, aug.translate, size=2) * (self.work / self.size)
        cos, sin = np.cos(angle), np.sin(angle)
        forward = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0, 1]])
        inverse = np.linalg.inv(forward)
        offset = com - inverse @ (np.array([self.work / 2, self.work / 2]) + shift)
        out = base.transform(
            (self.work, self.work),
            Image.Transform.AFFINE,
            (
                float(inverse[0, 0]),
                float(inverse[0, 1]),
                float(offset[0]),
                float(inverse[1, 0]),
                float(inverse[1, 1]),
                float(offset[1]),
            ),
            resample=Image.Resampling.BILINEAR,
            fillcolor=0,
        )
        radius = rng.uniform(0.0, aug.blur)
        if radius > 0.15:
            out = out.filter(ImageFilter.GaussianBlur(radius))
        out = out.reduce(2)
        sigma = rng.uniform(0.0, aug.noise)
        pixels = np.asarray(out, dtype=np.float32)
        if sigma > 0.0:
            pixels = pixels + rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _ink(image: Image.Image) -> float:
    return float(np.asarray(image, dtype=np.float64).sum())


def _mean_abs(a: FloatArray, b: FloatArray) -> float:
    return float(np.abs(a - b).mean())


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _prepare_root(root: Path, overwrite: bool) -> None:
    for split in _SPLITS:
        folder = root / split
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{folder} is not empty (pass overwrite=True to replace it)")
            shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)


def _save(image: Image.Image, root: Path, split: str, identity: str, n: int) -> None:
    folder = root / split / identity
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / f"{n}.png", format="PNG", compress_level=1)


def _finish(info: DatasetInfo, started: float) -> DatasetInfo:
    info.seconds = time.perf_counter() - started
    (info.root / "manifest.json").write_text(json.dumps(info.to_json(), indent=1) + "\n")
    return info


def _write_identity(
    renderer: _Renderer,
    info: DatasetInfo,
    split: str,
    identity: str,
    styles: Sequence[_Style],
    count: int,
    rng: np.random.Generator,
    aug: Augment,
    seen: set[bytes],
) -> None:
    """Write ``count`` augmented images of one identity, cycling through its styles."""
    order = rng.permutation(len(styles))
    fonts = info.fonts.setdefault(split, {})
    for n in range(count):
        style = styles[int(order[n % len(styles)])]
        image = renderer.compose(style.glyph, rng, aug)
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        for _ in range(8):  # no two images of a set are identical (train/test disjoint)
            if digest not in seen:
                break
            image = renderer.compose(style.glyph, rng, aug)
            digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        seen.add(digest)
        _save(image, info.root, split, identity, n)
        key = str(style.face.path.parent / style.face.label)
        fonts[key] = fonts.get(key, 0) + 1
    info.counts.setdefault(split, {})[identity] = count


def _check_counts(**counts: float) -> None:
    """Raise ValueError for a negative count, or a non-positive ``per_char``/``min_fonts``."""
    for name, value in counts.items():
        positive = name in {"per_char", "min_fonts", "size"}
        if value < (1 if positive else 0):
            raise ValueError(f"{name} must be {'>= 1' if positive else '>= 0'}, got {value}")


def _too_few_fonts(what: str, have: int, need: int, detail: str = "") -> RuntimeError:
    extra = f" ({detail})" if detail else ""
    return RuntimeError(
        f"{what}: only {have} usable, need {need}{extra}. Install more fonts, e.g. "
        f"`{_INSTALL_HINT}` (as root), or ask for fewer identities/fonts."
    )


# --------------------------------------------------------------------------------------------
# 1. Closed set: digits
# --------------------------------------------------------------------------------------------


def digits_closed_set(
    root: Path | str,
    *,
    seed: int = 0,
    source: Literal["fonts", "sklearn"] = "fonts",
    size: int = 28,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    split_fonts: bool = True,
    test_font_fraction: float = 0.3,
    min_fonts: int = 8,
    augment: Augment | None = None,
    fonts: Sequence[FontFace] | None = None,
    overwrite: bool = False,
) -> DatasetInfo:
    """Closed-set regime: digits 0-9 (identities ``"0"``..``"9"``) in both splits.

    Args:
        root: Output folder; ``root/train/<digit>/<n>.png`` and ``root/test/...`` are written.
        seed: Seed; the output is a deterministic function of it (and of the installed fonts).
        source: ``"fonts"`` renders MNIST-like digits from the installed fonts (random affine,
            stroke thickness, blur, noise; white on black, the digit fitted to a
            ``20/28`` box and centred by centre of mass); ``"sklearn"`` upscales scikit-learn's
            bundled 8x8 digits (1,797 images, 174-183 per class) with bilinear resampling.
        size: Output side in pixels.
        train_per_class: Training images per digit; default 300 (``"fonts"``) or 120
            (``"sklearn"``, which holds at most 174 images of its rarest digit in all).
        test_per_class: Test images per digit; default 100 (``"fonts"``) or 50 (``"sklearn"``).
        split_fonts: With ``"fonts"``, render train and test digits from disjoint font
            designs (like MNIST's disjoint writers): fonts of one family, or whose digits look
            alike, go to the same side. Otherwise both splits use every font and differ only
            by augmentation.
        test_font_fraction: Share of the fonts given to the test split when ``split_fonts``.
        min_fonts: Fewest distinct digit fonts accepted before raising.
        augment: Distortions; :data:`DIGIT_AUGMENT` by default.
        fonts: Candidate faces; :func:`find_fonts` by default.
        overwrite: Replace existing ``train``/``test`` folders under ``root``.

    Returns:
        What was written.

    Raises:
        RuntimeError: If fewer than ``min_fonts`` distinct fonts render all ten digits.
        ValueError: If the scikit-learn digits cannot supply the requested counts.
        FileExistsError: If ``root`` already holds a split and ``overwrite`` is false.
    """
    started = time.perf_counter()
    out = Path(root)
    if source == "sklearn":
        n_train = 120 if train_per_class is None else train_per_class
        n_test = 50 if test_per_class is None else test_per_class
        _check_counts(train_per_class=n_train, test_per_class=n_test)
        return _finish(_sklearn_digits(out, seed, size, n_train, n_test, overwrite), started)
    if source != "fonts":
        raise ValueError(f"source must be 'fonts' or 'sklearn', got {source!r}")
    n_train = 300 if train_per_class is None else train_per_class
    n_test = 100 if test_per_class is None else test_per_class
    _check_counts(train_per_class=n_train, test_per_class=n_test, min_fonts=min_fonts)
    if split_fonts and not 0.0 < test_font_fraction < 1.0:
        raise ValueError(f"test_font_fraction must be in (0, 1), got {test_font_fraction}")
    aug = DIGIT_AUGMENT if augment is None else augment
    renderer = _Renderer(size, fit=20 / 28)
    faces = sorted(find_fonts() if fonts is None else fonts)
    styles = _digit_faces(renderer, faces)
    if len(styles) < min_fonts:
        raise _too_few_fonts("fonts that render the digits 0-9", len(styles), min_fonts)
    rng = np.random.default_rng([seed, 0xD1])
    by_split: dict[str, list[FontFace]] = {"train": list(styles), "test": list(styles)}
    if split_fonts:
        groups = _design_groups(styles)
        if len(groups) < 2:
            raise _too_few_fonts("font designs for disjoint train/test digits", 1, 2)
        test_faces: set[FontFace] = set()
        for i in rng.permutation(len(groups)):
            if len(test_faces) >= test_font_fraction * len(styles):
                break
            test_faces.update(groups[int(i)])
        by_split = {
            "train": [f for f in styles if f not in test_faces],
            "test": [f for f in styles if f in test_faces],
        }
        if not by_split["train"]:
            raise _too_few_fonts("font designs left for the training digits", 0, 1)
    info = DatasetInfo(
        "digits_closed_set",
        out,
        {},
        params={
            "source": source,
            "seed": seed,
            "size": size,
            "train_per_class": n_train,
            "test_per_class": n_test,
            "split_fonts": split_fonts,
            "augment": _augment_params(aug),
            "fonts": {split: [f.label for f in fs] for split, fs in by_split.items()},
        },
    )
    _prepare_root(out, overwrite)
    seen: set[bytes] = set()
    for split_id, (split, count) in enumerate((("train", n_train), ("test", n_test))):
        for digit in range(10):
            split_styles = [_Style(f, styles[f][digit]) for f in by_split[split]]
            sub = np.random.default_rng([seed, split_id, digit])
            _write_identity(renderer, info, split, str(digit), split_styles, count, sub, aug, seen)
    return _finish(info, started)


def _digit_faces(renderer: _Renderer, faces: Sequence[FontFace]) -> dict[FontFace, list[_Glyph]]:
    """Faces with ten visible, mutually distinct digits, dropping near-duplicate designs."""
    kept: dict[FontFace, list[_Glyph]] = {}
    kept_sigs: list[FloatArray] = []
    for face in faces:
        if not renderer.maybe_covers(face, "0"):
            continue
        glyphs = [renderer.glyph(face, str(d)) for d in range(10)]
        digits = [g for g in glyphs if g is not None]
        if len(digits) < 10:
            continue
        sigs = np.stack([g.sig for g in digits])
        gaps = np.abs(sigs[:, None, :] - sigs[None, :, :]).mean(axis=2)
        if float(gaps[~np.eye(10, dtype=bool)].min()) < _SAME_EPS:
            continue  # symbol fonts and the like: digits that do not look like digits
        sig = sigs.ravel()
        if any(_mean_abs(sig, other) < _STYLE_EPS for other in kept_sigs):
            continue
        kept[face] = digits
        kept_sigs.append(sig)
    return kept


def _design_groups(styles: Mapping[FontFace, Sequence[_Glyph]]) -> list[list[FontFace]]:
    """Connected groups of faces with the same family or similar digits (``_DESIGN_EPS``).

    Noto's script fonts carry copies of Noto Sans/Serif digits under other names, so a split by
    file name alone would put one design on both sides.
    """
    faces = list(styles)
    sigs = np.stack([np.concatenate([g.sig for g in styles[f]]) for f in faces])
    parent = list(range(len(faces)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(faces)):
        gaps = np.abs(sigs[:i] - sigs[i]).mean(axis=1)
        for j in range(i):
            if gaps[j] < _DESIGN_EPS or faces[i].family == faces[j].family:
                parent[root(i)] = root(j)
    groups: dict[int, list[FontFace]] = {}
    for i, face in enumerate(faces):
        groups.setdefault(root(i), []).append(face)
    return [groups[k] for k in sorted(groups)]


def _sklearn_digits(
    root: Path, seed: int, size: int, n_train: int, n_test: int, overwrite: bool
) -> DatasetInfo:
    # Imported here (and untyped) so the font generators work without scikit-learn.
    datasets = importlib.import_module("sklearn.datasets")
    bunch = datasets.load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5D])
    info = DatasetInfo(
        "digits_closed_set",
        root,
        {},
        params={
            "source": "sklearn",
            "seed": seed,
            "size": size,
            "train_per_class": n_train,
            "test_per_class": n_test,
        },
    )
    chosen_per_digit: list[NDArray[np.int64]] = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        if n_train + n_test > idx.size:
            raise ValueError(
                f"scikit-learn has {idx.size} images of digit {digit}; cannot take "
                f"{n_train} train + {n_test} test"
            )
        chosen_per_digit.append(idx[rng.permutation(idx.size)])
    _prepare_root(root, overwrite)
    for digit, idx in enumerate(chosen_per_digit):
        for split, chosen in (("train", idx[:n_train]), ("test", idx[n_train : n_train + n_test])):
            for n, i in enumerate(chosen):
                pixels = np.clip(np.rint(images[int(i)] * (255.0 / 16.0)), 0, 255)
                small = Image.fromarray(pixels.astype(np.uint8))
                big = small.resize((size, size), Image.Resampling.BILINEAR)
                _save(big, root, split, str(digit), n)
            info.counts.setdefault(split, {})[str(digit)] = len(chosen)
    return info


# --------------------------------------------------------------------------------------------
# 2./3. Open sets: one identity per character
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    script: str
    char: str
    styles: tuple[_Style, ...]

    @property
    def name(self) -> str:
        return f"{self.script}-U+{ord(self.char):04X}"


class _Dedupe:
    """Rejects characters that look like an accepted character.

    Two characters are compared face by face, on the fonts both were rendered with: identical
    bitmaps in one face, or a mean difference below ``_CHAR_EPS`` over the shared faces, make
    the newcomer a duplicate (Latin ``A`` and Greek capital alpha, case pairs such as ``O`` and
    ``o`` that only differ in size before scaling to the box).
    """

    def __init__(self) -> None:
        self._n = 0
        self._digests: set[tuple[FontFace, bytes]] = set()
        # Per face: ids of the accepted characters rendered with it, and their signatures
        # (arrays with spare rows; the first ``len(ids)`` are filled).
        self._ids: dict[FontFace, list[int]] = {}
        self._sigs: dict[FontFace, FloatArray] = {}

    def nearest(self, styles: Sequence[_Style]) -> float:
        """Smallest mean difference to an accepted character over shared faces (inf if none)."""
        if not self._n:
            return float("inf")
        sums = np.zeros(self._n, dtype=np.float64)
        counts = np.zeros(self._n, dtype=np.int64)
        for style in styles:
            ids = self._ids.get(style.face)
            if not ids:
                continue
            sigs = self._sigs[style.face][: len(ids)]
            sums[ids] += np.abs(sigs - style.glyph.sig).mean(axis=1)
            counts[ids] += 1
        shared = counts > 0
        if not shared.any():
            return float("inf")
        return float((sums[shared] / counts[shared]).min())

    def _add(self, face: FontFace, sig: FloatArray) -> None:
        ids = self._ids.setdefault(face, [])
        sigs = self._sigs.get(face)
        if sigs is None:
            sigs = np.zeros((16, sig.size), dtype=np.float32)
        elif len(ids) == len(sigs):
            sigs = np.concatenate([sigs, np.zeros_like(sigs)])
        sigs[len(ids)] = sig
        self._sigs[face] = sigs
        ids.append(self._n)

    def accept(self, styles: Sequence[_Style]) -> bool:
        """Record ``styles`` as a new character unless it duplicates an accepted one."""
        keys = {(s.face, s.glyph.digest) for s in styles}
        if keys & self._digests or self.nearest(styles) < _CHAR_EPS:
            return False
        for style in styles:
            self._add(style.face, style.glyph.sig)
        self._digests |= keys
        self._n += 1
        return True


def _resolve_scripts(
    scripts: Sequence[str] | Mapping[str, Sequence[tuple[int, int]]],
) -> dict[str, list[str]]:
    """Script name -> candidate characters (letters without a decomposition)."""
    if isinstance(scripts, Mapping):
        ranges = {name: list(r) for name, r in scripts.items()}
    else:
        unknown = [name for name in scripts if name not in SCRIPTS]
        if unknown:
            raise ValueError(f"unknown scripts {unknown}; known: {sorted(SCRIPTS)}")
        ranges = {name: list(SCRIPTS[name]) for name in scripts}
    resolved: dict[str, list[str]] = {}
    for name, spans in ranges.items():
        chars = [
            chr(cp)
            for start, end in spans
            for cp in range(start, end + 1)
            if unicodedata.category(chr(cp)) in _LETTER_CATEGORIES
            and not unicodedata.decomposition(chr(cp))
        ]
        resolved[name] = sorted(set(chars))
    return resolved


def _script_faces(
    renderer: _Renderer, faces: Sequence[FontFace], chars: Sequence[str]
) -> list[FontFace]:
    """Faces that (by metrics) cover any of a spread of probe characters of a script."""
    if not chars:
        return []
    picks = np.unique(np.linspace(0, len(chars) - 1, min(8, len(chars))).astype(int))
    probes = [chars[int(i)] for i in picks]
    return [f for f in faces if any(renderer.maybe_covers(f, ch) for ch in probes)]


def _styles(
    renderer: _Renderer, faces: Sequence[FontFace], ch: str, max_styles: int
) -> list[_Style]:
    """Up to ``max_styles`` mutually distinct renderings of ``ch``, taking faces in order."""
    styles: list[_Style] = []
    for face in faces:
        glyph = renderer.glyph(face, ch)
        if glyph is None:
            continue
        if any(_mean_abs(glyph.sig, s.glyph.sig) < _STYLE_EPS for s in styles):
            continue
        styles.append(_Style(face, glyph))
        if len(styles) >= max_styles:
            break
    return styles


def _collect(
    renderer: _Renderer,
    faces: Sequence[FontFace],
    scripts: Mapping[str, Sequence[str]],
    needed: int | None,
    seed: int,
    min_fonts: int,
    max_styles: int,
    dedupe: _Dedupe,
) -> tuple[list[_Identity], dict[str, int]]:
    """Accept characters round-robin over scripts (balanced) until ``needed`` are found.

    Characters are tried in a seeded order; each takes its styles from the faces in the
    (seeded) order given, so the characters of a script share one set of fonts, like the
    drawers of an Omniglot alphabet, and look-alikes are compared on common fonts.

    Returns the identities and, per script, how many it contributed.
    """
    queues: dict[str, Iterator[str]] = {}
    script_faces: dict[str, list[FontFace]] = {}
    for k, (name, chars) in enumerate(sorted(scripts.items())):
        order = np.random.default_rng([seed, 0x5C, k]).permutation(len(chars))
        queues[name] = iter([chars[int(i)] for i in order])
        script_faces[name] = _script_faces(renderer, faces, chars)
    accepted: list[_Identity] = []
    per_script = dict.fromkeys(queues, 0)
    active = [name for name in queues if len(script_faces[name]) >= min_fonts]
    while active and (needed is None or len(accepted) < needed):
        for name in list(active):
            if needed is not None and len(accepted) >= needed:
                break
            for ch in queues[name]:
                styles = _styles(renderer, script_faces[name], ch, max_styles)
                if len(styles) >= min_fonts and dedupe.accept(styles):
                    accepted.append(_Identity(name, ch, tuple(styles)))
                    per_script[name] += 1
                    break
            else:
                active.remove(name)
    return accepted, per_script


def _shortfall(
    what: str, have: int, need: int, per_script: Mapping[str, int], min_fonts: int
) -> RuntimeError:
    detail = ", ".join(f"{name} {n}" for name, n in sorted(per_script.items()))
    return _too_few_fonts(
        f"characters of {what} rendered by >= {min_fonts} distinct fonts",
        have,
        need,
        f"per script: {detail}",
    )


def _write_glyph_splits(
    renderer: _Renderer,
    info: DatasetInfo,
    splits: Mapping[str, Sequence[_Identity]],
    per_char: int,
    seed: int,
    aug: Augment,
) -> None:
    info.params["fonts_per_char"] = {
        split: {
            "min": min(len(i.styles) for i in idents),
            "mean": round(float(np.mean([len(i.styles) for i in idents])), 2),
            "max": max(len(i.styles) for i in idents),
        }
        for split, idents in splits.items()
        if idents
    }
    seen: set[bytes] = set()
    for split_id, split in enumerate(_SPLITS):
        for ident in sorted(splits[split], key=lambda i: (i.script, i.char)):
            rng = np.random.default_rng([seed, split_id, ord(ident.char)])
            _write_identity(
                renderer, info, split, ident.name, ident.styles, per_char, rng, aug, seen
            )


def _shuffled_faces(fonts: Sequence[FontFace] | None, seed: int) -> list[FontFace]:
    faces = sorted(find_fonts() if fonts is None else fonts)
    order = np.random.default_rng([seed, 0xF0]).permutation(len(faces))
    return [faces[int(i)] for i in order]


def _glyph_params(
    seed: int, size: int, per_char: int, min_fonts: int, aug: Augment
) -> dict[str, object]:
    return {
        "seed": seed,
        "size": size,
        "per_char": per_char,
        "min_fonts": min_fonts,
        "augment": _augment_params(aug),
    }


def _augment_params(aug: Augment) -> dict[str, object]:
    return {
        "rotation": aug.rotation,
        "scale": list(aug.scale),
        "shear": aug.shear,
        "translate": aug.translate,
        "thickness": list(aug.thickness),
        "blur": aug.blur,
        "noise": aug.noise,
    }


def glyph_open_set(
    root: Path | str,
    *,
    seed: int = 0,
    scripts: Sequence[str] | Mapping[str, Sequence[tuple[int, int]]] = DEFAULT_OPEN_SCRIPTS,
    n_train_chars: int = 480,
    n_test_chars: int = 240,
    per_char: int = 20,
    size: int = 32,
    min_fonts: int = 4,
    augment: Augment | None = None,
    fonts: Sequence[FontFace] | None = None,
    overwrite: bool = False,
) -> DatasetInfo:
    """Omniglot-like open set: one identity per character, disjoint train/test characters.

    Characters are drawn round-robin over ``scripts`` (so small alphabets are not swamped by
    CJK), each must be rendered by at least ``min_fonts`` fonts with visible, non-tofu,
    mutually distinct glyphs, and characters that look like an earlier one (Latin ``o`` and
    Cyrillic small o, ``O`` and ``o`` once scaled to the box) are dropped. The accepted
    characters are then split at random. Instances cycle through a character's fonts (up to
    ``per_char`` of them) with :data:`GLYPH_AUGMENT` distortions. Identity folders are named
    ``<script>-U+XXXX``.

    Args:
        root: Output folder.
        seed: Seed; the output is a deterministic function of it (and of the installed fonts).
        scripts: Names from :data:`SCRIPTS`, or ``{name: [(first, last), ...]}`` code point
            ranges (inclusive).
        n_train_chars: Training identities.
        n_test_chars: Test identities.
        per_char: Images per identity.
        size: Output side in pixels.
        min_fonts: Fewest distinct fonts a character needs.
        augment: Distortions; :data:`GLYPH_AUGMENT` by default.
        fonts: Candidate faces; :func:`find_fonts` by default.
        overwrite: Replace existing ``train``/``test`` folders under ``root``.

    Returns:
        What was written.

    Raises:
        RuntimeError: If the fonts cover too few characters.
        FileExistsError: If ``root`` already holds a split and ``overwrite`` is false.
    """
    started = time.perf_counter()
    _check_counts(n_train_chars=n_train_chars, n_test_chars=n_test_chars, per_char=per_char)
    _check_counts(min_fonts=min_fonts)
    aug = GLYPH_AUGMENT if augment is None else augment
    renderer = _Renderer(size, fit=0.8)
    faces = _shuffled_faces(fonts, seed)
    chars = _resolve_scripts(scripts)
    needed = n_train_chars + n_test_chars
    pool, per_script = _collect(
        renderer, faces, chars, needed, seed, min_fonts, max(per_char, min_fonts), _Dedupe()
    )
    if len(pool) < needed:
        raise _shortfall(f"scripts {sorted(chars)}", len(pool), needed, per_script, min_fonts)
    order = np.random.default_rng([seed, 0x0E]).permutation(len(pool))
    shuffled = [pool[int(i)] for i in order]
    splits = {"train": shuffled[:n_train_chars], "test": shuffled[n_train_chars:]}
    out = Path(root)
    params = _glyph_params(seed, size, per_char, min_fonts, aug)
    params["scripts"] = sorted(chars)
    params["chars_per_script"] = per_script
    info = DatasetInfo("glyph_open_set", out, {}, params=params)
    _prepare_root(out, overwrite)
    _write_glyph_splits(renderer, info, splits, per_char, seed, aug)
    return _finish(info, started)


def glyph_shifted_set(
    root: Path | str,
    *,
    seed: int = 0,
    train_scripts: Sequence[str]
    | Mapping[str, Sequence[tuple[int, int]]] = DEFAULT_SHIFT_TRAIN_SCRIPTS,
    test_scripts: Sequence[str] | Mapping[str, Sequence[tuple[int, int]]] = (
        DEFAULT_SHIFT_TEST_SCRIPTS
    ),
    n_train_chars: int = 300,
    n_test_chars: int = 300,
    per_char: int = 20,
    size: int = 32,
    min_fonts: int = 4,
    augment: Augment | None = None,
    fonts: Sequence[FontFace] | None = None,
    overwrite: bool = False,
) -> DatasetInfo:
    """Open set under a domain shift: train and test characters come from different scripts.

    Same rules and layout as :func:`glyph_open_set`; the training characters are drawn from
    ``train_scripts`` and the test characters from ``test_scripts`` (checked against the
    training characters for look-alikes too).

    Args:
        root: Output folder.
        seed: Seed; the output is a deterministic function of it (and of the installed fonts).
        train_scripts: Script names or code point ranges for the training identities.
        test_scripts: Script names or code point ranges for the test identities.
        n_train_chars: Training identities.
        n_test_chars: Test identities.
        per_char: Images per identity.
        size: Output side in pixels.
        min_fonts: Fewest distinct fonts a character needs.
        augment: Distortions; :data:`GLYPH_AUGMENT` by default.
        fonts: Candidate faces; :func:`find_fonts` by default.
        overwrite: Replace existing ``train``/``test`` folders under ``root``.

    Returns:
        What was written.

    Raises:
        RuntimeError: If the fonts cover too few characters of either side.
        ValueError: If a script name is unknown or both sides share a script.
        FileExistsError: If ``root`` already holds a split and ``overwrite`` is false.
    """
    started = time.perf_counter()
    _check_counts(n_train_chars=n_train_chars, n_test_chars=n_test_chars, per_char=per_char)
    _check_counts(min_fonts=min_fonts)
    aug = GLYPH_AUGMENT if augment is None else augment
    renderer = _Renderer(size, fit=0.8)
    faces = _shuffled_faces(fonts, seed)
    train_chars = _resolve_scripts(train_scripts)
    test_chars = _resolve_scripts(test_scripts)
    shared = sorted(set(train_chars) & set(test_chars))
    if shared:
        raise ValueError(f"train and test scripts overlap: {shared}")
    dedupe = _Dedupe()
    max_styles = max(per_char, min_fonts)
    train, train_counts = _collect(
        renderer, faces, train_chars, n_train_chars, seed, min_fonts, max_styles, dedupe
    )
    if len(train) < n_train_chars:
        raise _shortfall(
            f"scripts {sorted(train_chars)}", len(train), n_train_chars, train_counts, min_fonts
        )
    test, test_counts = _collect(
        renderer, faces, test_chars, n_test_chars, seed, min_fonts, max_styles, dedupe
    )
    if len(test) < n_test_chars:
        raise _shortfall(
            f"scripts {sorted(test_chars)}", len(test), n_test_chars, test_counts, min_fonts
        )
    out = Path(root)
    params = _glyph_params(seed, size, per_char, min_fonts, aug)
    params["train_scripts"] = sorted(train_chars)
    params["test_scripts"] = sorted(test_chars)
    params["chars_per_script"] = {**train_counts, **test_counts}
    info = DatasetInfo("glyph_shifted_set", out, {}, params=params)
    _prepare_root(out, overwrite)
    _write_glyph_splits(renderer, info, {"train": train, "test": test}, per_char, seed, aug)
    return _finish(info, started)


def script_capacity(
    scripts: Sequence[str] | Mapping[str, Sequence[tuple[int, int]]] | None = None,
    *,
    min_fonts: int = 4,
    size: int = 32,
    max_candidates: int | None = 3000,
    fonts: Sequence[FontFace] | None = None,
) -> dict[str, tuple[int, int, int]]:
    """How many identities each script can provide with the installed fonts.

    Each script is checked on its own (look-alikes are only removed within a script, so the
    numbers are upper bounds for mixed sets).

    Args:
        scripts: Names or ranges; every script in :data:`SCRIPTS` by default.
        min_fonts: Fewest distinct fonts a character needs.
        size: Rendering size (as in the generators).
        max_candidates: Check at most this many characters per script (a seeded sample);
            None checks all of them (CJK and Hangul then take minutes).
        fonts: Candidate faces; :func:`find_fonts` by default.

    Returns:
        ``{script: (usable characters, characters checked, candidate faces)}``.
    """
    renderer = _Renderer(size, fit=0.8)
    faces = _shuffled_faces(fonts, 0)
    resolved = _resolve_scripts(SCRIPTS if scripts is None else scripts)
    result: dict[str, tuple[int, int, int]] = {}
    for name, chars in resolved.items():
        if max_candidates is not None and len(chars) > max_candidates:
            pick = np.random.default_rng([0, 0xCA]).choice(len(chars), max_candidates, False)
            chars = [chars[int(i)] for i in np.sort(pick)]
        accepted, _ = _collect(
            renderer, faces, {name: chars}, None, 0, min_fonts, min_fonts, _Dedupe()
        )
        result[name] = (len(accepted), len(chars), len(_script_faces(renderer, faces, chars)))
    return result


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Generate every set into a folder and print the counts.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` by default).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="output folder (one subfolder per set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="tiny counts, for a quick look")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sets")
    parser.add_argument("--fonts", action="store_true", help="also list every font used")
    parser.add_argument(
        "--census", action="store_true", help="only print how many characters each script has"
    )
    args = parser.parse_args(argv)
    if args.census:
        for name, (usable, checked, n_faces) in script_capacity().items():
            print(f"{name:12s} {usable:6d} usable of {checked:6d} checked, {n_faces:3d} faces")
        return 0
    small = bool(args.small)
    out: Path = args.out
    seed: int = args.seed
    overwrite = bool(args.overwrite)
    infos = [
        digits_closed_set(
            out / "digits_fonts",
            train_per_class=30 if small else None,
            test_per_class=10 if small else None,
            seed=seed,
            overwrite=overwrite,
        ),
        digits_closed_set(
            out / "digits_sklearn",
            source="sklearn",
            train_per_class=30 if small else None,
            test_per_class=10 if small else None,
            seed=seed,
            overwrite=overwrite,
        ),
        glyph_open_set(
            out / "glyph_open",
            n_train_chars=40 if small else 480,
            n_test_chars=20 if small else 240,
            per_char=5 if small else 20,
            seed=seed,
            overwrite=overwrite,
        ),
        glyph_shifted_set(
            out / "glyph_shifted",
            n_train_chars=40 if small else 300,
            n_test_chars=20 if small else 300,
            per_char=5 if small else 20,
            seed=seed,
            overwrite=overwrite,
        ),
    ]
    for info in infos:
        print(info.report() if args.fonts else info.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
