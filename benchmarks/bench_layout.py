"""Startup cost of the package layout: ``import lookalike`` and a cold ``lookalike compare``,
this tree against a baseline checkout, alternated in one run (these machines are noisy).

    python benchmarks/bench_layout.py --baseline-src ../old/src [--rounds 7]

Each round runs, for both trees, a fresh interpreter that imports lookalike (and reports
whether torch got imported), then ``lookalike compare`` on the two bundled cat photos with a
warm ONNX cache (the first round warms it and is dropped). Prints the medians and the
ratio this / baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"

IMPORT = "import sys, lookalike; print('torch' in sys.modules)"
COMPARE = (
    "import sys\n"
    "from lookalike.cli import main\n"
    "from lookalike.samples import sample_paths\n"
    "p = list(sample_paths().values())\n"
    "code = main(['compare', str(p[0]), str(p[1])])\n"
    "print('torch' in sys.modules, file=sys.stderr)\n"
    "raise SystemExit(code)\n"
)


def _run(src: Path, code: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "LOOKALIKE_OFFLINE": "1"}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - start, (out.stdout + out.stderr).strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, required=True, help="src/ of the baseline")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be in 1..100")
    trees = {"baseline": args.baseline_src.resolve(), "this": HERE}
    times: dict[tuple[str, str], list[float]] = {}
    torch_seen: dict[tuple[str, str], str] = {}
    for src in trees.values():  # warm the ONNX cache and the file system
        _run(src, COMPARE)
    for _ in range(args.rounds):
        for name, src in trees.items():
            for what, code in (("import lookalike", IMPORT), ("cold compare", COMPARE)):
                seconds, torch = _run(src, code)
                times.setdefault((what, name), []).append(seconds)
                torch_seen[(what, name)] = torch
    print("| step | baseline (s) | this (s) | this / baseline | torch imported (this) |")
    print("|---|---:|---:|---:|---|")
    for what in ("import lookalike", "cold compare"):
        base = statistics.median(times[(what, "baseline")])
        this = statistics.median(times[(what, "this")])
        print(
            f"| {what} | {base:.3f} | {this:.3f} | {this / base:.2f} | "
            f"{torch_seen[(what, 'this')]} |"
        )
    print(f"\nmedians of {args.rounds} alternated rounds, each a fresh interpreter")


if __name__ == "__main__":
    main()
