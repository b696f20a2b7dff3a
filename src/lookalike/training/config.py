"""Training settings and the decoded data a run works on.

:class:`TrainConfig` (every setting, validated, JSON round trip) and :class:`TrainData`
(decoded pixels with identity labels or labelled pairs) live here so that the trainer and
the validator both import them, and neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from lookalike.data.augment import Augment
from lookalike.training import pml
from lookalike.training.losses import LossName
from lookalike.training.miners import PairStrategy, TripletStrategy
from lookalike.training.pml import is_pml

__all__ = [
    "MINERS",
    "LossName",
    "PairStrategy",
    "Sampling",
    "TrainConfig",
    "TrainData",
    "TripletStrategy",
]

MINERS = ("all", "all_active", "semihard", "hard", "random")
Sampling = Literal["balanced", "pairs", "triplets"]


@dataclass
class TrainConfig:
    """Training settings. Defaults are chosen to generalise to unseen identities.

    Attributes:
        loss: ``"contrastive"``, ``"triplet"``, ``"bce"`` (pair head on |e_a − e_b|), or
            ``"pml:ClassName"``: any pytorch-metric-learning loss (:mod:`lookalike.training.pml`).
        sampling: ``"balanced"`` (m images per identity per batch, online mining: O(B²) pairs
            from B forward passes), ``"pairs"`` (pre-built random pairs, seed 004) or
            ``"triplets"`` (pre-built random triplets, seed 002).
        miner: Online mining strategy: for triplets ``"semihard"``, ``"hard"``, ``"all"``,
            ``"all_active"``, ``"random"``; for pairs ``"all"`` or ``"hard"``.
        margin: Loss margin; ``None``: 1.0 for contrastive, 0.2 for triplet.
        distance: ``"euclidean"`` or ``"cosine"`` inside the loss.
        epochs: Training epochs; ``None``: 20 from scratch, 10 from pretrained weights.
        batch_size, m_per_class: Batch layout.
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
        augment: Augmentations; ``None`` chooses from the images
            (:meth:`Augment.for_channels`: no flip for images without colour).
        val_pairs: Fixed, balanced validation pairs drawn from the validation images.
        seed: Seed for every random choice.
        amp: Mixed precision; ``None``: on for CUDA.
        loss_args, miner_args: Constructor arguments of a ``pml:`` loss or miner.
        guard: When training starts from a usable pretrained model, keep it (or a WiSE-FT
            mix of it with the fine-tuned weights) unless training beats it on validation
            beyond chance (:mod:`lookalike.training.guard`).
    """

    loss: LossName | str = "triplet"
    sampling: Sampling = "balanced"
    miner: str = "semihard"
    margin: float | None = None
    distance: Literal["euclidean", "cosine"] = "euclidean"
    epochs: int | None = None
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
    patience: int | None = 5
    augment: Augment | None = None
    val_pairs: int = 1000
    seed: int = 0
    amp: bool | None = None
    guard: bool = True
    loss_args: dict[str, Any] = field(default_factory=dict)
    miner_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = {
            "loss": (
                self.loss,
                ("contrastive", "triplet", "bce", self.loss if is_pml(self.loss) else ""),
            ),
            "sampling": (self.sampling, ("balanced", "pairs", "triplets")),
            "optimizer": (self.optimizer, ("adam", "sgd")),
            "schedule": (self.schedule, ("cosine", "step", "none")),
            "distance": (self.distance, ("euclidean", "cosine")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.miner not in MINERS and not is_pml(self.miner):
            raise ValueError(
                f"miner must be one of {', '.join(MINERS)} or pml:ClassName, got {self.miner!r}"
            )
        if is_pml(self.loss) and self.sampling != "balanced":
            raise ValueError("pml: losses train on class-balanced batches (sampling='balanced')")
        if is_pml(self.miner) and not is_pml(self.loss):
            raise ValueError("pml: miners go with pml: losses (--loss pml:ClassName)")
        if is_pml(self.loss):
            pml.check("losses", str(self.loss), self.loss_args)
        elif self.loss_args:
            raise ValueError("loss_args (--loss-args) apply to pml: losses only")
        if is_pml(self.miner):
            pml.check("miners", self.miner, self.miner_args)
        elif self.miner_args:
            raise ValueError("miner_args (--miner-args) apply to pml: miners only")
        if self.sampling == "triplets" and self.loss != "triplet":
            raise ValueError("sampling='triplets' needs loss='triplet'")
        if self.loss == "triplet" and self.sampling == "pairs":
            raise ValueError("loss='triplet' needs sampling 'balanced' or 'triplets'")
        if (self.epochs is not None and self.epochs < 0) or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("epochs must be ≥ 0, batch_size ≥ 2 and lr > 0")
        if self.train_fraction is not None and not 0.0 <= self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in [0, 1], got {self.train_fraction}")
        if not 0.0 < self.positive_fraction < 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1), got {self.positive_fraction}")

    def resolved(self, pixels: torch.Tensor, *, pretrained: bool) -> TrainConfig:
        """The settings with those left to the data filled in (augmentation, epochs).

        Args:
            pixels: The decoded training images, uint8 (N, C, H, W).
            pretrained: Whether training starts from pretrained weights.
        """
        augment = self.augment
        if augment is None:
            augment = Augment.for_channels(1 if _is_grayscale(pixels) else 3)
        epochs = self.epochs if self.epochs is not None else (10 if pretrained else 20)
        return replace(self, augment=augment, epochs=epochs)

    @property
    def n_epochs(self) -> int:
        """``epochs`` once resolved (0 before: call :meth:`resolved` first)."""
        return self.epochs or 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        data = asdict(self)
        data["augment"] = None if self.augment is None else self.augment.to_dict()
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


def _is_grayscale(pixels: torch.Tensor, sample: int = 256) -> bool:
    """Whether decoded images (N, C, H, W) carry no colour (one channel, or R = G = B)."""
    if pixels.shape[1] == 1:
        return True
    head = pixels[:sample].to(torch.int16)
    return bool((head[:, 0] == head[:, 1]).all() and (head[:, 1] == head[:, 2]).all())
