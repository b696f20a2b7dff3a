"""Training a Siamese model: a plain, readable loop.

Each epoch draws batches (class-balanced with online mining, or pre-built random pairs or
triplets), computes a loss on the embeddings, and steps the optimiser. After every epoch
(and once before the first, "epoch 0") the model is measured on a fixed set of validation
pairs; the best epoch by validation pair accuracy is the model that is saved, so with the
default settings training never leaves a model worse than the one it started from.

Everything a run needs to continue after an interruption is in ``training/checkpoint.pt``
(our own file, loaded with ``weights_only=True``). Randomness is a pure function of
(seed, epoch), so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lookalike.data.augment import Augment, augment_batch
from lookalike.data.decode import normalize
from lookalike.data.pairs import make_pairs, make_triplets
from lookalike.data.sampler import ClassBalancedBatchSampler
from lookalike.errors import DataError
from lookalike.model.network import SiameseModel
from lookalike.training.checkpoint import Checkpoint, EpochRecord, configure_trainable, frozen_bn
from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss
from lookalike.training.miners import mine_pairs, mine_triplets
from lookalike.training.validation import PairValidator

LossName = Literal["contrastive", "triplet", "bce"]
TripletStrategy = Literal["all", "all_active", "semihard", "hard", "random"]
PairStrategy = Literal["all", "hard"]
MINERS = ("all", "all_active", "semihard", "hard", "random")
Sampling = Literal["balanced", "pairs", "triplets"]


@dataclass
class TrainConfig:
    """Training settings. Defaults are chosen to generalise to unseen identities.

    Attributes:
        loss: ``"contrastive"``, ``"triplet"`` or ``"bce"`` (pair head on |e_a − e_b|).
        sampling: ``"balanced"`` (m images per identity per batch, online mining: O(B²) pairs
            from B forward passes), ``"pairs"`` (pre-built random pairs, seed 004) or
            ``"triplets"`` (pre-built random triplets, seed 002).
        miner: Online mining strategy: for triplets ``"semihard"``, ``"hard"``, ``"all"``,
            ``"all_active"``, ``"random"``; for pairs ``"all"`` or ``"hard"``.
        margin: Loss margin; ``None``: 1.0 for contrastive, 0.2 for triplet.
        distance: ``"euclidean"`` or ``"cosine"`` inside the loss.
        epochs, batch_size, m_per_class: Length of training and batch layout.
        steps_per_epoch: Batches per epoch; ``None``: about one pass over the images.
        positive_fraction: Share of positive pairs for ``sampling="pairs"`` (class imbalance).
        lr: Learning rate of the projection, pooling and head.
        backbone_lr: Learning rate of the trainable backbone layers; ``None``: ``lr`` for a
            backbone trained from scratch, ``lr / 10`` for a pretrained one.
        train_fraction: Share of the backbone's parameter tensors (counted from the output end)
            that train; 0 freezes it; ``None``: 1.0 from scratch, 0.3 when pretrained.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: L2 weight decay.
        schedule: ``"cosine"`` (per epoch), ``"step"`` (×0.1 at 2/3 of the epochs) or ``"none"``.
        grad_clip: Max gradient norm; ``None`` turns clipping off.
        patience: Stop after this many epochs without a better validation accuracy.
        augment: Augmentations (``Augment.off()`` for digits).
        val_pairs: Fixed, balanced validation pairs drawn from the validation images.
        seed: Seed for every random choice.
        amp: Mixed precision; ``None``: on for CUDA.
    """

    loss: LossName = "triplet"
    sampling: Sampling = "balanced"
    miner: str = "semihard"
    margin: float | None = None
    distance: Literal["euclidean", "cosine"] = "euclidean"
    epochs: int = 10
    batch_size: int = 32
    m_per_class: int = 4
    steps_per_epoch: int | None = None
    positive_fraction: float = 0.5
    lr: float = 1e-3
    backbone_lr: float | None = None
    train_fraction: float | None = None
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "step", "none"] = "cosine"
    grad_clip: float | None = 5.0
    patience: int | None = 3
    augment: Augment = field(default_factory=Augment)
    val_pairs: int = 1000
    seed: int = 0
    amp: bool | None = None

    def __post_init__(self) -> None:
        checks = {
            "loss": (self.loss, ("contrastive", "triplet", "bce")),
            "sampling": (self.sampling, ("balanced", "pairs", "triplets")),
            "optimizer": (self.optimizer, ("adam", "sgd")),
            "schedule": (self.schedule, ("cosine", "step", "none")),
            "distance": (self.distance, ("euclidean", "cosine")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.miner not in MINERS:
            raise ValueError(f"miner must be one of {', '.join(MINERS)}, got {self.miner!r}")
        if self.sampling == "triplets" and self.loss != "triplet":
            raise ValueError("sampling='triplets' needs loss='triplet'")
        if self.loss == "triplet" and self.sampling == "pairs":
            raise ValueError("loss='triplet' needs sampling 'balanced' or 'triplets'")
        if self.epochs < 0 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("epochs must be ≥ 0, batch_size ≥ 2 and lr > 0")
        if self.train_fraction is not None and not 0.0 <= self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in [0, 1], got {self.train_fraction}")
        if not 0.0 < self.positive_fraction < 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1), got {self.positive_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        data = asdict(self)
        data["augment"] = self.augment.to_dict()
        return data


@dataclass
class TrainData:
    """Decoded training or validation images.

    Attributes:
        pixels: uint8 (N, C, H, W) at the model's input size.
        labels: int64 (N,) identity labels, or ``None`` for pair-only data.
        pairs: For pair-only data, (i, j, y): int64 index arrays (P,) and float32 labels (P,).
    """

    pixels: torch.Tensor
    labels: torch.Tensor | None = None
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.labels is None and self.pairs is None:
            raise ValueError("TrainData needs identity labels or labelled pairs")


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model: The best model (already saved in ``out_dir``).
        history: One record per epoch, epoch 0 being the starting point.
        best_epoch: The epoch whose weights were kept.
        baselines: Validation pair accuracy of the baselines (``raw_pixels``, and
            ``frozen_backbone`` when the backbone has pretrained weights).
        warnings: Things the user should know (for example: training made it worse).
        skipped: Unreadable images (source -> reason), skipped and counted.
    """

    model: SiameseModel
    history: list[EpochRecord]
    best_epoch: int
    baselines: dict[str, float]
    out_dir: Path
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> EpochRecord:
        """The record of the kept epoch."""
        return next(r for r in self.history if r.epoch == self.best_epoch)


class Trainer:
    """Train ``model`` on ``train`` data, select and calibrate on ``val`` data.

    Args:
        model: The model to train (modified in place; the best weights are loaded at the end).
        train: Training images with identity labels, or labelled pairs.
        val: Validation images (identity labels or labelled pairs).
        config: Settings.
        out_dir: Model folder to write; ``out_dir/training/`` holds history, plots, checkpoint.
        pretrained: Whether the backbone started from pretrained weights (sets defaults).
        progress: Show a progress bar.
    """

    def __init__(
        self,
        model: SiameseModel,
        train: TrainData,
        val: TrainData,
        config: TrainConfig,
        out_dir: str | os.PathLike[str],
        *,
        pretrained: bool,
        progress: bool = False,
    ) -> None:
        self.model, self.train_data, self.config = model, train, config
        self.out_dir = Path(out_dir)
        self.work_dir = self.out_dir / "training"
        self.progress = progress
        self.device = model.device
        cfg = config
        if cfg.loss == "bce" and model.head is None:
            raise ValueError("loss='bce' needs a model with a pair head (head=True)")
        if train.labels is None and cfg.sampling != "pairs":
            raise DataError("training from labelled pairs needs sampling='pairs'")
        fraction = (
            cfg.train_fraction if cfg.train_fraction is not None else (0.3 if pretrained else 1.0)
        )
        backbone_lr = (
            cfg.backbone_lr
            if cfg.backbone_lr is not None
            else (cfg.lr / 10 if pretrained else cfg.lr)
        )
        groups = configure_trainable(model, fraction, backbone_lr=backbone_lr, lr=cfg.lr)
        if not groups:
            raise ValueError(
                "nothing to train: the backbone is frozen and the model has no projection or "
                "head; raise train_fraction or add a projection"
            )
        self.freeze_bn = pretrained
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                groups, weight_decay=cfg.weight_decay
            )
        else:
            self.optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=cfg.weight_decay)
        self.scheduler = self._scheduler()
        margin = (
            cfg.margin if cfg.margin is not None else (1.0 if cfg.loss == "contrastive" else 0.2)
        )
        self.margin = margin
        self.loss_fn: nn.Module
        if cfg.loss == "contrastive":
            self.loss_fn = ContrastiveLoss(margin, distance=cfg.distance)
        elif cfg.loss == "triplet":
            self.triplet_loss = TripletMarginLoss(
                margin, distance=cfg.distance, reduction="mean_positive"
            )
            self.loss_fn = self.triplet_loss
        else:
            self.loss_fn = PairBCELoss()
        self.validator = PairValidator(model, val, cfg, margin)
        self.use_amp = (
            self.device.type == "cuda"
            if cfg.amp is None
            else cfg.amp and self.device.type == "cuda"
        )

    # -- schedule and steps ------------------------------------------------------------------

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        epochs = max(self.config.epochs, 1)
        if self.config.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs)
        if self.config.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, max(1, 2 * epochs // 3), 0.1)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    def _steps(self) -> int:
        """Batches per epoch: the configured number, else one pass over the images."""
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        return max(1, len(self.train_data.pixels) // self.config.batch_size)

    def _embed(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pixels = self.train_data.pixels[idx].to(self.device, non_blocking=True)
        x = normalize(augment_batch(pixels, self.config.augment, generator), self.model.preprocess)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            out: torch.Tensor = self.model(x)
        return out.float()

    def _epoch_batches(self, epoch: int, rng: np.random.Generator) -> list[tuple[str, Any]]:
        cfg, data, steps = self.config, self.train_data, self._steps()
        if cfg.sampling == "balanced":
            assert data.labels is not None
            sampler = ClassBalancedBatchSampler(
                data.labels.numpy(),
                m_per_class=cfg.m_per_class,
                batch_size=cfg.batch_size,
                batches_per_epoch=steps,
                seed=cfg.seed,
            )
            sampler.set_epoch(epoch)
            return [("balanced", np.asarray(b)) for b in sampler]
        if cfg.sampling == "triplets":
            assert data.labels is not None
            a, p, n = make_triplets(
                data.labels.numpy(), steps * cfg.batch_size, seed=int(rng.integers(2**31))
            )
            return [
                (
                    "triplets",
                    (
                        a[s : s + cfg.batch_size],
                        p[s : s + cfg.batch_size],
                        n[s : s + cfg.batch_size],
                    ),
                )
                for s in range(0, len(a), cfg.batch_size)
            ]
        if data.pairs is not None:
            i, j, y = data.pairs
            order = rng.permutation(len(y))
            i, j, y = i[order], j[order], y[order]
        else:
            assert data.labels is not None
            i, j, y = make_pairs(
                data.labels.numpy(),
                steps * cfg.batch_size,
                positive_fraction=cfg.positive_fraction,
                seed=int(rng.integers(2**31)),
            )
        return [
            (
                "pairs",
                (i[s : s + cfg.batch_size], j[s : s + cfg.batch_size], y[s : s + cfg.batch_size]),
            )
            for s in range(0, len(y), cfg.batch_size)
        ]

    def _loss(
        self, kind: str, batch: Any, generator: torch.Generator
    ) -> tuple[torch.Tensor, int, int]:
        """Loss of one batch, the number of pairs/triplets it scored, and forward passes used."""
        cfg = self.config
        if kind == "balanced":
            assert self.train_data.labels is not None
            idx = torch.as_tensor(batch)
            emb = self._embed(idx, generator)
            labels = self.train_data.labels[idx].to(self.device)
            if cfg.loss == "triplet":
                triplets = mine_triplets(
                    emb,
                    labels,
                    strategy=cast(TripletStrategy, cfg.miner),
                    margin=self.margin,
                    distance=cfg.distance,
                    generator=generator,
                )
                return self.triplet_loss.forward_mined(emb, triplets), len(triplets[0]), len(idx)
            pair_strategy: PairStrategy = "hard" if cfg.miner == "hard" else "all"
            i, j, y = mine_pairs(
                emb, labels, strategy=pair_strategy, margin=self.margin, distance=cfg.distance
            )
            return self._pair_loss(emb[i], emb[j], y), len(y), len(idx)
        if kind == "triplets":
            a, p, n = (torch.as_tensor(v) for v in batch)
            emb = self._embed(torch.cat([a, p, n]), generator)
            k = len(a)
            ea, ep, en = emb[:k], emb[k : 2 * k], emb[2 * k :]
            return self.loss_fn(ea, ep, en), len(a), 3 * len(a)
        i, j, y = batch
        emb = self._embed(torch.as_tensor(np.concatenate([i, j])), generator)
        ea, eb = emb[: len(i)], emb[len(i) :]
        return self._pair_loss(ea, eb, torch.as_tensor(y, device=self.device)), len(y), 2 * len(y)

    def _pair_loss(self, ea: torch.Tensor, eb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(y) == 0:
            return ea.sum() * 0.0
        if self.config.loss == "bce":
            assert self.model.head is not None
            return self.loss_fn(self.model.head(ea, eb), y.float())  # type: ignore[no-any-return]
        return self.loss_fn(ea, eb, y.float())  # type: ignore[no-any-return]

    def _train_epoch(self, epoch: int) -> tuple[float, int, int, float]:
        cfg = self.config
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + epoch)
        self.model.train()
        if self.freeze_bn:
            frozen_bn(self.model.backbone)
        batches = self._epoch_batches(epoch, rng)
        total, scored, passes = 0.0, 0, 0
        start = time.perf_counter()
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
        )
        for kind, batch in bar:
            loss, n_scored, n_passes = self._loss(kind, batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch}; lower the learning rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            if cfg.grad_clip:
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
            total += float(loss.detach())
            scored += n_scored
            passes += n_passes
            bar.set_postfix(loss=f"{total / (bar.n + 1):.4f}")
        self.scheduler.step()
        self.model.eval()
        return total / max(len(batches), 1), scored, passes, time.perf_counter() - start

    # -- the run ---------------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train, keeping the best epoch (epoch 0 included); resume from the checkpoint if asked."""
        cfg = self.config
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.work_dir / "checkpoint.pt"
        state = Checkpoint.load(ckpt_path) if resume and ckpt_path.is_file() else None
        if state is not None:
            state.restore(self.model, self.optimizer, self.scheduler)
            history, best_epoch, best_acc, stale = (
                state.history,
                state.best_epoch,
                state.best_accuracy,
                state.stale,
            )
            start_epoch = state.epoch + 1
        else:
            record = self.validator.record(0, None, 0, 0, 0.0, self.optimizer)
            history, best_epoch, best_acc, stale = [record], 0, record.val_accuracy, 0
            self._save_best(record)
            start_epoch = 1
        for epoch in range(start_epoch, cfg.epochs + 1):
            if cfg.patience is not None and stale >= cfg.patience:
                break
            loss, scored, passes, seconds = self._train_epoch(epoch)
            record = self.validator.record(epoch, loss, scored, passes, seconds, self.optimizer)
            history.append(record)
            if record.val_accuracy > best_acc + 1e-9:
                best_epoch, best_acc, stale = epoch, record.val_accuracy, 0
                self._save_best(record)
            else:
                stale += 1
            Checkpoint(epoch, history, best_epoch, best_acc, stale).save(
                ckpt_path, self.model, self.optimizer, self.scheduler, cfg.to_dict()
            )
        best = SiameseModel.load(self.out_dir, device=self.device)
        self.model.load_state_dict(best.state_dict())
        self.model.thresholds, self.model.metrics = best.thresholds, best.metrics
        return TrainResult(self.model, history, best_epoch, {}, self.out_dir)

    def _save_best(self, record: EpochRecord) -> None:
        metric = "probability" if self.config.loss == "bce" else "cosine"
        self.model.thresholds = {metric: record.val_threshold}
        self.model.metrics = {"val_pair_accuracy": record.val_accuracy, "best_epoch": record.epoch}
        self.model.provenance = {
            "how": f"trained: {self.config.loss} loss, {self.config.sampling} sampling",
            "train_config": self.config.to_dict(),
        }
        self.model.save(self.out_dir)
