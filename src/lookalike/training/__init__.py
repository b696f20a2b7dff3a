"""Training: making a similarity model from identity-labelled images (or labelled pairs).

* :func:`train_model` (``lookalike train``) and :class:`ModelSpec` — a run end to end: the
  split chosen from the data (:func:`lookalike.data.split.choose_split`), the trainer, the
  guard, an optional refit, the baselines and the model folder;
* :class:`TrainConfig` — every setting (losses ``contrastive``/``triplet``/``bce`` or any
  ``pml:`` loss and miner); :class:`Trainer` — the loop, with per-epoch validation
  (95 % intervals over validation identities), checkpoints and resume;
* :mod:`lookalike.training.guard` — keeps the pretrained backbone, or a WiSE-FT mix,
  unless training beats it beyond chance; :func:`train_head_on_pairs` — few-shot pair
  head (``train-head``);
* :class:`ContrastiveLoss`, :class:`TripletMarginLoss`, :class:`PairBCELoss` — the seed
  losses; :mod:`lookalike.training.miners` — online mining; :mod:`lookalike.training.demo`;
* :mod:`lookalike.training.distributed` — training in several processes (``--nproc``), started
  here or by Ray Train on a Ray cluster (:mod:`lookalike.training.ray_train`, ``--ray``).

Names are imported lazily (this package imports torch when one is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike._lazy import lazy_exports

if TYPE_CHECKING:
    from lookalike.training.config import TrainConfig, TrainData
    from lookalike.training.fewshot import train_head_on_pairs
    from lookalike.training.guard import GuardDecision
    from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss
    from lookalike.training.recipes import ModelSpec, load_dataset, train_model
    from lookalike.training.trainer import Trainer, TrainResult

_LAZY = {
    "TrainConfig": "lookalike.training.config",
    "TrainData": "lookalike.training.config",
    "train_head_on_pairs": "lookalike.training.fewshot",
    "GuardDecision": "lookalike.training.guard",
    "ContrastiveLoss": "lookalike.training.losses",
    "PairBCELoss": "lookalike.training.losses",
    "TripletMarginLoss": "lookalike.training.losses",
    "ModelSpec": "lookalike.training.recipes",
    "load_dataset": "lookalike.training.recipes",
    "train_model": "lookalike.training.recipes",
    "Trainer": "lookalike.training.trainer",
    "TrainResult": "lookalike.training.trainer",
}

__all__ = [
    "ContrastiveLoss",
    "GuardDecision",
    "ModelSpec",
    "PairBCELoss",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "Trainer",
    "TripletMarginLoss",
    "load_dataset",
    "train_head_on_pairs",
    "train_model",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
