"""``lookalike demo``: seed 003's system end to end on data that ships offline.

A small-CNN Siamese network trained with contrastive loss on scikit-learn's 8×8 digits
(or real 28×28 MNIST with ``data_dir``), evaluated on held-out pairs, with training
curves, a 2-D embedding map and a saved model folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lookalike.data.augment import Augment
from lookalike.data.decode import decode_all, normalize
from lookalike.data.labelled import LabelledImages
from lookalike.data.pairs import make_pairs
from lookalike.data.split import split_by_image
from lookalike.metrics.calibration import Threshold, accuracy_at
from lookalike.metrics.distances import cosine_similarity, euclidean_distance
from lookalike.model.network import SiameseModel
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.domain import record_domain
from lookalike.training.recipes import write_history
from lookalike.training.trainer import Trainer, TrainResult
from lookalike.viz.maps import plot_embedding_map


@dataclass
class DemoResult:
    """What the demo measured and wrote.

    Attributes:
        pair_accuracy: Accuracy on held-out test pairs at the threshold calibrated on validation.
        test_pairs: Number of held-out test pairs.
        threshold: The calibrated cosine threshold.
        mean_distance_same, mean_distance_different: Mean euclidean distance of test pairs
            (seed 003's reading: low means same digit).
        seconds: Wall time of the whole demo.
        files: Files written.
    """

    pair_accuracy: float
    test_pairs: int
    threshold: float
    mean_distance_same: float
    mean_distance_different: float
    seconds: float
    dataset: str
    train: TrainResult
    files: list[Path] = field(default_factory=list)


def demo_config(seed: int = 0) -> TrainConfig:
    """The demo's settings: contrastive loss on all pairs of balanced batches, no augmentation."""
    return TrainConfig(
        loss="contrastive",
        sampling="balanced",
        miner="all",
        margin=1.0,
        epochs=12,
        batch_size=80,
        m_per_class=8,
        lr=3e-3,
        weight_decay=1e-4,
        patience=4,
        augment=Augment.off(),
        val_pairs=2000,
        seed=seed,
    )


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    progress: bool = False,
) -> DemoResult:
    """Train and evaluate the digit-pair Siamese network; write model, curves and map.

    Args:
        out_dir: Output folder (``model/`` inside it is a model folder ``lookalike compare`` loads).
        data_dir: Folder with MNIST IDX files; ``None`` uses scikit-learn's digits.
        seed: Seed for splits, pairs and training.
        config: Training settings (default :func:`demo_config`).
        progress: Progress bars.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    if data_dir is None:
        data, name = LabelledImages.from_digits(), "scikit-learn digits (8×8, 1,797 images)"
    else:
        data = LabelledImages.from_mnist(data_dir, split="train", limit=12_000)
        name = f"MNIST from {data_dir} ({len(data)} images)"
    train_set, rest = split_by_image(data, 0.4, seed=seed)
    val_set, test_set = split_by_image(rest, 0.5, seed=seed)
    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28, projection=(64,))
    decoded = [decode_all(s, model.preprocess) for s in (train_set, val_set, test_set)]
    train, val = (TrainData(d.pixels, d.labels) for d in decoded[:2])
    cfg = config or demo_config(seed)
    result = Trainer(
        model, train, val, cfg, out / "model", pretrained=False, progress=progress
    ).fit()
    files = write_history(result)

    test = decoded[2]
    emb = model.embed(normalize(test.pixels, model.preprocess).numpy())
    i, j, y = make_pairs(test.labels.numpy(), 2000, positive_fraction=0.5, seed=seed + 10)
    cos = np.asarray(cosine_similarity(emb[i], emb[j]))
    dist = np.asarray(euclidean_distance(emb[i], emb[j]))
    threshold = model.thresholds["cosine"]
    accuracy = accuracy_at(cos, y, Threshold(threshold, True, 0.0))
    model.metrics.update({"demo_test_pair_accuracy": accuracy, "demo_test_pairs": len(y)})
    held_out = torch.cat([decoded[1].pixels, test.pixels])  # validation and test digits
    record_domain(
        model,
        train.pixels,
        held_out,
        seed=seed,
        source="handwritten digits",
        limits=(len(train.pixels), len(held_out)),  # all of them: the demo's data is small
    )
    model.save(out / "model")
    files.append(
        plot_embedding_map(
            emb,
            test.labels.numpy(),
            test.classes,
            out / "embedding_map.png",
            title="Held-out digits",
        )
    )
    files.append(out / "model")
    return DemoResult(
        pair_accuracy=accuracy,
        test_pairs=len(y),
        threshold=threshold,
        mean_distance_same=float(dist[y == 1].mean()),
        mean_distance_different=float(dist[y == 0].mean()),
        seconds=time.perf_counter() - start,
        dataset=name,
        train=result,
        files=files,
    )
