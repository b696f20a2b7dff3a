"""Peak memory of decoding + preprocessing the worst uploads within the limits, before and after.

Each case is a small file that decodes to a large image inside the server's pixel limit
(64 megapixels): the 8000 × 8000 float TIFF of issue 14 (a few hundred KB on disk), a 16-bit
PNG, an RGBA PNG, a JPEG, and the 10000 × 1 PNG strip. Every measurement runs
``Preprocess().load(data)`` (decode, convert to 8-bit RGB, resize to 224 × 224, normalise) in
a fresh subprocess and reports how far its peak RSS (``VmHWM``, reset just before the call
through ``/proc/self/clear_refs``; Linux only) rose above the RSS just before the call.

* **after** — the defaults: aspect and decoded-size limits checked from the header, and
  16-bit/float pixels converted a block of rows at a time (``lookalike.imaging._scale``);
* **before** — the limits off, and the whole-image conversions the loader used before issue
  14 (float64 copies of a float image, Pillow's masked paste for transparency; the code is
  kept in this script), everything else unchanged.

Run: ``PYTHONPATH=src python benchmarks/bench_upload_memory.py`` (about a minute; up to 2 GB
of memory for the "before" float TIFF). Prints a Markdown section; ``--write`` also writes it
into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_CHILD = """
import json, sys, time
from pathlib import Path
from lookalike.errors import ImageError
from lookalike.imaging.preprocess import Preprocess
how, path = sys.argv[1], sys.argv[2]
data = Path(path).read_bytes()
pre = Preprocess()
limits = {}
if how == "before":  # the conversions as they were before issue 14, and no limits
    import numpy as np
    from PIL import Image
    from lookalike.imaging import images

    def old_numeric(img):
        values = np.asarray(img)
        if img.mode == "F":
            work = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=np.inf,
                                 neginf=-np.inf)
            if float(work.min()) >= 0.0 and float(work.max()) <= 1.0:
                work = work * 255.0
            gray = np.floor(np.clip(work, 0.0, 255.0) + 0.5).astype(np.uint8)
        else:  # the 16-bit path (the cases here hold no wider integers)
            gray = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return Image.fromarray(gray)

    def old_over_white(img):
        base = img.mode[:-1]
        flat = Image.new(base, img.size, 255 if base == "L" else (255,) * 3)
        flat.paste(img.convert(base), mask=img.getchannel("A"))
        return flat

    images._numeric_to_8bit = old_numeric
    images._over_white = old_over_white
    limits = {"max_pixels": None, "max_aspect": None, "max_decoded_bytes": None}
pre.load(Path(path).parent.joinpath("warm.png").read_bytes(), **limits)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = status("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the RSS now
start = time.perf_counter()
try:
    pre.load(data, **limits)
    outcome = "decoded"
except ImageError as exc:
    outcome = type(exc).__name__
print(json.dumps({"grown": status("VmHWM:") - before, "seconds": time.perf_counter() - start,
                  "outcome": outcome}))
"""


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def cases(side: int) -> dict[str, tuple[bytes, int]]:
    """Name → (file bytes, decoded bytes: width × height × bands × bytes per sample)."""
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    steps = np.where(ramp < 0.5, -1.0, 2.0).astype(np.float32)  # outside [0, 1]: clipped
    floats = np.tile(steps, (side, 1))
    words = np.tile((ramp * 65535).astype(np.uint16), (side, 1))
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., 0] = (ramp * 255).astype(np.uint8)
    rgba[..., 3] = 128
    px = side * side
    return {
        f"float32 TIFF {side}×{side}": (
            encode(Image.fromarray(floats, mode="F"), "TIFF", compression="tiff_deflate"),
            4 * px,
        ),
        f"16-bit grey PNG {side}×{side}": (encode(Image.fromarray(words), "PNG"), 2 * px),
        f"RGBA PNG {side}×{side}": (encode(Image.fromarray(rgba), "PNG"), 4 * px),
        f"RGB JPEG {side}×{side}": (
            encode(Image.fromarray(rgba[..., :3]), "JPEG", quality=90),
            3 * px,
        ),
        "PNG strip 10000×1": (encode(Image.new("L", (10000, 1)), "PNG", optimize=True), 10000),
    }


def measure(how: str, path: Path) -> dict[str, float | str]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, how, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, float | str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=8000, help="image side (64 MP at 8000)")
    parser.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = parser.parse_args()

    rows = []
    worst = {"before": 0.0, "after": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        Image.new("RGB", (64, 64)).save(Path(tmp) / "warm.png")
        for name, (data, decoded) in cases(args.side).items():
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            got = {how: measure(how, path) for how in ("before", "after")}
            for how in worst:
                worst[how] = max(worst[how], float(got[how]["grown"]))
            b, a = float(got["before"]["grown"]), float(got["after"]["grown"])
            rows.append(
                f"| {name} | {len(data) / 1024:,.0f} KB | {decoded / 2**20:,.0f} MiB "
                f"| {b / 2**20:,.0f} MiB ({float(got['before']['seconds']):.2f} s) "
                f"| {a / 2**20:,.0f} MiB ({float(got['after']['seconds']):.2f} s, "
                f"{got['after']['outcome']}) | {b / max(a, 2**20):.1f}× |"
            )
    body = "\n".join(
        [
            "Peak RSS growth of `Preprocess().load(upload)` (decode → 8-bit RGB → 224 × 224 "
            "input), each in a fresh subprocess (`VmHWM`). *Before*: limits off and the "
            "whole-image conversions of the loader before issue 14 (float64 copies of 16-bit "
            "and float pixels, one masked paste for transparency); *after*: the defaults "
            "(aspect ≤ 50:1, decoded size ≤ 512 MiB, both checked from the header; numeric "
            "pixels converted and transparency composited a block of rows at a time).",
            "",
            "| upload | on disk | decoded | before | after | before ÷ after |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Worst case: {worst['before'] / 2**20:,.0f} MiB before, "
            f"{worst['after'] / 2**20:,.0f} MiB after "
            f"({worst['before'] / max(worst['after'], 1):.1f}× less). Peak memory after is "
            "bounded by the decoded-size limit: about the decoded image plus its 8-bit RGB "
            "copy (Pillow keeps RGB at 4 bytes a pixel) plus a few MiB of blocks.",
        ]
    )
    print(body)
    if args.write:
        from _report import write_section

        write_section("bench_upload_memory", "Upload memory: decoding within the limits", body)


if __name__ == "__main__":
    main()
