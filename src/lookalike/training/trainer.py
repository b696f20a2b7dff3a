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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from lookalike._progress import bar as progress_bar
from lookalike.data.augment import Augment, augment_batch
from lookalike.data.decode import normalize
from lookalike.data.pairs import make_pairs, make_triplets
from lookalike.data.sampler import ClassBalancedBatchSampler
from lookalike.errors import DataError
from lookalike.model.network import SiameseModel
from lookalike.training.checkpoint import Checkpoint, EpochRecord, configure_trainable, frozen_bn
from lookalike.training.config import PairStrategy, TrainConfig, TrainData, TripletStrategy
from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss
from lookalike.training.miners import mine_pairs, mine_triplets
from lookalike.training.pml import is_pml, pml_loss, pml_miner
from lookalike.training.validation import PairValidator

if TYPE_CHECKING:
    from lookalike.data.split import SplitChoice
    from lookalike.metrics.bootstrap import Interval
    from lookalike.training.distributed import World
    from lookalike.training.guard import GuardDecision


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
        split: How validation was split, and why.
        guard: What the guard kept (pretrained starts only).
        final: Validation pair accuracy of the kept model with its 95 % interval over
            validation identities (measured before any refit).
        refit: Whether the kept model was trained again on all the data.
        folds: With ``folds`` K ≥ 2: each fold's validation accuracy and interval.
        phase_seconds: Seconds of each phase after the epochs (guard, final evaluation,
            refit, baselines, saving, plots), in order.
    """

    model: SiameseModel
    history: list[EpochRecord]
    best_epoch: int
    baselines: dict[str, float]
    out_dir: Path
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    split: SplitChoice | None = None
    guard: GuardDecision | None = None
    final: Interval | None = None
    refit: bool = False
    folds: list[Interval] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)

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
        progress: Show progress bars (epochs, validation; on a terminal only).
        on_epoch: Called with each epoch's record as soon as it is measured (epoch 0
            included), for a one-line-per-epoch report.
        world: This process's place among several training processes (started by
            :func:`~lookalike.training.distributed.launch`, process group initialised);
            ``None`` (the default) trains in this process alone. With a world, each process
            embeds its share of the same global batch (class-balanced sampling only) and
            only rank 0 writes files; see :mod:`lookalike.training.distributed`.
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
        on_epoch: Callable[[EpochRecord], None] | None = None,
        world: World | None = None,
    ) -> None:
        config = config.resolved(train.pixels, pretrained=pretrained)
        self.world = world
        self.forward: nn.Module = model
        if world is not None:
            self._distribute(model, config, world)
        self.augment: Augment = config.augment if config.augment is not None else Augment()
        self.model, self.train_data, self.config = model, train, config
        self.out_dir = Path(out_dir)
        self.work_dir = self.out_dir / "training"
        self.progress = progress
        self.on_epoch = on_epoch
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
        self.loss_fn: nn.Module
        self.pml_miner: nn.Module | None = None
        if is_pml(cfg.loss):
            assert train.labels is not None  # pml losses need identities (checked by config)
            self.loss_fn = pml_loss(
                cfg.loss,
                cfg.loss_args,
                num_classes=int(train.labels.max()) + 1,
                embedding_size=model.embedding_dim,
            ).to(self.device)
            proxies = [p for p in self.loss_fn.parameters() if p.requires_grad]
            if proxies:  # proxy losses: their parameters train with the model
                groups.append({"params": proxies, "lr": cfg.lr})
            if is_pml(cfg.miner):
                self.pml_miner = pml_miner(cfg.miner, cfg.miner_args)
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
        if is_pml(cfg.loss):
            pass  # built above, before the optimiser
        elif cfg.loss == "contrastive":
            self.loss_fn = ContrastiveLoss(margin, distance=cfg.distance)
        elif cfg.loss == "triplet":
            self.triplet_loss = TripletMarginLoss(
                margin, distance=cfg.distance, reduction="mean_positive"
            )
            self.loss_fn = self.triplet_loss
        else:
            self.loss_fn = PairBCELoss()
        self.validator = PairValidator(model, val, cfg, margin, progress=progress)
        self.use_amp = (
            self.device.type == "cuda"
            if cfg.amp is None
            else cfg.amp and self.device.type == "cuda"
        )

    def _distribute(self, model: SiameseModel, config: TrainConfig, world: World) -> None:
        """Check that the run can be split over ``world`` and wrap the model in DDP."""
        from lookalike.training.distributed import sync_batch_norm

        if config.sampling != "balanced":
            raise DataError("training in several processes needs sampling='balanced'")
        if config.batch_size % world.size:
            raise DataError(
                f"the batch size ({config.batch_size}) must be a multiple of the number of "
                f"processes ({world.size})"
            )
        sync_batch_norm(model)
        ids = [model.device.index or 0] if model.device.type == "cuda" else None
        self.forward = nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=model.head is not None
        )

    @property
    def writes(self) -> bool:
        """Whether this process writes files (the only one, or rank 0)."""
        return self.world is None or self.world.rank == 0

    # -- schedule and steps ------------------------------------------------------------------

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        epochs = max(self.config.n_epochs, 1)
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
        x = normalize(augment_batch(pixels, self.augment, generator), self.model.preprocess)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            out: torch.Tensor = self.forward(x)
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
            if self.world is None:
                emb = self._embed(idx, generator)
            else:
                from lookalike.training.distributed import gather_rows

                emb = gather_rows(
                    self._embed(idx[self.world.share(len(idx))], generator), self.world
                )
            labels = self.train_data.labels[idx].to(self.device)
            if is_pml(cfg.loss):
                mined = self.pml_miner(emb, labels) if self.pml_miner is not None else None
                loss: torch.Tensor = self.loss_fn(emb, labels, mined)
                return loss, len(idx), len(idx)
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
        bar = progress_bar(
            batches, desc=f"epoch {epoch}/{cfg.n_epochs}", unit="batch", progress=self.progress
        )
        for kind, batch in bar:
            loss, n_scored, n_passes = self._loss(kind, batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch}; lower the learning rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.world is None:
                torch.autograd.backward(loss)
            else:
                self._backward_shared(loss, self.world.size)
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

    def _backward_shared(self, loss: torch.Tensor, size: int) -> None:
        """Back-propagate a loss every process computed on the same global batch.

        Each process's graph reaches only its own rows, and DDP averages the model's gradients,
        so ``size × loss`` gives the single-process gradient; the loss's own parameters
        (proxies), outside DDP, get the full gradient in every process and are scaled back.
        """
        torch.autograd.backward(loss * size)
        for p in self.loss_fn.parameters():
            if p.grad is not None:
                p.grad.div_(size)

    # -- the run ---------------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train, keeping the best epoch (epoch 0 included); resume from the checkpoint if asked."""
        cfg = self.config
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.work_dir / "checkpoint.pt"
        state = Checkpoint.load(ckpt_path) if resume and ckpt_path.is_file() else None
        if state is not None:
            self._check_resumable(state, ckpt_path)
            state.restore(self.model, self.optimizer, self.scheduler, self.loss_fn)
            history, best_epoch, best_acc, stale = (
                state.history,
                state.best_epoch,
                state.best_accuracy,
                state.stale,
            )
            start_epoch = state.epoch + 1
        else:
            record = self._measure(0, None, 0, 0, 0.0)
            self._report(record)
            history, best_epoch, best_acc, stale = [record], 0, record.val_accuracy, 0
            self._save_best(record)
            self._sync()
            start_epoch = 1
        for epoch in range(start_epoch, cfg.n_epochs + 1):
            if cfg.patience is not None and stale >= cfg.patience:
                break
            loss, scored, passes, seconds = self._train_epoch(epoch)
            record = self._measure(epoch, loss, scored, passes, seconds)
            self._report(record)
            history.append(record)
            if record.val_accuracy > best_acc + 1e-9:
                best_epoch, best_acc, stale = epoch, record.val_accuracy, 0
                self._save_best(record)
            else:
                stale += 1
            if self.writes:
                Checkpoint(epoch, history, best_epoch, best_acc, stale).save(
                    ckpt_path,
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    cfg.to_dict(),
                    self.loss_fn,
                )
            self._sync()
        best = SiameseModel.load(self.out_dir, device=self.device)
        self.model.load_state_dict(best.state_dict())
        self.model.thresholds, self.model.metrics = best.thresholds, best.metrics
        return TrainResult(self.model, history, best_epoch, {}, self.out_dir)

    def _check_resumable(self, state: Checkpoint, path: Path) -> None:
        """Refuse to resume under other settings: the schedule and sampling would not match
        (a cosine schedule's length is the epoch count, so only ``schedule="none"`` runs may
        be extended with more epochs).

        Raises:
            DataError: The checkpoint was written with other settings.
        """
        saved = state.config
        if saved is None:
            return
        now = self.config.to_dict()
        # Stopping rules may change; so may the length when no schedule depends on it.
        free = {"patience"} | ({"epochs"} if self.config.schedule == "none" else set())
        changed = sorted(k for k in now if k in saved and saved[k] != now[k] and k not in free)
        if changed:
            detail = ", ".join(f"{k} {saved[k]!r} → {now[k]!r}" for k in changed[:4])
            raise DataError(
                f"{path} was written with other settings ({detail}); resume with the same "
                "settings, or start over without --resume"
            )

    def run_epochs(self) -> None:
        """Train for ``config.epochs`` epochs with no validation, selection or files (refit)."""
        for epoch in range(1, self.config.n_epochs + 1):
            self._train_epoch(epoch)

    def _measure(
        self, epoch: int, loss: float | None, scored: int, passes: int, seconds: float
    ) -> EpochRecord:
        """Validate (rank 0 only with several processes, which then all take its record, so
        that every process makes the same choices of best epoch and early stop)."""
        record = (
            self.validator.record(epoch, loss, scored, passes, seconds, self.optimizer)
            if self.writes
            else None
        )
        if self.world is None:
            assert record is not None
            return record
        import torch.distributed as dist

        shared = [record]
        dist.broadcast_object_list(shared, src=0)
        assert shared[0] is not None
        return shared[0]

    def _report(self, record: EpochRecord) -> None:
        if self.on_epoch is not None and self.writes:
            self.on_epoch(record)

    def _sync(self) -> None:
        """With several processes: wait until rank 0 has written its files."""
        if self.world is not None:
            self.world.barrier()

    def _save_best(self, record: EpochRecord) -> None:
        metric = "probability" if self.config.loss == "bce" else "cosine"
        self.model.thresholds = {metric: record.val_threshold}
        self.model.metrics = {"val_pair_accuracy": record.val_accuracy, "best_epoch": record.epoch}
        self.model.provenance = {
            "how": f"trained: {self.config.loss} loss, {self.config.sampling} sampling",
            "train_config": self.config.to_dict(),
        }
        if self.writes:
            self.model.save(self.out_dir)
