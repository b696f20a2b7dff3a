"""Training bookkeeping: per-epoch records, checkpoints, and which parameters train."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookalike._io import atomic_write_with
from lookalike.errors import DataError
from lookalike.model.network import SiameseModel


@dataclass
class EpochRecord:
    """One row of training history (epoch 0 is the untrained starting point).

    Attributes:
        epoch: Epoch number.
        train_loss: Mean training loss of the epoch (``None`` for epoch 0).
        val_loss: Loss on the fixed validation pairs/triplets.
        val_accuracy: Validation pair accuracy at the best threshold on those pairs.
        val_threshold: That threshold (cosine similarity, or P(same) for the head).
        lr: Learning rate of the head/projection group during the epoch.
        seconds: Wall time of the epoch's training steps.
        scored: Pairs or triplets the loss scored during the epoch.
        forward_passes: Images embedded during the epoch.
        val_ci_low, val_ci_high: 95 % interval of ``val_accuracy`` from a bootstrap over
            validation identities (``None`` in histories written before it existed).
        val_identities, val_pairs: What the validation figures rest on.
    """

    epoch: int
    train_loss: float | None
    val_loss: float
    val_accuracy: float
    val_threshold: float
    lr: float
    seconds: float
    scored: int
    forward_passes: int
    val_ci_low: float | None = None
    val_ci_high: float | None = None
    val_identities: int | None = None
    val_pairs: int | None = None

    @property
    def scored_per_second(self) -> float:
        """Pairs or triplets scored per second of training."""
        return self.scored / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Checkpoint:
    """The state a run needs to resume: where it is, and its history."""

    epoch: int
    history: list[EpochRecord]
    best_epoch: int
    best_accuracy: float
    stale: int
    _states: dict[str, Any] | None = None

    def save(
        self,
        path: Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        config: dict[str, Any],
        loss: nn.Module | None = None,
    ) -> None:
        """Write atomically (temporary file + rename): an interruption never leaves half a file.

        ``loss`` is saved too when it has state of its own (a proxy loss's proxies).
        """
        payload = {
            "format": "lookalike.checkpoint/1",
            "epoch": self.epoch,
            "history": [asdict(r) for r in self.history],
            "best_epoch": self.best_epoch,
            "best_accuracy": self.best_accuracy,
            "stale": self.stale,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": config,
            "loss": loss.state_dict() if loss is not None else {},
        }
        atomic_write_with(path, lambda tmp: torch.save(payload, tmp))

    @property
    def config(self) -> dict[str, Any] | None:
        """The settings the checkpoint was written with (``None`` before :meth:`load`)."""
        if self._states is None:
            return None
        saved = self._states.get("config")
        return dict(saved) if isinstance(saved, dict) else None

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint (``weights_only=True``: plain tensors and containers only).

        Raises:
            DataError: The file is not a lookalike checkpoint.
        """
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(
                f"cannot read checkpoint {path}: {exc}; delete it to start over"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != "lookalike.checkpoint/1":
            raise DataError(f"{path} is not a lookalike checkpoint; delete it to start over")
        history = [EpochRecord(**r) for r in payload["history"]]
        return cls(
            payload["epoch"],
            history,
            payload["best_epoch"],
            payload["best_accuracy"],
            payload["stale"],
            payload,
        )

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loss: nn.Module | None = None,
    ) -> None:
        """Load model, optimiser, scheduler (and loss) state from a loaded checkpoint."""
        assert self._states is not None, "restore() needs a checkpoint read with load()"
        model.load_state_dict(self._states["model"])
        if loss is not None and self._states.get("loss"):
            loss.load_state_dict(self._states["loss"])
        optimizer.load_state_dict(self._states["optimizer"])
        scheduler.load_state_dict(self._states["scheduler"])


def configure_trainable(
    model: SiameseModel, fraction: float, *, backbone_lr: float, lr: float
) -> list[dict[str, Any]]:
    """Freeze all but the last ``fraction`` of the backbone's parameter tensors.

    Args:
        model: The model (``requires_grad`` is set on its parameters).
        fraction: Share of backbone parameter tensors, counted from the output end, that train.
        backbone_lr: Learning rate for the trainable backbone parameters.
        lr: Learning rate for everything after the backbone (pooling, projection, head).

    Returns:
        Optimiser parameter groups (empty when nothing would train).
    """
    backbone = list(model.backbone.parameters())
    n_train = round(len(backbone) * fraction)
    for i, param in enumerate(backbone):
        param.requires_grad_(i >= len(backbone) - n_train)
    backbone_ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in backbone_ids]
    for param in rest:
        param.requires_grad_(True)
    groups = []
    trainable_backbone = [p for p in backbone if p.requires_grad]
    if trainable_backbone:
        groups.append({"params": trainable_backbone, "lr": backbone_lr})
    if rest:
        groups.append({"params": rest, "lr": lr})
    return groups


def frozen_bn(module: nn.Module) -> None:
    """Keep batch-norm statistics fixed (eval mode): small fine-tuning batches would spoil them."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()
