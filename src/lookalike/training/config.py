"""Training settings and the decoded data a run works on.

:class:`TrainConfig` (every setting, validated, JSON round trip) and :class:`TrainData`
(decoded pixels with identity labels or labelled pairs) live here so that the trainer and
the validator both import them, and neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lookalike.data.augment import Augment
from lookalike.training.losses import LossName
from lookalike.training.miners import PairStrategy, TripletStrategy

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
