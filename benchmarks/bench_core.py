"""Core benchmark: cold `lookalike compare` versus `import torch`, and embedding throughput.

Run: ``bash scripts/dev run python benchmarks/bench_core.py`` (about 2 minutes on 2 cores).
Writes the ``bench_core`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from _report import write_section


def wall(cmd: list[str]) -> float:
    """Seconds one subprocess takes, start to exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from lookalike.samples import sample_paths

    samples = sample_paths()
    py = sys.executable
    commands = {
        "python -c 'import torch'": [py, "-c", "import torch"],
        "python -c 'import lookalike'": [py, "-c", "import lookalike"],
        "lookalike compare (cold, 2 photos)": [
            py,
            "-m",
            "lookalike",
            "compare",
            str(samples["chelsea"]),
            str(samples["coffee"]),
        ],
    }
    wall(commands["python -c 'import torch'"])  # warm the file cache once
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):  # interleaved, so drift hits every command alike
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    med = {name: statistics.median(v) for name, v in times.items()}
    torch_s = med["python -c 'import torch'"]
    compare_s = med["lookalike compare (cold, 2 photos)"]

    import torch

    from lookalike.model.network import SiameseModel

    model = SiameseModel.create()
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((args.images, 3, 224, 224)).astype(np.float32)
    model.embed(batch[: args.batch_size])  # warm-up
    start = time.perf_counter()
    model.embed(batch, batch_size=args.batch_size)
    eager = args.images / (time.perf_counter() - start)
    model_cl = model.to(memory_format=torch.channels_last)
    model_cl.embed(batch[: args.batch_size])
    start = time.perf_counter()
    model_cl.embed(batch, batch_size=args.batch_size)
    channels_last = args.images / (time.perf_counter() - start)

    rows = "\n".join(
        f"| {name} | {med[name]:.2f} | {min(times[name]):.2f} | {max(times[name]):.2f} |"
        for name in commands
    )
    body = f"""
Cold start (median of {args.repeats} interleaved runs, seconds):

| command | median | min | max |
|---|---|---|---|
{rows}

- **Cold `compare`: {compare_s:.2f} s, {compare_s / torch_s:.2f}× the time of `import torch`
  alone** ({compare_s - torch_s:+.2f} s; target: ≤ 1 s added). On CPU with the ONNX export
  cached (the first compare made it), compare runs on ONNX Runtime and never imports torch.
  `import lookalike` alone does not import torch.

Embedding throughput, default `mobilenet_v2` at 224 px, PyTorch eager on CPU,
batch {args.batch_size}, {args.images} preprocessed images (model time only,
{torch.get_num_threads()} threads):

| layout | images/s | ratio |
|---|---|---|
| contiguous (default) | {eager:.1f} | 1.00 |
| channels_last | {channels_last:.1f} | {channels_last / eager:.2f} |
"""
    write_section("bench_core", "Core: cold compare and embedding throughput", body)
    print(body)


if __name__ == "__main__":
    main()
