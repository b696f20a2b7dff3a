"""In-browser embedding (the static page: ONNX Runtime Web, WebAssembly, headless Chromium)
beside Python ONNX Runtime, on the same model file and the same images.

Run: ``bash scripts/dev run python benchmarks/bench_browser_embed.py`` (about a minute on 2
cores; needs Chromium, Playwright and ``web/node_modules``). Prints the ``bench_browser_embed``
section of BENCHMARKS.md; ``--write`` also writes it there.

Both sides embed one image at a time (what the page does), from PNG bytes: decode,
preprocess (the page's pixels.js is Pillow's resampler ported, so the inputs are equal),
run the network. "Model only" runs the network on one prepared input. The page is served by
a plain static file server, like GitHub Pages: no cross-origin isolation, so ONNX Runtime
Web runs on one thread; Python is measured on one thread (the same work) and on its default
thread count (what ``lookalike`` uses). Passes alternate page, Python 1 thread, Python
default, after one warm-up pass each, so drift hits all three alike; the figure is the
median per image. Agreement: cosine between the page's and
Python's embedding of each image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from _report import write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_helpers import chromium, static_server

LOAD_JS = """
async (names) => {
  const files = [];
  for (const name of names) {
    const blob = await (await fetch("bench/" + name)).blob();
    files.push(new File([blob], name, { type: "image/png" }));
  }
  window.benchFiles = files;
  return ort.env.wasm.numThreads;
}
"""

EMBED_JS = """
async (names) => {
  const api = window.lookalike.api;
  const out = [];
  for (const name of names) {
    const blob = await (await fetch("bench/" + name)).blob();
    out.push(Array.from(await api.run(blob, name)));
  }
  return out;
}
"""

PASS_JS = """
async () => {
  const api = window.lookalike.api;
  const pre = api.site.preprocess;
  const shape = [1, pre.channels, pre.input_size[0], pre.input_size[1]];
  const end = [];
  const embeddings = [];
  for (const file of window.benchFiles) {
    const t0 = performance.now();
    const e = await api.run(file, file.name);  // uncached: decode, preprocess, network
    end.push(performance.now() - t0);
    embeddings.push(Array.from(e));
  }
  const first = window.benchFiles[0];
  const input = LookalikePixels.toInput(await LookalikePixels.decode(first, first.name), pre);
  const model = [];
  for (let i = 0; i < window.benchFiles.length; i++) {
    const t0 = performance.now();
    await api.session.run({ [api.site.input]: new ort.Tensor("float32", input, shape) });
    model.push(performance.now() - t0);
  }
  return { end, model, embeddings };
}
"""


def make_images(folder: Path, count: int) -> list[str]:
    """``count`` PNG crops (various sizes) of the bundled sample photos, and each as a JPEG."""
    from lookalike.samples import sample_paths

    photos = [Image.open(p).convert("RGB") for p in sample_paths().values()]
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = int(rng.integers(160, 400)), int(rng.integers(160, 400))
        left = int(rng.integers(0, max(1, photo.width - w)))
        top = int(rng.integers(0, max(1, photo.height - h)))
        name = f"img{i:02d}.png"
        crop = photo.crop((left, top, left + w, top + h))
        crop.save(folder / name)
        crop.save(folder / name.replace(".png", ".jpg"), quality=90)  # for the JPEG agreement
        names.append(name)
    for k, photo in enumerate(photos):  # large JPEGs: Pillow decodes them at 1/2 to 1/8 size
        big = photo.resize((photo.width * 3, photo.height * 3), Image.Resampling.BICUBIC)
        big.save(folder / f"big{k}.jpg", quality=90)
    return names


class PythonSide:
    """The same model file in Python ONNX Runtime, one image at a time."""

    def __init__(self, site: Path, names: list[str], threads: int | None) -> None:
        from lookalike.inference.onnx_engine import OnnxEmbedder

        self.embedder = OnnxEmbedder.open(site / "model" / "model.onnx", threads=threads)
        self.data = [(site / "bench" / n).read_bytes() for n in names]
        self.input = self.embedder.preprocess.load(self.data[0])[None]

    def one_pass(self) -> dict[str, list[Any]]:
        end, model, embeddings = [], [], []
        for item in self.data:
            t0 = time.perf_counter()
            embeddings.append(
                self.embedder.embed_batch(self.embedder.preprocess.load(item)[None])[0]
            )
            end.append(1000 * (time.perf_counter() - t0))
        for _ in self.data:
            t0 = time.perf_counter()
            self.embedder.embed_batch(self.input)
            model.append(1000 * (time.perf_counter() - t0))
        return {"end": end, "model": model, "embeddings": embeddings}

    def embed(self, site: Path, names: list[str]) -> list[np.ndarray]:
        """Embeddings of other files of the site's bench folder."""
        return [
            self.embedder.embed_batch(self.embedder.preprocess.load(site / "bench" / n)[None])[0]
            for n in names
        ]


def measure(site: Path, names: list[str], passes: int) -> dict[str, dict[str, Any]]:
    """Interleaved passes (page, Python 1 thread, Python default), after one warm-up each."""
    sides = {"py1": PythonSide(site, names, 1), "pyn": PythonSide(site, names, None)}
    out: dict[str, dict[str, Any]] = {k: {"end": [], "model": []} for k in ("page", *sides)}
    with static_server(site) as url, chromium() as browser:
        context = browser.new_context()
        context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(url + "/") else route.abort()
            ),
        )
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.body.dataset.ready === 'true'", timeout=300_000)
        out["page"]["threads"] = page.evaluate(LOAD_JS, names)
        out["page"]["agent"] = page.evaluate("navigator.userAgent")
        for round_ in range(passes + 1):  # round 0 warms up
            results = {"page": page.evaluate(PASS_JS)}
            results.update({k: side.one_pass() for k, side in sides.items()})
            for key, result in results.items():
                out[key]["embeddings"] = result["embeddings"]
                if round_:
                    out[key]["end"] += result["end"]
                    out[key]["model"] += result["model"]
        jpegs = [n.replace(".png", ".jpg") for n in names]
        big = sorted(p.name for p in (site / "bench").glob("big*.jpg"))
        out["page"]["jpeg"] = page.evaluate(EMBED_JS, jpegs)
        out["py1"]["jpeg"] = sides["py1"].embed(site, jpegs)
        out["page"]["big"] = page.evaluate(EMBED_JS, big)
        out["py1"]["big"] = sides["py1"].embed(site, big)
    return out


def agreement(page: list[Any], python: list[Any]) -> tuple[np.ndarray, float]:
    """Cosine per image between the page's and Python's embeddings, and the largest
    difference of one coordinate."""
    a, b = np.asarray(page, dtype=np.float64), np.asarray(python, dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return cos, float(np.abs(a - b).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = parser.parse_args()

    from lookalike.inference.source import ModelSource
    from lookalike.web import VENDOR_VERSIONS, build_site

    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        site = build_site(ModelSource(backbone=args.backbone), Path(tmp) / "site")
        (site / "bench").mkdir()
        names = make_images(site / "bench", args.images)
        got = measure(site, names, args.passes)
    page, py1, pyn = got["page"], got["py1"], got["pyn"]

    med = statistics.median
    rows = [
        ("ONNX Runtime Web, WASM, 1 thread (the page)", page["end"], page["model"]),
        ("Python ONNX Runtime, 1 thread", py1["end"], py1["model"]),
        ("Python ONNX Runtime, default threads", pyn["end"], pyn["model"]),
    ]
    browser_end, browser_model = med(page["end"]), med(page["model"])
    table = "\n".join(
        f"| {name} | {med(end):.1f} | {med(model):.1f} | "
        f"{browser_end / med(end):.2f} | {browser_model / med(model):.2f} |"
        for name, end, model in rows
    )
    cos, worst_abs = agreement(page["embeddings"], py1["embeddings"])
    jpeg_cos, jpeg_abs = agreement(page["jpeg"], py1["jpeg"])
    big_cos, _ = agreement(page["big"], py1["big"])
    body = f"""
`{args.backbone}` at 224 px, one image at a time, {args.images} PNG crops of the sample photos
(160–400 px a side) × {args.passes} passes after a warm-up pass; median milliseconds per image.
"End to end" = decode + preprocess + network; "model" = the network on a prepared input.
onnxruntime-web {VENDOR_VERSIONS["onnxruntime-web"]} in headless Chromium
({page["agent"].split("Chrome/")[-1].split(" ")[0]}), page served by a static file
server (no cross-origin isolation: {page["threads"]} WASM thread).

| engine | end to end (ms) | model (ms) | page ÷ this, end to end | page ÷ this, model |
|---|---|---|---|---|
{table}

- **The page embeds an image in {browser_end / med(py1["end"]):.2f}× the time Python ONNX
  Runtime takes on one thread** ({browser_model / med(py1["model"]):.2f}× for the network
  alone), {browser_end / med(pyn["end"]):.2f}× against Python on its default threads.
- Agreement, page vs Python embedding of the same image: mean cosine {cos.mean():.7f},
  worst {cos.min():.7f}, largest difference of one coordinate {worst_abs:.1e}
  ({len(cos)} PNGs; the page's input pixels are Pillow's, bit for bit). The same crops as
  JPEG (quality 90), where the browser's decoder and Pillow's may differ: mean cosine
  {jpeg_cos.mean():.7f}, worst {jpeg_cos.min():.7f}, largest difference {jpeg_abs:.1e}.
  JPEGs over twice the input size ({len(big_cos)} sample photos ×3, about 1350×900), which
  Pillow decodes with DCT downscaling and the browser at full size: mean cosine
  {big_cos.mean():.4f}, worst {big_cos.min():.4f}.
"""
    if args.write:
        write_section("bench_browser_embed", "The static page: embedding in the browser", body)
    print(body)


if __name__ == "__main__":
    sys.exit(main())
