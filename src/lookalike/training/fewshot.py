"""Few-shot pair-head training (seed 000): 10–100 labelled pairs, frozen backbone, seconds on CPU.

The backbone embeds each distinct image once; only the :class:`~lookalike.model.layers.PairHead`
trains, full-batch, on the cached embeddings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lookalike._progress import bar, embed_chunks
from lookalike.errors import DataError
from lookalike.metrics.calibration import accuracy_at, best_accuracy_threshold
from lookalike.model.layers import PairHead
from lookalike.model.network import SiameseModel
from lookalike.training.losses import PairBCELoss

StepCallback = Callable[[int, int, float], None]
"""Called after each training step with (step, total steps, loss); step counts from 1."""


@dataclass(frozen=True)
class HeadReport:
    """Outcome of few-shot head training.

    Attributes:
        n_train, n_holdout: Pairs used to train and held out.
        train_accuracy: Accuracy of the head (at P(same) ≥ threshold) on the training pairs.
        holdout_accuracy: The same on held-out pairs (``None`` when nothing was held out).
        cosine_holdout_accuracy: A cosine threshold calibrated on the same training pairs,
            measured on the held-out pairs: the baseline the head has to beat.
        threshold: Decision threshold on P(same) (0.5 unless calibrated otherwise).
        seconds: Wall time of the head training.
        losses: Training loss per step.
    """

    n_train: int
    n_holdout: int
    train_accuracy: float
    holdout_accuracy: float | None
    cosine_holdout_accuracy: float | None
    threshold: float
    seconds: float
    losses: tuple[float, ...]


def fit_head(
    model: SiameseModel,
    emb_a: np.ndarray,
    emb_b: np.ndarray,
    labels: np.ndarray,
    *,
    steps: int = 300,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> list[float]:
    """Train a fresh :class:`PairHead` on embedding pairs (N, D), (N, D) with labels (N,) 1 = same.

    Full-batch Adam with binary cross-entropy; positives and negatives weighted equally.
    The head is attached to ``model`` (replacing any previous one). ``on_step`` (optional)
    receives (step, steps, loss) after every step, for progress reports.

    Returns:
        The loss after each step.

    Raises:
        DataError: Fewer than 2 pairs, or only one class of label.
    """
    y = np.asarray(labels, dtype=np.float32).ravel()
    if len(y) < 2 or len(np.unique(y)) < 2:
        raise DataError("head training needs at least one 'same' and one 'different' pair")
    torch.manual_seed(seed)
    head = PairHead(model.embedding_dim)
    a = torch.as_tensor(emb_a, dtype=torch.float32)
    b = torch.as_tensor(emb_b, dtype=torch.float32)
    target = torch.from_numpy(y)
    n_pos = float(y.sum())
    loss_fn = PairBCELoss(pos_weight=(len(y) - n_pos) / n_pos)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    head.train()
    for step in range(1, steps + 1):
        # Both orders: the head sees |a - b| so this only matters for dropout noise.
        loss = loss_fn(head(a, b), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, steps, losses[-1])
    head.eval()
    model.head = head.to(model.device)
    return losses


def train_head_on_pairs(
    model: SiameseModel,
    a: list[str],
    b: list[str],
    labels: np.ndarray,
    *,
    holdout: float = 0.25,
    steps: int = 300,
    lr: float = 1e-3,
    seed: int = 0,
    on_step: StepCallback | None = None,
    progress: bool = False,
    batch_size: int = 32,
) -> HeadReport:
    """Embed the pairs' images once with the frozen model, train the head, report held-out accuracy.

    Args:
        model: The model; its backbone stays frozen, its head is replaced.
        a, b: Image paths (or any image sources) of each pair.
        labels: 1 = same, 0 = different, shape (N,).
        holdout: Share of pairs held out for the report (stratified; 0 trains on all).
        steps, lr, seed: Optimisation settings.
        on_step: Optional progress callback, see :func:`fit_head`.
        progress: Bars for embedding the images and for the training steps (on a terminal
            only).
        batch_size: Images per forward pass.

    Returns:
        The report; ``model.thresholds["probability"]`` is set to 0.5.
    """
    y = np.asarray(labels, dtype=np.float32)
    unique = sorted({str(p) for p in [*a, *b]})
    index = {p: k for k, p in enumerate(unique)}
    emb = embed_chunks(
        model, unique, batch_size=batch_size, desc="train-head: embedding", progress=progress
    )
    ea, eb = emb[[index[str(p)] for p in a]], emb[[index[str(p)] for p in b]]
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(y), dtype=bool)
    if holdout > 0:
        for cls in (0.0, 1.0):
            members = np.flatnonzero(y == cls)
            k = round(len(members) * holdout)
            if len(members) - k >= 1:
                test_mask[rng.choice(members, size=k, replace=False)] = True
    train = ~test_mask
    start = time.perf_counter()
    with bar(desc="train-head: fitting", total=steps, unit="step", progress=progress) as shown:

        def step(k: int, total: int, loss: float) -> None:
            shown.update(1)
            shown.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if on_step is not None:
                on_step(k, total, loss)

        losses = fit_head(
            model, ea[train], eb[train], y[train], steps=steps, lr=lr, seed=seed, on_step=step
        )
    seconds = time.perf_counter() - start
    return _report(model, ea, eb, y, train, test_mask, losses, seconds)


def _report(
    model: SiameseModel,
    ea: np.ndarray,
    eb: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    losses: list[float],
    seconds: float,
) -> HeadReport:
    from lookalike.metrics.calibration import Threshold
    from lookalike.metrics.distances import cosine_similarity

    prob = model.pair_probability(ea, eb)
    assert prob is not None
    rule = Threshold(0.5, True, 0.0)
    model.thresholds["probability"] = 0.5
    cos = np.asarray(cosine_similarity(ea, eb))
    cos_rule = best_accuracy_threshold(cos[train], y[train])
    has_test = bool(test.any())
    return HeadReport(
        n_train=int(train.sum()),
        n_holdout=int(test.sum()),
        train_accuracy=accuracy_at(prob[train], y[train], rule),
        holdout_accuracy=accuracy_at(prob[test], y[test], rule) if has_test else None,
        cosine_holdout_accuracy=accuracy_at(cos[test], y[test], cos_rule) if has_test else None,
        threshold=0.5,
        seconds=seconds,
        losses=tuple(losses),
    )
