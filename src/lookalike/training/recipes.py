"""End-to-end training runs: data on disk → decoded tensors → trained, calibrated model folder.

This is what ``lookalike train`` calls. It adds to :class:`~lookalike.training.trainer.Trainer` the
data loading and splitting, the baselines (raw pixels and the frozen pretrained backbone
on the same validation pairs), the warning when training made things worse, and the
history files and plots.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lookalike.data.decode import DecodedImages, decode_all
from lookalike.data.labelled import LabelledImages
from lookalike.data.pairs import PairList
from lookalike.data.split import split_by_identity, split_by_image
from lookalike.errors import DataError
from lookalike.imaging.preprocess import Preprocess
from lookalike.model.network import SiameseModel
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.trainer import Trainer, TrainResult
from lookalike.viz.curves import plot_history


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model that training starts from.

    Attributes:
        backbone: Registry name (``lookalike backbones``).
        pretrained: Start from pretrained weights (``None``: the backbone's default).
        image_size: Input size in pixels (``None``: the backbone's default).
        channels: 1 or 3 (``None``: the backbone's default).
        pooling: Global pooling.
        projection: Widths of a projection MLP (empty: none, so epoch 0 is the frozen backbone).
    """

    backbone: str = "mobilenet_v2"
    pretrained: bool | None = None
    image_size: int | None = None
    channels: int | None = None
    pooling: str = "avg"
    projection: Sequence[int] = ()

    def build(self, *, head: bool) -> SiameseModel:
        """Build the model (with a pair head for the BCE loss)."""
        return SiameseModel.create(
            self.backbone,
            pretrained=self.pretrained,
            input_size=self.image_size,
            channels=self.channels,
            pooling=self.pooling,
            projection=self.projection,
            head=head,
        )


def load_dataset(
    source: str | os.PathLike[str],
    *,
    dataset: Literal["auto", "folder", "pairs", "mnist", "digits"] = "auto",
    split: Literal["train", "test"] = "train",
) -> LabelledImages | PairList:
    """Open data: an identity folder, a pairs CSV, MNIST IDX files, or sklearn digits.

    Args:
        source: The folder, CSV or MNIST IDX folder (ignored for ``"digits"``).
        dataset: What ``source`` is; ``"auto"``: a pairs CSV by its suffix, else a folder.
        split: The MNIST split: ``"train"`` to train on, ``"test"`` to evaluate on.

    Raises:
        DataError: Nothing usable at ``source``.
    """
    path = Path(source)
    if dataset == "digits":
        return LabelledImages.from_digits()
    if dataset == "mnist":
        return LabelledImages.from_mnist(path, split=split)
    if dataset == "pairs" or (dataset == "auto" and path.suffix.lower() == ".csv"):
        return PairList.from_csv(path)
    return LabelledImages.from_folder(path)


def _decode(
    data: LabelledImages, preprocess: Preprocess, progress: bool
) -> tuple[TrainData, DecodedImages]:
    decoded = decode_all(data, preprocess, progress=progress)
    return TrainData(decoded.pixels, decoded.labels), decoded


def _pair_data(
    pairs: PairList, preprocess: Preprocess, val_fraction: float, seed: int, progress: bool
) -> tuple[TrainData, TrainData, dict[str, str]]:
    unique = sorted({*pairs.a, *pairs.b})
    holder = LabelledImages(list(unique), np.zeros(len(unique), dtype=np.int64), ["pairs"])
    decoded = decode_all(holder, preprocess, progress=progress)
    index = {str(src): k for k, src in enumerate(decoded.kept.sources)}
    keep = [
        k
        for k, (a, b) in enumerate(zip(pairs.a, pairs.b, strict=True))
        if a in index and b in index
    ]
    if len(keep) < 4:
        raise DataError(f"only {len(keep)} labelled pairs have readable images; need at least 4")
    i = np.array([index[pairs.a[k]] for k in keep], dtype=np.int64)
    j = np.array([index[pairs.b[k]] for k in keep], dtype=np.int64)
    y = pairs.labels[keep].astype(np.float32)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), dtype=bool)
    for cls in (0.0, 1.0):
        members = np.flatnonzero(y == cls)
        k = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val[rng.choice(members, size=k, replace=False)] = True
    train = TrainData(decoded.pixels, None, (i[~val], j[~val], y[~val]))
    valid = TrainData(decoded.pixels, None, (i[val], j[val], y[val]))
    return train, valid, decoded.skipped


def train_model(
    data: LabelledImages | PairList,
    out_dir: str | os.PathLike[str],
    *,
    model_spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    split: Literal["identity", "image"] = "identity",
    val_fraction: float = 0.2,
    resume: bool = False,
    device: str | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train and save a model folder at ``out_dir`` (history and plots in ``out_dir/training``).

    Args:
        data: Identity-labelled images, or labelled pairs (training from pair labels alone).
        out_dir: The model folder to write.
        model_spec: The starting model.
        config: Training settings.
        split: Validation split by ``"identity"`` (identities unseen in training; default) or
            by ``"image"``. Pair data is split by pair.
        val_fraction: Share held out for validation.
        resume: Continue from ``out_dir/training/checkpoint.pt`` if it exists.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"``.
        progress: Progress bars.

    Returns:
        The result, with baselines and warnings filled in.
    """
    spec = model_spec or ModelSpec()
    cfg = config or TrainConfig()
    model = spec.build(head=cfg.loss == "bce").to_device(device)
    pretrained = model.weights_sha256 is not None
    skipped: dict[str, str] = {}
    if isinstance(data, PairList):
        if cfg.sampling != "pairs":
            cfg = TrainConfig(**{**cfg.__dict__, "sampling": "pairs", "miner": "all"})
        train, val, skipped = _pair_data(data, model.preprocess, val_fraction, cfg.seed, progress)
    else:
        splitter = split_by_identity if split == "identity" else split_by_image
        train_set, val_set = splitter(data, val_fraction, seed=cfg.seed)
        train, decoded_train = _decode(train_set, model.preprocess, progress)
        val, decoded_val = _decode(val_set, model.preprocess, progress)
        skipped = {**decoded_train.skipped, **decoded_val.skipped}
    trainer = Trainer(model, train, val, cfg, out_dir, pretrained=pretrained, progress=progress)
    result = trainer.fit(resume=resume)
    result.baselines["raw_pixels"] = trainer.validator.raw_pixel_accuracy()
    if pretrained:
        frozen = SiameseModel.create(
            spec.backbone,
            pretrained=True,
            input_size=model.preprocess.input_size,
            channels=model.preprocess.channels,
        ).to_device(device)
        result.baselines["frozen_backbone"] = trainer.validator.accuracy(frozen)
    best = result.best.val_accuracy
    frozen_acc = result.baselines.get("frozen_backbone")
    if frozen_acc is not None and best < frozen_acc - 1e-9:
        result.warnings.append(
            f"training made the model worse than the frozen pretrained backbone on the validation "
            f"identities ({best:.4f} < {frozen_acc:.4f}); consider --train-fraction 0 with a "
            "projection, a lower learning rate, or the frozen backbone itself"
        )
    if result.best_epoch == 0 and cfg.epochs > 0:
        result.warnings.append(
            "no epoch beat the starting point on validation; the untrained starting model was kept"
        )
    if skipped:
        result.warnings.append(f"{len(skipped)} unreadable image(s) skipped")
    result.skipped = skipped
    result.model.metrics.update(
        {f"baseline_{k}_val_pair_accuracy": v for k, v in result.baselines.items()}
    )
    result.model.save(out_dir)
    write_history(result)
    return result


def write_history(result: TrainResult) -> list[Path]:
    """Write history.json, history.csv, loss.png and accuracy.png into ``out_dir/training``."""
    work = result.out_dir / "training"
    work.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) | {"scored_per_second": r.scored_per_second} for r in result.history]
    summary = {
        "best_epoch": result.best_epoch,
        "baselines": result.baselines,
        "warnings": result.warnings,
        "skipped": result.skipped,
        "history": rows,
    }
    (work / "history.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    with (work / "history.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [work / "history.json", work / "history.csv", *plot_history(result.history, work)]
