"""Training benchmark: online mining versus seed 002's pre-built random triplets, and the demo.

Both runs train the same small CNN on the same generated glyph identities (validation on
identities never seen in training) with the same number of forward passes per epoch, so the
comparison is what each strategy gets out of the same compute. Run:

    bash scripts/dev run python benchmarks/bench_train.py [--finetune]

``--finetune`` adds the issue's sizing run: fine-tuning mobilenet_v2 at 64 px on 10,000
generated images for 3 epochs (about 10+ minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _report import write_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from glyphs import glyph_images
from lookalike.data.augment import Augment
from lookalike.data.labelled import LabelledImages
from lookalike.training.config import TrainConfig
from lookalike.training.recipes import ModelSpec, train_model


def run(
    data: LabelledImages, sampling: str, batch: int, steps: int, epochs: int
) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = TrainConfig(
        loss="triplet",
        sampling=sampling,
        miner="semihard",
        epochs=epochs,
        batch_size=batch,
        m_per_class=4,
        steps_per_epoch=steps,
        lr=3e-3,
        augment=Augment.off(),
        patience=None,
        val_pairs=1000,
    )
    spec = ModelSpec(backbone="small_cnn", pretrained=False, image_size=28)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_model(data, tmp, model_spec=spec, config=cfg, split="identity")
        wall = time.perf_counter() - start
    trained = [r for r in result.history if r.epoch > 0]
    seconds = sum(r.seconds for r in trained)
    return {
        "scored_per_s": sum(r.scored for r in trained) / seconds,
        "passes": sum(r.forward_passes for r in trained),
        "train_s": seconds,
        "wall_s": wall,
        "val": result.best.val_accuracy,
        "start": result.history[0].val_accuracy,
    }


def finetune() -> str:
    rng = np.random.default_rng(0)
    n_ids, per_id = 200, 50
    images, labels = glyph_images(n_ids=n_ids, per_id=per_id, size=64, seed=1)
    rgb = np.repeat(images[..., None], 3, axis=-1)
    rgb = (rgb * rng.uniform(0.5, 1.0, (1, 1, 1, 3))).astype(np.uint8)
    data = LabelledImages.from_arrays(rgb, labels)
    cfg = TrainConfig(epochs=3, batch_size=32, patience=None)
    spec = ModelSpec(backbone="mobilenet_v2", image_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_model(data, tmp, model_spec=spec, config=cfg)
        wall = time.perf_counter() - start
    return (
        f"\nFine-tuning `mobilenet_v2` (pretrained, default settings: semi-hard triplets, last 30% "
        f"of the backbone at lr/10) at 64 px on {len(data):,} generated images, 3 epochs: "
        f"**{wall / 60:.1f} min** wall time (target ≤ 15 min); validation pair accuracy on unseen "
        f"identities {result.history[0].val_accuracy:.3f} (frozen, epoch 0) → "
        f"{result.best.val_accuracy:.3f} (best epoch {result.best_epoch}).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--finetune", action="store_true")
    args = parser.parse_args()
    images, labels = glyph_images(n_ids=40, per_id=20, seed=3)
    data = LabelledImages.from_arrays(images, labels)
    batch, steps, epochs = 48, 20, 6
    mined = run(data, "balanced", batch, steps, epochs)
    # Same forward passes: a pre-built triplet costs 3 passes, so batch/3 triplets per step.
    prebuilt = run(data, "triplets", batch // 3, steps, epochs)
    from lookalike.training.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        demo = run_demo(tmp)

    def row(name: str, r: dict[str, float]) -> str:
        ratio = r["scored_per_s"] / prebuilt["scored_per_s"]
        return (
            f"| {name} | {r['scored_per_s']:,.0f} | {ratio:.1f} | {r['train_s']:.1f} | "
            f"{r['start']:.3f} → {r['val']:.3f} |"
        )

    body = f"""
Triplet loss, small CNN, 40 generated glyph identities × 20 images (32 train identities,
8 unseen validation identities), {epochs} epochs × {steps} steps, both with
{mined["passes"]:,} forward passes in all:

| sampling | triplets scored / s | ratio | train time (s) | val pair accuracy (start → best) |
|---|---|---|---|---|
{row("pre-built random triplets (seed 002)", prebuilt)}
{row("class-balanced batches + semi-hard mining", mined)}

`lookalike demo` (small CNN, contrastive loss, scikit-learn digits): pair accuracy
**{demo.pair_accuracy:.4f}** on {demo.test_pairs:,} held-out pairs, wall time
**{demo.seconds:.1f} s** (target ≥ 0.95 within 3 minutes).
"""
    if args.finetune:
        body += finetune()
    write_section("bench_train", "Training: online mining vs pre-built triplets; the demo", body)
    print(body)


if __name__ == "__main__":
    main()
