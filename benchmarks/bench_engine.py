"""Inference engines and the pipelined loader.

(a) Model-only throughput of the default ``mobilenet_v2`` at 224 px, batch 32: PyTorch eager
    versus ONNX Runtime, same weights, same process, interleaved rounds.
(b) End to end: ~1-megapixel JPEGs (quality 90, generated from scikit-image's sample photos:
    cropped, resized, brightness-jittered and noised) through the pipelined loader with the
    ONNX engine, versus the same engine's model-only throughput at the same batch size; with
    JPEG draft mode and without, plus the sequential decode-then-embed loop for context.
(c) Cold ``lookalike compare`` of two sample photos with the ONNX cache warm, versus
    ``python -c 'import onnxruntime, numpy'`` and ``python -c 'import torch'`` (and the same
    compare with ``--engine torch``), medians of interleaved runs.

Run: ``bash scripts/dev run python benchmarks/bench_engine.py`` (about 2 minutes on 2 cores).
Writes the ``bench_engine`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from _report import write_section


def make_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Write ``n`` distinct ~1-megapixel (1152×864) JPEGs, quality 90."""
    from skimage import data

    rng = np.random.default_rng(seed)
    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "camera"]
    sources = []
    for name in names:
        image = getattr(data, name)()
        sources.append(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(src[y : y + ch, x : x + cw])
        big = np.asarray(crop.resize((1152, 864), Image.Resampling.BICUBIC), dtype=np.float32)
        big = big * rng.uniform(0.8, 1.2) + rng.normal(0.0, 4.0, big.shape)
        if rng.random() < 0.5:
            big = big[:, ::-1]
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def rate(n: int, fn: Callable[[], object]) -> float:
    """Items per second of one call of ``fn`` that handles ``n`` items."""
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def spread(values: list[float]) -> str:
    """Two Markdown table cells: the median and the range."""
    return f"{statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f}"


def wall(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds one subprocess takes, start to exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> None:
    """Run the three measurements with photos and the ONNX cache under ``tmp``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bs = args.batch_size

    os.environ["LOOKALIKE_CACHE"] = str(tmp / "cache")
    import torch

    from lookalike.inference import OnnxEmbedder, TorchEmbedder, load_embedder
    from lookalike.inference.pipeline import default_workers, embed_files
    from lookalike.model.network import SiameseModel
    from lookalike.samples import sample_paths

    # (a) model only -----------------------------------------------------------------------
    model = SiameseModel.create()
    eager = TorchEmbedder(model)
    onnx = load_embedder(device="cpu")  # exports into the temporary cache
    assert isinstance(onnx, OnnxEmbedder)
    batch = np.random.default_rng(0).standard_normal((3 * bs, 3, 224, 224)).astype(np.float32)
    eager.embed(batch[:bs])
    onnx.embed(batch[:bs])
    torch_rates, ort_rates = [], []
    for _ in range(args.rounds):  # paired rounds: each ratio from runs seconds apart
        torch_rates.append(rate(len(batch), lambda: eager.embed(batch, batch_size=bs)))
        ort_rates.append(rate(len(batch), lambda: onnx.embed(batch, batch_size=bs)))
    engine_ratio = statistics.median(o / t for o, t in zip(ort_rates, torch_rates, strict=True))

    # (b) end to end -----------------------------------------------------------------------
    photos = make_photos(tmp, args.photos)
    pixels = Image.open(photos[0]).size
    mb = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
    big = np.random.default_rng(1).standard_normal((len(photos), 3, 224, 224))
    big = big.astype(np.float32)

    def sequential() -> None:
        arrays = [onnx.preprocess.load(p) for p in photos]
        for start in range(0, len(arrays), bs):
            onnx.embed(np.stack(arrays[start : start + bs]), batch_size=bs)

    model_only = "model only (preprocessed arrays)"
    decode_only = "decode + preprocess only, 1 thread, draft mode"
    runs: dict[str, Callable[[], object]] = {
        decode_only: lambda: [onnx.preprocess.load(p) for p in photos],
        "pipelined loader, draft mode": lambda: embed_files(onnx, photos),
        "pipelined loader, full decode": lambda: embed_files(onnx, photos, draft=False),
        "sequential decode then embed, draft mode": sequential,
    }
    cores = os.cpu_count() or 1
    e2e: dict[str, list[float]] = {name: [] for name in [model_only, *runs]}
    ratios: dict[str, list[float]] = {name: [] for name in runs}
    ceilings: list[float] = []
    for _ in range(args.rounds):
        # Model-only runs bracket each round; every ratio is against their mean, so load
        # from other jobs that drifts during the benchmark hits both sides alike.
        before = rate(len(photos), lambda: onnx.embed(big, batch_size=bs))
        current = {name: rate(len(photos), fn) for name, fn in runs.items()}
        after = rate(len(photos), lambda: onnx.embed(big, batch_size=bs))
        reference = (before + after) / 2
        e2e[model_only] += [before, after]
        for name, value in current.items():
            e2e[name].append(value)
            ratios[name].append(value / reference)
        # Decoding and inference share the cores: both CPU-bound and perfectly packed, the
        # pipeline reaches at most 1 / (1 + decode cost / inference cost) of model only.
        ceilings.append(1.0 / (1.0 + reference / (cores * current[decode_only])))
    ratio_med = {name: statistics.median(v) for name, v in ratios.items()}
    ratio_med[model_only] = 1.0
    ceiling = statistics.median(ceilings)
    pipelined = ratio_med["pipelined loader, draft mode"]

    # (c) cold start -----------------------------------------------------------------------
    samples = sample_paths()
    env = dict(os.environ)
    py = sys.executable
    pair = [str(samples["chelsea"]), str(samples["coffee"])]
    commands = {
        "python -c 'import onnxruntime, numpy'": [py, "-c", "import onnxruntime, numpy"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "lookalike compare (ONNX cache warm)": [py, "-m", "lookalike", "compare", *pair],
        "lookalike compare --engine torch": [
            py,
            "-m",
            "lookalike",
            "compare",
            *pair,
            "--engine",
            "torch",
        ],
    }
    check = (
        "import sys; from lookalike.cli import main; "
        f"main(['compare', {pair[0]!r}, {pair[1]!r}]); print('torch' in sys.modules)"
    )
    torch_loaded = subprocess.run(
        [py, "-c", check], check=True, capture_output=True, text=True, env=env
    ).stdout.split()[-1]
    for cmd in commands.values():  # warm the file cache once
        wall(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):  # interleaved, so drift hits every command alike
        for name, cmd in commands.items():
            times[name].append(wall(cmd, env))
    med = {name: statistics.median(v) for name, v in times.items()}
    warm = med["lookalike compare (ONNX cache warm)"]

    e2e_rows = "\n".join(
        f"| {name} | {spread(e2e[name])} | {ratio_med[name]:.2f} |" for name in e2e
    )
    cold_rows = "\n".join(
        f"| {name} | {med[name]:.2f} | {min(times[name]):.2f} | {max(times[name]):.2f} |"
        for name in commands
    )
    body = f"""
Other jobs share this machine and its load drifts, so each ratio is the median over
{args.rounds} rounds of a ratio between runs made seconds apart; throughputs show the
median and the range.

**(a) Model only**, default `mobilenet_v2` at 224 px, batch {bs}, {len(batch)} preprocessed
images (torch {torch.get_num_threads()} threads, ONNX Runtime default threads):

| engine | median images/s | range | ratio |
|---|---|---|---|
| PyTorch eager | {spread(torch_rates)} | 1.00 |
| ONNX Runtime (CPU) | {spread(ort_rates)} | **{engine_ratio:.2f}** |

**(b) End to end**, {len(photos)} JPEGs of {pixels[0]}×{pixels[1]} px (quality 90, mean
{mb:.2f} MB), ONNX engine, batch {bs}, {default_workers()} decode threads; ratio against the
same engine's model-only throughput in the same round (target ≥ 0.85 for the pipelined
loader):

| run | median images/s | range | ratio to model only |
|---|---|---|---|
{e2e_rows}

Decoding and inference compete for the same {cores} cores here: with both CPU-bound, the
pipeline cannot beat 1 / (1 + model-only rate / ({cores} × single-thread decode rate)) =
**{ceiling:.2f}** of model-only throughput on this machine (median over rounds); the
pipelined loader with draft
mode reached **{pipelined:.2f}**, {pipelined / ceiling:.0%} of that
ceiling. With spare cores (decode threads not competing with inference) the ratio
approaches 1.

**(c) Cold start** with the ONNX export cached (median of {args.repeats} interleaved runs,
seconds; the warm compare imported torch: **{torch_loaded}**):

| command | median | min | max |
|---|---|---|---|
{cold_rows}

- Cold `lookalike compare` on CPU: **{warm:.2f} s** (target ≤ 1 s),
  {warm - med["python -c 'import onnxruntime, numpy'"]:.2f} s more than importing
  onnxruntime and numpy, {med["python -c 'import torch'"] / warm:.1f}× faster than
  `import torch` alone and {med["lookalike compare --engine torch"] / warm:.1f}× faster than
  the same compare in torch.
"""
    write_section("bench_engine", "Inference engines and the pipelined loader", body)
    print(body)


if __name__ == "__main__":
    main()
