"""End-to-end training runs: data on disk → decoded tensors → trained, calibrated model folder.

This is what ``lookalike train`` calls. It adds to :class:`~lookalike.training.trainer.Trainer` the
data loading and splitting, the baselines (raw pixels and the frozen pretrained backbone
on the same validation pairs), the warning when training made things worse, and the
history files and plots.
"""

from __future__ import annotations

import copy
import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lookalike._progress import Phases
from lookalike.data.decode import DecodedImages, decode_all
from lookalike.data.labelled import LabelledImages
from lookalike.data.pairs import PairList
from lookalike.data.split import MIN_VAL_IDENTITIES, SplitChoice, choose_split, identity_folds
from lookalike.data.split import split as split_data
from lookalike.errors import DataError
from lookalike.imaging.preprocess import Preprocess
from lookalike.metrics.bootstrap import Interval
from lookalike.metrics.calibration import best_accuracy_threshold
from lookalike.model.network import SiameseModel
from lookalike.training.checkpoint import EpochRecord
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.distributed import World
from lookalike.training.domain import record_domain
from lookalike.training.guard import ALPHAS, guard, interpolate
from lookalike.training.trainer import Trainer, TrainResult
from lookalike.training.validation import PairValidator
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


def _load_start(
    spec: ModelSpec, start_from: str | os.PathLike[str] | None, head: bool
) -> SiameseModel:
    """The model training starts from: a model folder (training it further) or a new one."""
    if start_from is None:
        return spec.build(head=head)
    model = SiameseModel.load(start_from)
    if head and model.head is None:
        raise DataError(f"{start_from} has no pair head; the bce loss needs one")
    return model


def train_model(
    data: LabelledImages | PairList,
    out_dir: str | os.PathLike[str],
    *,
    model_spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    split: Literal["auto", "identity", "image"] = "auto",
    val_fraction: float = 0.2,
    refit: bool = False,
    start_from: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = False,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    folds: int = 1,
    notify: Callable[[str], None] | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train and save a model folder at ``out_dir`` (history and plots in ``out_dir/training``).

    Args:
        data: Identity-labelled images, or labelled pairs (training from pair labels alone).
        out_dir: The model folder to write.
        model_spec: The starting model (ignored with ``start_from``).
        config: Training settings.
        split: ``"auto"`` chooses from the data (:func:`~lookalike.data.split.choose_split`);
            ``"identity"`` holds out identities, ``"image"`` images. Pair data is split by pair.
        val_fraction: Share held out for validation.
        refit: After choosing the epoch count on validation, train again from the start on
            all the data (training + validation) for that many epochs. Off by default: on
            the closed-set benchmark it changed nothing measurable at twice the CPU time.
        start_from: A model folder to train further instead of building ``model_spec``.
        resume: Continue from ``out_dir/training/checkpoint.pt`` if it exists.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"``.
        progress: Progress bars.
        on_epoch: Called with each epoch's validation record (see :class:`Trainer`).
        folds: With K ≥ 2, first train K times, each time holding out another K-th of the
            identities, and report the spread of the validation accuracy
            (``result.folds``); then train the kept model as usual.
        notify: Called with a one-line message before each step that takes a while after
            the epochs (cross-validation folds, guard, refit, baselines), so nothing is silent.
        world: This process's place among several training processes (see
            :func:`~lookalike.training.distributed.launch`): the epochs are shared; what comes
            after them (guard, baselines, saving, plots) runs in rank 0 alone, and the other
            ranks return the bare result of the epochs. ``refit`` and ``folds`` need one process.

    Returns:
        The result, with the split, the guard's decision, baselines and warnings filled in.
    """
    spec = model_spec or ModelSpec()
    cfg = config or TrainConfig()
    if world is not None and (refit or folds > 1):
        raise DataError("refit and cross-validation folds need a single training process")
    say = notify or (lambda _: None)
    model = _load_start(spec, start_from, head=cfg.loss == "bce").to_device(device)
    pretrained = model.weights_sha256 is not None or start_from is not None
    # The guard compares with the starting model, which must itself be a usable one.
    guarded = pretrained and cfg.guard and (start_from is not None or not spec.projection)
    skipped: dict[str, str] = {}
    choice: SplitChoice | None = None
    if isinstance(data, PairList):
        if cfg.sampling != "pairs":
            cfg = replace(cfg, sampling="pairs", miner="all")
        train, val, skipped = _pair_data(data, model.preprocess, val_fraction, cfg.seed, progress)
    else:
        choice = choose_split(data, val_fraction, given=None if split == "auto" else split)
        train_set, val_set = split_data(data, choice.kind, val_fraction, seed=cfg.seed)
        train, decoded_train = _decode(train_set, model.preprocess, progress)
        val, decoded_val = _decode(val_set, model.preprocess, progress)
        skipped = {**decoded_train.skipped, **decoded_val.skipped}
    cfg = cfg.resolved(train.pixels, pretrained=pretrained)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fold_results = (
        _cross_validate(model, start, data, folds, cfg, Path(out_dir), pretrained, progress, say)
        if folds > 1 and isinstance(data, LabelledImages)
        else []
    )
    model.load_state_dict(start)
    trainer = Trainer(
        model,
        train,
        val,
        cfg,
        out_dir,
        pretrained=pretrained,
        progress=progress,
        on_epoch=on_epoch,
        world=world,
    )
    result = trainer.fit(resume=resume)
    if world is not None and world.rank != 0:
        return result  # rank 0 alone measures and writes what comes after the epochs
    result.split = choice
    result.folds = fold_results
    # After the epochs: one bar over what follows (5 to 7 phases), their seconds kept.
    phases = Phases("train", int(guarded) + int(bool(refit)) + 5, progress=progress)
    if guarded:
        phases.start("guard: WiSE-FT sweep and bootstrap")
        say(
            f"guard: comparing the pretrained start with {len(ALPHAS)} mixes of the trained weights"
        )
        tuned = copy.deepcopy(result.model)
        result.guard = guard(result.model, start, trainer.validator, progress=progress)
        if result.guard.alpha < 1.0 and result.best_epoch > 0:
            # What training made, set aside: a user who knows better can still use it.
            tuned.provenance = {**tuned.provenance, "guard": "set aside by the guard"}
            tuned.save(Path(out_dir) / "training" / "unguarded")
        if result.guard.alpha == 0.0 and result.best_epoch > 0:
            result.warnings.append(result.guard.reason)
    # Measured before any refit: after it, the validation images are training images.
    phases.start("final evaluation")
    _final_metrics(result, trainer.validator)
    do_refit = bool(refit)
    alpha = 1.0 if result.guard is None else result.guard.alpha
    has_identities = train.labels is not None and val.labels is not None
    result.refit = bool(do_refit and has_identities and result.best_epoch > 0 and alpha)
    if result.refit:
        everything = _merge(train, val)  # only now: it doubles the decoded pixels
        say(
            f"refit: training again on all {len(everything.pixels)} images "
            f"for {result.best_epoch} epochs"
        )
        phases.start("refit")
        _refit(result, start, everything, val, cfg, pretrained, alpha, progress=progress)
    phases.start("baselines")
    say("baselines: raw pixels and the frozen backbone on the validation pairs")
    result.baselines["raw_pixels"] = trainer.validator.raw_pixel_accuracy()
    if model.weights_sha256 is not None and start_from is None:
        frozen = SiameseModel.create(
            spec.backbone,
            pretrained=True,
            input_size=model.preprocess.input_size,
            channels=model.preprocess.channels,
        ).to_device(device)
        result.baselines["frozen_backbone"] = trainer.validator.accuracy(frozen)
    _warn(result, choice, cfg, skipped)
    result.skipped = skipped
    result.model.metrics.update(
        {f"baseline_{k}_val_pair_accuracy": v for k, v in result.baselines.items()}
    )
    result.model.provenance = {
        **result.model.provenance,
        "split": None if choice is None else {"kind": choice.kind, "reason": choice.reason},
        "guard": None if result.guard is None else result.guard.reason,
        "refit": result.refit,
    }
    phases.start("domain statistics")
    _record_domain(result, train, val, cfg.seed, say)
    phases.start("saving")
    result.model.save(out_dir)
    phases.start("plots")
    write_history(result)
    phases.close()
    result.phase_seconds = dict(phases.seconds)
    return result


def _cross_validate(
    model: SiameseModel,
    start: dict[str, torch.Tensor],
    data: LabelledImages,
    folds: int,
    cfg: TrainConfig,
    out_dir: Path,
    pretrained: bool,
    progress: bool,
    say: Callable[[str], None],
) -> list[Interval]:
    """Validation accuracy (with its interval) of K runs on rotated held-out identities."""
    found = []
    for k, (train_set, val_set) in enumerate(identity_folds(data, folds, seed=cfg.seed)):
        held = int((val_set.counts() > 0).sum())
        say(f"fold {k + 1} of {folds}: {held} identities held out")
        model.load_state_dict(start)
        train, _ = _decode(train_set, model.preprocess, progress)
        val, _ = _decode(val_set, model.preprocess, progress)
        work = out_dir / "training" / f"fold-{k + 1}"
        trainer = Trainer(model, train, val, cfg, work, pretrained=pretrained, progress=progress)
        fitted = trainer.fit()
        scores = trainer.validator.scores(trainer.validator.embed(fitted.model), fitted.model)
        threshold = best_accuracy_threshold(scores, trainer.validator.y)
        found.append(trainer.validator.interval(scores, threshold.value))
    return found


def _merge(a: TrainData, b: TrainData) -> TrainData:
    """Training and validation images together (for the refit)."""
    assert a.labels is not None and b.labels is not None
    return TrainData(torch.cat([a.pixels, b.pixels]), torch.cat([a.labels, b.labels]))


def _refit(
    result: TrainResult,
    start: dict[str, torch.Tensor],
    everything: TrainData,
    val: TrainData,
    cfg: TrainConfig,
    pretrained: bool,
    alpha: float,
    *,
    progress: bool = False,
) -> None:
    """Train again from ``start`` on all images for the chosen number of epochs.

    The guard's mixture ``alpha`` is applied to the refit weights as it was to the first
    run's; ``progress`` shows each epoch's bar. Thresholds and validation figures stay those
    of the first run (the validation images are training images now).
    """
    model = result.model
    thresholds = dict(model.thresholds)
    model.load_state_dict(start)
    refit_cfg = replace(cfg, epochs=result.best_epoch, patience=None)
    trainer = Trainer(
        model, everything, val, refit_cfg, result.out_dir, pretrained=pretrained, progress=progress
    )
    trainer.run_epochs()
    if alpha < 1.0:
        model.load_state_dict(interpolate(start, model.state_dict(), alpha))
    model.thresholds = thresholds


def _final_metrics(result: TrainResult, validator: PairValidator) -> None:
    """Validation figures of the model that is kept, with its interval."""
    scores = validator.scores(validator.embed(result.model), result.model)
    threshold = best_accuracy_threshold(scores, validator.y)
    result.final = validator.interval(scores, threshold.value)
    metric = "probability" if validator.config.loss == "bce" else "cosine"
    result.model.thresholds = {metric: threshold.value}
    result.model.metrics.update(
        val_pair_accuracy=threshold.accuracy,
        val_pair_accuracy_ci95=[result.final.low, result.final.high],
        val_identities=result.final.identities,
        val_pairs=result.final.pairs,
    )


def _warn(
    result: TrainResult, choice: SplitChoice | None, cfg: TrainConfig, skipped: dict[str, str]
) -> None:
    best = result.final.value if result.final else result.best.val_accuracy
    frozen_acc = result.baselines.get("frozen_backbone")
    if frozen_acc is not None and best < frozen_acc - 1e-9:
        result.warnings.append(
            f"the kept model is worse than the frozen pretrained backbone on the validation "
            f"pairs ({best:.4f} < {frozen_acc:.4f}); use the pretrained backbone itself "
            "(--backbone NAME, no training)"
        )
    if result.best_epoch == 0 and cfg.n_epochs:
        result.warnings.append(
            "no epoch beat the starting point on validation; the untrained starting model was kept"
        )
    if choice is not None and not choice.covers_new_identities:
        result.warnings.append(
            "validation held out images of the training identities: its figures say nothing "
            "about identities or kinds of images not trained on; measure on those with "
            "lookalike eval MODEL DIR"
        )
    elif result.final is not None and result.final.identities < MIN_VAL_IDENTITIES:
        result.warnings.append(
            f"validation rests on {result.final.identities} identities: too few to predict "
            "other kinds of images (use --folds K to rotate them)"
        )
    if skipped:
        result.warnings.append(f"{len(skipped)} unreadable image(s) skipped")


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


def _record_domain(
    result: TrainResult, train: TrainData, val: TrainData, seed: int, say: Callable[[str], None]
) -> None:
    """Store the statistics of the kept model's training embeddings (its domain) with it.

    The false-alarm rate is measured on the validation images, unless they were trained on
    (a refit) or share the training images (pair data, split by pair).
    """
    say("domain: statistics of the training embeddings, to flag inputs unlike them")
    held = None if result.refit or val.labels is None else val.pixels
    record_domain(result.model, train.pixels, held, seed=seed)
