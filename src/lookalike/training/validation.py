"""Validation during training: a fixed set of labelled pairs, scored after every epoch.

Every accuracy comes with a 95 % interval from a bootstrap over the validation
*identities* (:mod:`lookalike.metrics.bootstrap`), and :meth:`PairValidator.improvement`
measures whether one model beats another on the same pairs by more than chance.
"""

from __future__ import annotations

import numpy as np
import torch

from lookalike._progress import map_chunks
from lookalike.data.decode import normalize, raw_pixel_vectors
from lookalike.data.pairs import make_pairs, make_triplets
from lookalike.metrics.bootstrap import Interval, identity_bootstrap, weighted_accuracy
from lookalike.metrics.calibration import best_accuracy_threshold
from lookalike.metrics.distances import cosine_similarity, unit_rows
from lookalike.model.network import SiameseModel
from lookalike.training.checkpoint import EpochRecord
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.losses import ContrastiveLoss, PairBCELoss, TripletMarginLoss


class PairValidator:
    """Scores a model on fixed validation pairs (and triplets for the triplet loss).

    Args:
        model: The model being trained (read only here).
        val: Validation images with identity labels, or labelled pairs.
        config: The training settings (loss, distance, number of pairs, seed).
        margin: The loss margin in use.
        progress: Show a bar while embedding the validation images (on a terminal only).
    """

    def __init__(
        self,
        model: SiameseModel,
        val: TrainData,
        config: TrainConfig,
        margin: float,
        *,
        progress: bool = False,
    ) -> None:
        self.model, self.val, self.config, self.margin = model, val, config, margin
        self.progress = progress
        if val.pairs is not None:
            self.i, self.j, self.y = val.pairs
        else:
            assert val.labels is not None
            self.i, self.j, self.y = make_pairs(
                val.labels.numpy(), config.val_pairs, positive_fraction=0.5, seed=config.seed + 1
            )
        self.identities: tuple[np.ndarray, np.ndarray] | None = None
        if val.labels is not None:
            labels = val.labels.numpy()
            self.identities = (labels[self.i], labels[self.j])
        self.triplets = None
        if config.loss == "triplet" and val.labels is not None:
            self.triplets = make_triplets(
                val.labels.numpy(), config.val_pairs, seed=config.seed + 2
            )

    def embed(
        self, model: SiameseModel | None = None, batch_size: int = 64, *, desc: str = "validating"
    ) -> np.ndarray:
        """Embeddings (N, D) of every validation image, without augmentation.

        ``desc`` labels the progress bar (shown when the validator was made with ``progress``).
        """
        model = model or self.model
        preprocess = model.preprocess

        def embed_chunk(pixels: torch.Tensor) -> np.ndarray:
            return model.embed(normalize(pixels, preprocess).numpy(), batch_size=batch_size)

        return map_chunks(
            embed_chunk, self.val.pixels, batch_size, desc=desc, progress=self.progress
        )

    def scores(self, emb: np.ndarray, model: SiameseModel | None = None) -> np.ndarray:
        """Pair scores (P,): P(same) for the BCE loss's head, cosine similarity otherwise."""
        model = model or self.model
        if self.config.loss == "bce" and model.head is not None:
            prob = model.pair_probability(emb[self.i], emb[self.j])
            assert prob is not None
            return prob
        return np.asarray(cosine_similarity(emb[self.i], emb[self.j]))

    def accuracy(self, model: SiameseModel) -> float:
        """Validation pair accuracy of any model (by cosine unless it is the BCE head model)."""
        emb = self.embed(model)
        return best_accuracy_threshold(self.scores(emb, model), self.y).accuracy

    def interval(self, scores: np.ndarray, threshold: float, *, rounds: int = 500) -> Interval:
        """Accuracy at ``threshold`` with its 95 % interval over validation identities."""

        def accuracy(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
            return weighted_accuracy(s, y, w, threshold)

        return identity_bootstrap(
            scores, self.y, self.identities, accuracy, rounds=rounds, seed=self.config.seed
        )

    def improvement(
        self, base: np.ndarray, candidate: np.ndarray, *, rounds: int = 500
    ) -> Interval:
        """Accuracy of ``candidate`` minus that of ``base`` on the same pairs, with its interval.

        Each model is scored at its own best threshold on these pairs; the interval resamples
        validation identities, so it is wide when they are few.

        Args:
            base: (P,) pair scores of the reference model (e.g. the frozen backbone).
            candidate: (P,) pair scores of the model that would replace it.
            rounds: Bootstrap rounds.
        """
        t_base = best_accuracy_threshold(base, self.y).value
        t_cand = best_accuracy_threshold(candidate, self.y).value

        def gain(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
            return weighted_accuracy(s[:, 1], y, w, t_cand) - weighted_accuracy(
                s[:, 0], y, w, t_base
            )

        both = np.stack([base, candidate], axis=1)
        return identity_bootstrap(
            both, self.y, self.identities, gain, rounds=rounds, seed=self.config.seed
        )

    def raw_pixel_accuracy(self) -> float:
        """Validation pair accuracy of cosine similarity on raw (normalised) pixels.

        Pixels are area-downsampled to 32 px a side first (as ``lookalike eval`` does), so
        the baseline costs megabytes, not gigabytes, at any input size.
        """
        flat = unit_rows(raw_pixel_vectors(self.val.pixels, self.model.preprocess))
        scores = np.einsum("pd,pd->p", flat[self.i], flat[self.j])
        return best_accuracy_threshold(scores, self.y).accuracy

    @torch.no_grad()
    def _loss(self, emb: np.ndarray) -> float:
        e = torch.from_numpy(emb)
        cfg = self.config
        if cfg.loss == "triplet" and self.triplets is not None:
            a, p, n = (torch.from_numpy(v) for v in self.triplets)
            return float(TripletMarginLoss(self.margin, distance=cfg.distance)(e[a], e[p], e[n]))
        y = torch.from_numpy(self.y.astype(np.float32))
        ea, eb = e[torch.from_numpy(self.i)], e[torch.from_numpy(self.j)]
        if cfg.loss == "bce" and self.model.head is not None:
            head = self.model.head.cpu() if self.model.device.type == "cpu" else self.model.head
            logits = head(ea.to(self.model.device), eb.to(self.model.device)).cpu()
            return float(PairBCELoss()(logits, y))
        return float(ContrastiveLoss(self.margin, distance=cfg.distance)(ea, eb, y))

    def record(
        self,
        epoch: int,
        train_loss: float | None,
        scored: int,
        passes: int,
        seconds: float,
        optimizer: torch.optim.Optimizer,
    ) -> EpochRecord:
        """Measure the model now and return the epoch's history record."""
        emb = self.embed()
        scores = self.scores(emb)
        threshold = best_accuracy_threshold(scores, self.y)
        ci = self.interval(scores, threshold.value)
        return EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=self._loss(emb),
            val_accuracy=threshold.accuracy,
            val_threshold=threshold.value,
            lr=float(optimizer.param_groups[-1]["lr"]),
            seconds=seconds,
            scored=scored,
            forward_passes=passes,
            val_ci_low=ci.low,
            val_ci_high=ci.high,
            val_identities=ci.identities,
            val_pairs=ci.pairs,
        )
