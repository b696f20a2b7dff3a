"""Tests for lookalike.imaging.images: safe image loading."""

from __future__ import annotations

import ast
import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from lookalike.errors import ImageError, ImageTooLargeError
from lookalike.imaging.images import DEFAULT_MAX_PIXELS, image_name, load_image

WHITE = (255, 255, 255)
SRC = Path(__file__).resolve().parents[2] / "src" / "lookalike" / "imaging" / "images.py"


# --------------------------------------------------------------------------- helpers


def pixels(img: Image.Image) -> np.ndarray:
    """Return the pixels of an image as an int array (no deprecated getdata)."""
    return np.asarray(img).astype(int)


def save(tmp_path: Path, name: str, img: Image.Image, **params: Any) -> Path:
    path = tmp_path / name
    img.save(path, **params)
    return path


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def check_error(exc_info: pytest.ExceptionInfo[ImageError], source: str, cause: str) -> None:
    err = exc_info.value
    assert err.source == source
    assert cause in err.cause
    assert source in str(err)
    assert cause in str(err)


# --------------------------------------------------------------------------- basics


def test_module_is_torch_free_and_leaves_pillow_globals_alone(tmp_path: Path) -> None:
    tree = ast.parse(SRC.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "torch" not in imported
    assert "MAX_IMAGE_PIXELS =" not in SRC.read_text(encoding="utf-8")

    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    path = save(tmp_path, "a.png", noise(32, 32))
    load_image(path, max_pixels=None)
    with pytest.raises(ImageError):
        load_image(path.read_bytes()[: path.stat().st_size // 2])
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_constants() -> None:
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_image_name(tmp_path: Path) -> None:
    assert image_name("x/y.png") == "x/y.png"
    assert image_name(tmp_path / "y.png") == str(tmp_path / "y.png")
    assert image_name(b"abc") == "<bytes>"
    assert image_name(bytearray(b"abc")) == "<bytes>"
    assert image_name(memoryview(b"abc")) == "<bytes>"
    assert image_name(Image.new("RGB", (1, 1))) == "<PIL image>"
    assert image_name(np.zeros((1, 1), np.uint8)) == "<array>"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "PPM", "WEBP"])
def test_common_formats_load_as_rgb_and_l(tmp_path: Path, fmt: str) -> None:
    colour = (200, 40, 90)
    path = save(tmp_path, f"x.{fmt.lower()}", Image.new("RGB", (16, 12), colour), format=fmt)
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == (16, 12)
    tolerance = 8 if fmt in ("JPEG", "WEBP", "GIF") else 0
    assert np.abs(pixels(img)[5, 5] - colour).max() <= tolerance
    gray = load_image(str(path), mode="L")
    assert gray.mode == "L"
    assert gray.size == (16, 12)
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    assert abs(pixels(gray)[5, 5] - luma) <= tolerance + 1


def test_result_is_fully_loaded_after_file_is_closed(tmp_path: Path) -> None:
    path = save(tmp_path, "x.png", noise(20, 10))
    img = load_image(path)
    path.unlink()  # nothing may still be read from the file
    assert pixels(img).shape == (10, 20, 3)
    assert np.array_equal(pixels(img), pixels(noise(20, 10)))


# --------------------------------------------------------------------------- modes


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (255, 0, 0, 128))  # half-transparent red
    rgba.putpixel((2, 0), (10, 20, 30, 255))  # opaque
    for source in (save(tmp_path, "a.png", rgba), rgba):
        out = pixels(load_image(source))[0]
        assert tuple(out[0]) == WHITE
        assert out[1][0] == 255
        assert abs(out[1][1] - 128) <= 1
        assert abs(out[1][2] - 128) <= 1
        assert tuple(out[2]) == (10, 20, 30)
    gray = pixels(load_image(rgba, mode="L"))[0]
    assert gray[0] == 255


def test_rgba_premultiplied() -> None:
    img = Image.new("RGBa", (1, 1), (64, 0, 0, 128))  # = (127, 0, 0) at half alpha
    out = pixels(load_image(img))[0, 0]
    assert abs(out[0] - 191) <= 1  # 127 * 128/255 + 255 * 127/255
    assert abs(out[1] - 127) <= 1


def test_la_and_l_with_trns(tmp_path: Path) -> None:
    la = Image.new("LA", (3, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (0, 255))
    la.putpixel((2, 0), (100, 255))
    out = pixels(load_image(save(tmp_path, "la.png", la), mode="L"))[0]
    assert out.tolist() == [255, 0, 100]
    rgb = pixels(load_image(la))[0]
    assert rgb.tolist() == [[255] * 3, [0] * 3, [100] * 3]

    gray = Image.new("L", (2, 1), 7)
    gray.putpixel((1, 0), 50)
    out = pixels(load_image(save(tmp_path, "l.png", gray, transparency=7), mode="L"))[0]
    assert out.tolist() == [255, 50]


def test_rgb_with_trns_colour(tmp_path: Path) -> None:
    img = Image.new("RGB", (2, 1), (1, 2, 3))
    img.putpixel((1, 0), (9, 9, 9))
    out = pixels(load_image(save(tmp_path, "t.png", img, transparency=(1, 2, 3))))[0]
    assert out.tolist() == [list(WHITE), [9, 9, 9]]


def palette_image() -> Image.Image:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    for x in range(3):
        img.putpixel((x, 0), x)
    return img


def test_palette_colours_preserved(tmp_path: Path) -> None:
    path = save(tmp_path, "p.png", palette_image())
    assert Image.open(path).mode == "P"
    out = pixels(load_image(path))[0]
    assert out.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


def test_palette_with_transparent_index(tmp_path: Path) -> None:
    path = save(tmp_path, "p.png", palette_image(), transparency=1)
    out = pixels(load_image(path))[0]
    assert out.tolist() == [[255, 0, 0], list(WHITE), [0, 0, 255]]


def test_palette_with_alpha_per_entry(tmp_path: Path) -> None:
    path = save(tmp_path, "p.png", palette_image(), transparency=bytes([255, 0, 128]))
    out = pixels(load_image(path))[0]
    assert out[0].tolist() == [255, 0, 0]
    assert out[1].tolist() == list(WHITE)
    assert abs(out[2] - [127, 127, 255]).max() <= 1


def test_pa_mode() -> None:
    img = Image.new("PA", (2, 1))
    img.putpalette([0, 0, 255] * 2)
    img.putpixel((0, 0), (0, 0))
    img.putpixel((1, 0), (0, 255))
    out = pixels(load_image(img))[0]
    assert out.tolist() == [list(WHITE), [0, 0, 255]]


def test_mode_1(tmp_path: Path) -> None:
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    out = load_image(save(tmp_path, "b.png", img), mode="L")
    assert pixels(out)[0].tolist() == [0, 255]
    assert pixels(load_image(img))[0].tolist() == [[0, 0, 0], list(WHITE)]


def test_cmyk(tmp_path: Path) -> None:
    img = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (0, 0, 0, 255))
    path = save(tmp_path, "c.tif", img)
    assert Image.open(path).mode == "CMYK"
    out = pixels(load_image(path))[0]
    assert out.tolist() == [list(WHITE), [0, 0, 0]]
    cyan = pixels(load_image(Image.new("CMYK", (1, 1), (255, 0, 0, 0))))[0, 0]
    assert cyan.tolist() == [0, 255, 255]


def test_ycbcr_and_hsv() -> None:
    out = pixels(load_image(Image.new("YCbCr", (1, 1), (255, 128, 128))))[0, 0]
    assert abs(out - 255).max() <= 1
    red = pixels(load_image(Image.new("HSV", (1, 1), (0, 255, 255))))[0, 0]
    assert red.tolist() == [255, 0, 0]


def test_lab() -> None:
    pytest.importorskip("PIL.ImageCms")
    white = pixels(load_image(Image.new("LAB", (1, 1), (255, 128, 128))))[0, 0]
    black = pixels(load_image(Image.new("LAB", (1, 1), (0, 128, 128))))[0, 0]
    assert white.min() >= 250
    assert black.max() <= 5


@pytest.mark.parametrize("pil_mode", ["I;16", "I;16B", "I;16L"])
def test_16_bit_is_scaled_not_clipped(pil_mode: str) -> None:
    img = Image.new(pil_mode, (4, 1))
    for x, value in enumerate((0, 255, 32896, 65535)):
        img.putpixel((x, 0), value)
    out = pixels(load_image(img, mode="L"))[0]
    assert out.tolist() == [0, 1, 128, 255]


def test_16_bit_png_file_with_trns(tmp_path: Path) -> None:
    values = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    path = save(tmp_path, "g16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I;16")
    assert pixels(load_image(path, mode="L"))[0].tolist() == [0, 128, 255, 4]
    path = save(tmp_path, "g16t.png", Image.fromarray(values), transparency=0)
    assert pixels(load_image(path, mode="L"))[0].tolist() == [255, 128, 255, 4]


def test_mode_i_three_ranges(tmp_path: Path) -> None:
    small = Image.fromarray(np.array([[-3, 0, 17, 255]], dtype=np.int32))
    assert small.mode == "I"
    assert pixels(load_image(small, mode="L"))[0].tolist() == [0, 0, 17, 255]
    mid = Image.fromarray(np.array([[0, 256, 32896, 65535]], dtype=np.int32))
    assert pixels(load_image(mid, mode="L"))[0].tolist() == [0, 1, 128, 255]
    big = Image.fromarray(np.array([[-100_000, 0, 100_000]], dtype=np.int32))
    path = save(tmp_path, "i.tif", big)
    assert Image.open(path).mode == "I"
    assert pixels(load_image(path, mode="L"))[0].tolist() == [0, 128, 255]


def test_mode_f(tmp_path: Path) -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32))
    assert unit.mode == "F"
    path = save(tmp_path, "f.tif", unit)
    assert pixels(load_image(path, mode="L"))[0].tolist() == [0, 128, 255, 0]
    wide = Image.fromarray(np.array([[-5.0, 1.5, 100.4, 300.0, np.nan]], dtype=np.float32))
    assert pixels(load_image(wide, mode="L"))[0].tolist() == [0, 2, 100, 255, 0]
    rgb = pixels(load_image(unit))
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, 1].tolist() == [128, 128, 128]


# --------------------------------------------------------------------------- geometry


def test_exif_orientation_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90° clockwise
    path = save(tmp_path, "o.jpg", stored, exif=exif, quality=95)
    img = load_image(path)
    assert img.size == (20, 40)
    out = pixels(img)
    assert out[5, 10].tolist()[0] > 200 and out[5, 10].tolist()[2] < 50  # top: red
    assert out[35, 10].tolist()[2] > 200 and out[35, 10].tolist()[0] < 50  # bottom: blue
    # the same through bytes and through a PIL image opened by the caller
    assert load_image(path.read_bytes()).size == (20, 40)
    opened = Image.open(path)
    assert load_image(opened).size == (20, 40)
    assert opened.size == (40, 20)  # caller's image untouched


def test_animated_first_frame(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (8, 8), c) for c in colours]
    for fmt in ("GIF", "PNG", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)
        assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
        out = pixels(load_image(data))
        assert np.abs(out - colours[0]).max() <= 4, fmt


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_extreme_sizes(tmp_path: Path, size: tuple[int, int], fmt: str) -> None:
    path = save(tmp_path, f"x.{fmt.lower()}", Image.new("RGB", size, (0, 128, 0)), format=fmt)
    img = load_image(path, max_aspect=None)
    assert img.size == size
    assert img.mode == "RGB"
    assert load_image(path, mode="L", draft_size=(1, 1), max_aspect=None).size == size
    if size != (1, 1):  # 5000:1 is past the default aspect limit
        with pytest.raises(ImageTooLargeError) as exc_info:
            load_image(path)
        assert exc_info.value.limit == "aspect"


# --------------------------------------------------------------------------- in-memory sources


def test_bytes_like_sources() -> None:
    data = encode(Image.new("RGB", (5, 3), (9, 8, 7)), "PNG")
    for source in (data, bytearray(data), memoryview(data)):
        img = load_image(source)
        assert img.size == (5, 3)
        assert pixels(img)[0, 0].tolist() == [9, 8, 7]


def test_pil_source_is_not_modified_or_shared() -> None:
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    out = load_image(rgb)
    assert out is not rgb
    out.putpixel((0, 0), (0, 0, 0))
    assert rgb.getpixel((0, 0)) == (1, 2, 3)
    rgba = Image.new("RGBA", (2, 2), (1, 2, 3, 0))
    load_image(rgba)
    assert rgba.mode == "RGBA"
    assert rgba.getpixel((0, 0)) == (1, 2, 3, 0)


def test_array_shapes_and_dtypes() -> None:
    gray = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    img = load_image(gray, mode="L")
    assert img.size == (2, 2)
    assert pixels(img).tolist() == gray.tolist()
    assert pixels(load_image(gray[:, :, None], mode="L")).tolist() == gray.tolist()
    assert pixels(load_image(gray))[1, 0].tolist() == [255, 255, 255]

    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    img = load_image(rgb)
    assert img.size == (3, 2)
    assert pixels(img)[1, 2].tolist() == [200, 0, 0]

    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 1] = (0, 0, 255, 255)
    assert pixels(load_image(rgba))[0].tolist() == [list(WHITE), [0, 0, 255]]

    u16 = np.array([[0, 32896, 65535]], dtype=np.uint16)
    assert pixels(load_image(u16, mode="L"))[0].tolist() == [0, 128, 255]
    assert pixels(load_image(u16.astype(">u2"), mode="L"))[0].tolist() == [0, 128, 255]

    flags = np.array([[True, False]])
    assert pixels(load_image(flags, mode="L"))[0].tolist() == [255, 0]

    floats = np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float64)
    assert pixels(load_image(floats, mode="L"))[0].tolist() == [0, 128, 255, 0]
    wide = np.array([[-1.0, 2.0, 300.0]], dtype=np.float32)
    assert pixels(load_image(wide, mode="L"))[0].tolist() == [0, 2, 255]


def test_array_is_copied() -> None:
    arr = np.full((2, 2), 10, dtype=np.uint8)
    img = load_image(arr, mode="L")
    arr[:] = 99
    assert pixels(img).max() == 10


def test_non_contiguous_array() -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(4, 6)
    view = arr[:, ::2]
    assert pixels(load_image(view, mode="L")).tolist() == view.tolist()


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros(5, np.uint8), "shape"),
        (np.zeros((2, 2, 2, 2), np.uint8), "shape"),
        (np.zeros((2, 2, 2), np.uint8), "shape"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.zeros((4, 0, 3), np.uint8), "empty"),
        (np.zeros((2, 2), np.complex64), "dtype"),
        (np.zeros((2, 2), object), "dtype"),
    ],
)
def test_bad_arrays(array: np.ndarray, words: str) -> None:
    with pytest.raises(ImageError) as exc_info:
        load_image(array)
    check_error(exc_info, "<array>", words)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    check_error(exc_info, str(path), "file not found")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as exc_info:
        load_image(tmp_path)
    check_error(exc_info, str(tmp_path), "directory")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    check_error(exc_info, str(path), "file is empty")
    with pytest.raises(ImageError) as exc_info:
        load_image(b"")
    check_error(exc_info, "<bytes>", "empty")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 10, encoding="utf-8")
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    check_error(exc_info, str(path), "not a recognised image format")


def test_random_bytes() -> None:
    garbage = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError) as exc_info:
        load_image(b"XYZ" + garbage)
    check_error(exc_info, "<bytes>", "not a recognised image format")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 30])
def test_truncated_file(tmp_path: Path, fmt: str, keep: float) -> None:
    data = encode(noise(64, 48), fmt)
    cut = data[: int(len(data) * keep)] if keep < 1 else data[: int(keep)]
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(cut)
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    check_error(exc_info, str(path), "truncated or corrupt image data")


def test_corrupt_png_data(tmp_path: Path) -> None:
    data = bytearray(encode(noise(64, 48), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    check_error(exc_info, str(path), "truncated or corrupt image data: ")


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageError) as exc_info:
        load_image(42)  # type: ignore[arg-type]
    check_error(exc_info, "<int>", "unsupported source type")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "RGBA"},
        {"max_pixels": 0},
        {"max_pixels": 1.5},
        {"draft_size": (0, 10)},
        {"draft_size": (10,)},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        load_image(Image.new("RGB", (1, 1)), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bombs


def test_bomb_guard_uses_header_before_decoding(tmp_path: Path) -> None:
    # The header claims 12000×12000 but there is no pixel data at all: decoding would
    # fail as truncated, so the bomb message proves the check ran before decoding.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(12000, 12000))
    assert path.stat().st_size < 100
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    check_error(exc_info, str(path), "decompression-bomb guard")
    assert "12000×12000 = 144000000 pixels" in exc_info.value.cause
    assert "max_pixels" in exc_info.value.cause

    # max_pixels=None turns our check off: Pillow's warning (above its 89M limit) is
    # suppressed, and the missing data is then reported as such.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as exc_info:
            load_image(path, max_pixels=None)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    check_error(exc_info, str(path), "truncated or corrupt image data")
    assert "exceeds limit" not in exc_info.value.cause
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError) as exc_info:
            load_image(path, max_pixels=None)
    check_error(exc_info, str(path), "truncated or corrupt image data")
    assert "exceeds limit" not in exc_info.value.cause


def test_pillow_own_bomb_error_becomes_image_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(40000, 40000))
    for max_pixels in (None, DEFAULT_MAX_PIXELS, 10**10):
        with pytest.raises(ImageError) as exc_info:
            load_image(path, max_pixels=max_pixels)
        check_error(exc_info, str(path), "decompression-bomb guard")


def test_max_pixels_limit_and_none(tmp_path: Path) -> None:
    img = Image.new("RGB", (100, 100), (5, 5, 5))
    path = save(tmp_path, "h.png", img)
    for source, name in (
        (path, str(path)),
        (img, "<PIL image>"),
        (np.zeros((100, 100)), "<array>"),
    ):
        with pytest.raises(ImageError) as exc_info:
            load_image(source, max_pixels=1000)
        check_error(exc_info, name, "100×100 = 10000 pixels, more than the limit of 1000")
        assert load_image(source, max_pixels=None).size == (100, 100)
        assert load_image(source, max_pixels=10_000).size == (100, 100)


# --------------------------------------------------------------------------- draft


def test_draft_size_decodes_jpeg_smaller_but_not_below_request(tmp_path: Path) -> None:
    path = save(tmp_path, "big.jpg", noise(1600, 1200), quality=80)
    assert load_image(path).size == (1600, 1200)
    assert load_image(path, draft_size=(200, 150)).size == (200, 150)  # 1/8
    small = load_image(path, draft_size=(300, 300))  # 1/4 would be 400×300
    assert small.size == (400, 300)
    for request in ((1, 1), (199, 150), (801, 10), (1600, 1200), (3000, 3000)):
        got = load_image(path, draft_size=request, mode="L")
        assert got.mode == "L"
        assert got.size[0] >= min(request[0], 1600)
        assert got.size[1] >= min(request[1], 1200)
    assert load_image(path, draft_size=(801, 10)).size == (1600, 1200)


def test_draft_size_follows_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "rot.jpg", Image.new("RGB", (1600, 1200), (0, 90, 0)), exif=exif)
    assert load_image(path).size == (1200, 1600)
    # Asked in display orientation: 300×400 is exactly 1/4 of 1200×1600.
    assert load_image(path, draft_size=(300, 400)).size == (300, 400)


def test_draft_size_ignored_for_png(tmp_path: Path) -> None:
    path = save(tmp_path, "big.png", Image.new("RGB", (800, 600)))
    assert load_image(path, draft_size=(100, 75)).size == (800, 600)


# --------------------------------------------------------------------------- hardening (issue 14)


def tiny_strip_png() -> bytes:
    """The reproducer of issue 14: a 10000×1 PNG of about 100 bytes."""
    return encode(Image.new("L", (10000, 1), 0), "PNG", optimize=True)


def test_extreme_aspect_ratio_is_refused_for_its_size() -> None:
    from lookalike.imaging.preprocess import Preprocess

    data = tiny_strip_png()
    assert len(data) < 200
    for call in (lambda: load_image(data), lambda: Preprocess().load(data)):
        with pytest.raises(ImageTooLargeError) as exc_info:
            call()
        assert exc_info.value.limit == "aspect"
        assert "aspect ratio of 1e+04:1, more than the limit of 50:1" in exc_info.value.cause
    assert load_image(data, max_aspect=None).size == (10000, 1)
    assert load_image(data, max_aspect=10000).size == (10000, 1)
    for source in (Image.new("L", (10000, 1)), np.zeros((1, 10000), np.uint8)):
        with pytest.raises(ImageTooLargeError):
            load_image(source)


def test_decoded_bytes_limit_reads_the_header_before_decoding(tmp_path: Path) -> None:
    # A 16-bit grayscale PNG header with no pixel data: 3000×3000×2 bytes = 17.2 MiB.
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 3000, 3000, 16, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    with pytest.raises(ImageTooLargeError) as exc_info:
        load_image(data, max_decoded_bytes=16 * 2**20)
    assert exc_info.value.limit == "bytes"
    assert "17.17 MiB decoded, more than the limit of 16 MiB" in exc_info.value.cause
    with pytest.raises(ImageError) as other:  # past the limit: the missing data is found
        load_image(data, max_decoded_bytes=18 * 2**20)
    assert not isinstance(other.value, ImageTooLargeError)


def test_decoded_bytes_count_bands_and_sample_size() -> None:
    from lookalike.imaging.limits import decoded_bytes

    assert decoded_bytes("L", 10, 10) == 100
    assert decoded_bytes("RGB", 10, 10) == 300
    assert decoded_bytes("RGBA", 10, 10) == 400
    assert decoded_bytes("I;16", 10, 10) == 200
    assert decoded_bytes("F", 10, 10) == 400
    assert decoded_bytes("array:3:<f8", 10, 10) == 2400
    assert decoded_bytes("no such mode", 10, 10) == 1600
    float_array = np.zeros((100, 100, 3))  # 240,000 bytes
    with pytest.raises(ImageTooLargeError) as exc_info:
        load_image(float_array, max_decoded_bytes=200_000)
    assert "as a 3-band float64 array" in exc_info.value.cause
    assert load_image(float_array, max_decoded_bytes=240_000).size == (100, 100)


def test_decoded_bytes_of_a_jpeg_are_counted_at_its_draft_scale(tmp_path: Path) -> None:
    data = encode(noise(1600, 1200), "JPEG", quality=80)  # 5.5 MiB decoded at full size
    limit = 2 * 2**20
    with pytest.raises(ImageTooLargeError):
        load_image(data, max_decoded_bytes=limit)
    assert load_image(data, max_decoded_bytes=limit, draft_size=(224, 224)).size == (400, 300)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("EPS", {}),
        ("ICO", {}),
        ("PCX", {}),
        ("TGA", {}),
        ("SGI", {}),
        ("DDS", {}),
        ("QOI", {}),
        ("SPIDER", {}),
    ],
)
def test_formats_outside_the_allow_list_are_refused(fmt: str, params: dict[str, Any]) -> None:
    img = Image.new("L" if fmt == "SPIDER" else "RGB", (16, 16), 90)
    if fmt == "SPIDER":
        img = img.convert("F")
    data = encode(img, fmt, **params)
    with Image.open(io.BytesIO(data)) as probe:  # Pillow itself reads every one of them
        assert probe.format == fmt
    with pytest.raises(ImageError) as exc_info:
        load_image(data)
    assert "not a recognised image format" in exc_info.value.cause
    assert "JPEG, PNG, GIF, WebP" in exc_info.value.cause


def test_allow_list_keeps_what_people_use() -> None:
    from lookalike.imaging.limits import ALLOWED_FORMATS, pillow_formats

    assert {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"} <= set(pillow_formats())
    assert not {"EPS", "PDF", "PS", "SPIDER", "DDS"} & set(ALLOWED_FORMATS)
    # A phone's multi-picture JPEG is opened as MPO by the JPEG plugin.
    data = encode(noise(32, 24), "MPO", save_all=True, append_images=[noise(32, 24, seed=1)])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert load_image(data).size == (32, 24)


def test_every_size_refusal_is_image_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(40000, 40000))  # past Pillow's own limit
    for max_pixels in (None, DEFAULT_MAX_PIXELS):
        with pytest.raises(ImageTooLargeError) as exc_info:
            load_image(path, max_pixels=max_pixels)
        assert exc_info.value.limit == "pixels"
    with pytest.raises(ImageTooLargeError):
        load_image(png_header_only(12000, 12000))


_PEAK_SCRIPT = """
import sys
from pathlib import Path
from PIL import Image
from lookalike.imaging.preprocess import Preprocess
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
data = Path(sys.argv[1]).read_bytes()
pre = Preprocess()
pre.load(Image.new("RGB", (64, 64)))  # warm up the code path
before = status("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the RSS now
out = pre.load(data)
assert out.shape == (3, 224, 224)
print(status("VmHWM:") - before)
"""


def test_peak_memory_of_a_float_tiff_is_bounded_by_its_decoded_size(tmp_path: Path) -> None:
    """Issue 14: a float TIFF cost 7× its decoded size; now about the decoded size + the result."""
    import subprocess
    import sys

    side = 3000  # 34 MiB decoded as float32, 0.2 MiB on disk
    values = np.tile(np.linspace(-1.0, 3.0, side, dtype=np.float32), (side, 1))
    path = save(tmp_path, "f.tif", Image.fromarray(values, mode="F"), compression="tiff_deflate")
    src = str(Path(__file__).resolve().parents[2] / "src")
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    grown = int(result.stdout.strip().splitlines()[-1])
    decoded = side * side * 4
    # decoded F image + its 8-bit L copy + the RGB image (4 bytes a pixel) + blocks
    assert grown < 3 * decoded, f"peak grew {grown / 2**20:.0f} MiB for {decoded / 2**20:.0f}"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_compositing_on_white_matches_pillow_paste_bit_for_bit(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.imaging import _scale

    monkeypatch.setattr(_scale, "BLOCK_BYTES", 90 * 8 * 4 * 3)  # 3 rows a block
    rng = np.random.default_rng(3)
    values = rng.integers(0, 256, (70, 90, len(mode)), dtype=np.uint8)
    values[:5, :, -1] = 0
    values[5:10, :, -1] = 255
    img = Image.fromarray(values)
    assert img.mode == mode
    base = mode[:-1]
    expected = Image.new(base, img.size, 255 if base == "L" else WHITE)
    expected.paste(img.convert(base), mask=img.getchannel("A"))
    got = load_image(img, mode="L" if base == "L" else "RGB")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_block_wise_conversion_equals_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.imaging import _scale

    rng = np.random.default_rng(4)
    sources: list[np.ndarray] = [
        rng.random((41, 23), dtype=np.float32),  # within [0, 1]: scaled by 255
        rng.normal(100, 200, (41, 23)).astype(np.float32),  # clipped
        rng.integers(-5, 300, (41, 23)).astype(np.int32),  # kept / clipped
        rng.integers(0, 60000, (41, 23)).astype(np.int32),  # 16-bit scaled
        rng.integers(-(10**6), 10**6, (41, 23)).astype(np.int32),  # min-max scaled
        rng.integers(0, 65536, (41, 23)).astype(np.uint16),
    ]
    sources[0][3, 4] = np.nan
    whole = [np.asarray(load_image(a, mode="L")) for a in sources]
    whole_pil = [np.asarray(load_image(Image.fromarray(a), mode="L")) for a in sources]
    monkeypatch.setattr(_scale, "BLOCK_BYTES", 23 * 8 * 2)  # 2 rows a block
    for a, w, wp in zip(sources, whole, whole_pil, strict=True):
        np.testing.assert_array_equal(np.asarray(load_image(a, mode="L")), w)
        np.testing.assert_array_equal(np.asarray(load_image(Image.fromarray(a), mode="L")), wp)
