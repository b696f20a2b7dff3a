"""A longer fuzz run of the image loader than the test suite's (tests/imaging/test_fuzz_loader.py).

Mutates small valid images of every allowed format (bit flips, extreme size fields, cuts,
insertions, duplicated runs) and feeds each to ``load_image`` + ``Preprocess.image_to_array``
with the default limits. Anything but an ``ImageError`` or a valid finite model input is a
finding; so is one input taking longer than ``--slow`` seconds. Prints a Markdown summary.

Run: ``PYTHONPATH=src python benchmarks/fuzz_loader.py --seconds 60`` (exit 1 on a finding).
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import time
import traceback
import warnings
from collections import Counter
from typing import Literal

import numpy as np
from PIL import Image

from lookalike.errors import ImageError, ImageTooLargeError
from lookalike.imaging.images import load_image
from lookalike.imaging.preprocess import Preprocess


def seeds() -> dict[str, bytes]:
    """Small valid images: every allowed format and the awkward pixel modes."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}
    cases: list[tuple[str, Image.Image, str, dict[str, object]]] = [
        ("png", rgb, "PNG", {}),
        ("png-rgba", rgb.convert("RGBA"), "PNG", {}),
        ("png-16", Image.fromarray(rng.integers(0, 65536, (9, 7), dtype=np.uint16)), "PNG", {}),
        ("png-interlaced", rgb, "PNG", {"interlace": 1}),
        ("jpeg", rgb, "JPEG", {"quality": 80}),
        ("jpeg-progressive", rgb, "JPEG", {"progressive": True}),
        ("gif", rgb.convert("P"), "GIF", {"save_all": True, "append_images": [rgb.convert("P")]}),
        ("tiff", rgb, "TIFF", {}),
        ("tiff-float", Image.fromarray(rng.random((8, 8), dtype=np.float32), mode="F"), "TIFF", {}),
        ("tiff-lzw", rgb, "TIFF", {"compression": "tiff_lzw"}),
        ("webp", rgb, "WEBP", {"quality": 70}),
        ("webp-anim", rgb, "WEBP", {"save_all": True, "append_images": [rgb]}),
        ("bmp", rgb, "BMP", {}),
        ("ppm", rgb, "PPM", {}),
    ]
    for name, img, fmt, params in cases:
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        out[name] = buf.getvalue()
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to six byte-level mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 7))):
        kind = rng.choice(["flip", "byte", "word", "cut", "insert", "dup"])
        at = int(rng.integers(0, max(1, len(buf))))
        if kind == "flip" and buf:
            buf[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == "byte" and buf:
            buf[at] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "word":
            value = int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 40000, 9999]))
            order: Literal["big", "little"] = "big" if rng.random() < 0.5 else "little"
            buf[at : at + 4] = value.to_bytes(4, order)
        elif kind == "cut":
            del buf[int(rng.integers(0, len(buf) + 1)) :]
        elif kind == "insert":
            buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        elif kind == "dup" and buf:
            buf[at:at] = buf[at : at + int(rng.integers(1, 65))]
    return bytes(buf)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds that count as a hang")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    base = seeds()
    names = sorted(base)
    pre = Preprocess(input_size=(32, 32))
    outcomes: Counter[str] = Counter()
    findings: list[str] = []
    slowest = 0.0
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        name = names[int(rng.integers(0, len(names)))]
        data = mutate(base[name], rng)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = pre.image_to_array(load_image(data))
            if array.shape != (3, 32, 32) or not np.isfinite(array).all():
                findings.append(f"{name}: bad array {array.shape}")
            outcomes["decoded"] += 1
        except ImageTooLargeError:
            outcomes["ImageTooLargeError"] += 1
        except ImageError:
            outcomes["ImageError"] += 1
        except Exception:  # a finding: anything else escaped
            findings.append(f"{name}: {traceback.format_exc(limit=3)}")
            outcomes["unexpected"] += 1
        took = time.perf_counter() - start
        slowest = max(slowest, took)
        if took > args.slow:
            findings.append(f"{name}: one input took {took:.1f} s")
    total = sum(outcomes.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"### Image loader fuzz run ({args.seconds:.0f} s, seed {args.seed})\n")
    print(f"{total} mutated inputs from {len(names)} seed images ({', '.join(names)}).\n")
    print("| outcome | inputs |\n|---|---:|")
    for key in ("decoded", "ImageError", "ImageTooLargeError", "unexpected"):
        print(f"| {key} | {outcomes[key]} |")
    print(f"\nslowest input {slowest * 1000:.0f} ms; peak RSS {peak:.0f} MiB; ", end="")
    print(f"findings {len(findings)}")
    for finding in findings[:20]:
        print("\n" + finding, file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
