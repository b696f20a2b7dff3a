"""Out-of-domain detection on the digit demo model: who gets a warning.

    python benchmarks/bench_domain.py [--epochs 12] [--write]

Trains the demo (small CNN on scikit-learn digits, seed 0), then counts the images whose
domain score is above the stored threshold: the held-out digits (false alarms; the demo's
validation + test split, as stored in the record) and images of other kinds (the 21 offline
photos, 100 px crops of them, uniform noise, flat grey, inverted held-out digits). Prints a
Markdown section; ``--write`` replaces it in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    from lookalike.data.labelled import LabelledImages
    from lookalike.data.split import split_by_image
    from lookalike.dedup.calibrate import offline_photos
    from lookalike.inference import load_embedder
    from lookalike.training.demo import demo_config, run_demo

    work = Path(tempfile.mkdtemp())
    run_demo(work, config=replace(demo_config(0), epochs=args.epochs))
    embedder = load_embedder(str(work / "model"), engine="onnx")
    record = embedder.domain
    assert record is not None, "the demo stored no domain record"

    data = LabelledImages.from_digits()
    _, rest = split_by_image(data, 0.4, seed=0)  # the demo's held-out images
    held = [np.asarray(p, dtype=np.uint8) for p in rest.sources]
    photos = [Image.fromarray(p).convert("RGB") for p in offline_photos()]
    rng = np.random.default_rng(0)
    kinds: dict[str, list[object]] = {
        "held-out digits (false alarms)": list(held),
        "scikit-image / scikit-learn photos": list(photos),
        "photo crops (100 px)": [p.crop((0, 0, 100, 100)) for p in photos],
        "uniform noise": [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(20)],
        "flat grey": [np.full((32, 32), v, dtype=np.uint8) for v in (0, 64, 128, 192, 255)],
        "inverted held-out digits": [255 - h for h in held[: len(held) // 2]],
    }
    rows = ["| set | n | flagged |", "|---|---:|---:|"]
    for name, images in kinds.items():
        scores = record.score(embedder.embed(images))
        flagged = int((scores > record.threshold).sum())
        rows.append(f"| {name} | {len(images)} | {flagged / len(images):.1%} ({flagged}) |")
    body = (
        f"Demo model (small CNN, {record.dim}-d, seed 0, {args.epochs} epochs), "
        f"{record.images} training digits; threshold {record.threshold:.2f} (the 98th "
        "percentile of five-fold out-of-fold training scores; Mahalanobis distance over the "
        f"top {record.rank} principal components plus one shared variance for the rest).\n\n"
        + "\n".join(rows)
    )
    print(body)
    if args.write:
        from _report import write_section

        write_section("bench_domain", "Out-of-domain detection (digit demo model)", body)


if __name__ == "__main__":
    main()
