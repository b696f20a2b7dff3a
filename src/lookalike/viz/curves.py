"""Curves: training history (seed 004), ROC on a log FAR axis, pair-score histograms."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.viz._mpl import pyplot, save

if TYPE_CHECKING:
    from lookalike.training.checkpoint import EpochRecord

__all__ = ["plot_history", "plot_roc", "plot_score_histograms"]


def plot_history(history: Sequence[EpochRecord], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``loss.png`` (train and validation loss per epoch) and ``accuracy.png``.

    Args:
        history: Records from training (epoch 0 = before training).
        out_dir: Folder for the PNG files.

    Returns:
        The files written.
    """
    plt = pyplot()
    out = Path(out_dir)
    epochs = [r.epoch for r in history]
    trained = [r for r in history if r.train_loss is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot([r.epoch for r in trained], [r.train_loss for r in trained], "o-", label="train loss")
    ax.plot(epochs, [r.val_loss for r in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    loss_png = save(fig, out / "loss.png")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(epochs, [r.val_accuracy for r in history], "o-", color="tab:green")
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("validation pair accuracy")
    ax.set_ylim(min(0.5, min(r.val_accuracy for r in history)) - 0.02, 1.0)
    ax.set_title("Validation pair accuracy")
    ax.grid(alpha=0.3)
    return [loss_png, save(fig, out / "accuracy.png")]


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
    path: str | os.PathLike[str],
    *,
    title: str = "ROC",
) -> Path:
    """ROC curves on a log FAR axis.

    Args:
        curves: Name -> (FAR (T,), TAR (T,), AUC), one line each.
        path: The PNG to write.
        title: Figure title.

    Returns:
        The path written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    for name, (far, tar, auc) in curves.items():
        ax.plot(np.clip(far, 1e-4, 1), tar, label=f"{name} (AUC {auc:.3f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


def plot_score_histograms(
    scores: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    xlabel: str = "cosine similarity",
    title: str = "Pair scores",
) -> Path:
    """Histograms of same-identity and different-identity pair scores (P,), threshold marked.

    Args:
        scores: One score per pair (P,).
        labels: 1 for a same-identity pair, 0 otherwise (P,).
        path: The PNG to write.
        threshold: Drawn as a dashed line when given.
        xlabel: What the score is.
        title: Figure title.

    Returns:
        The path written.
    """
    plt = pyplot()
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    bins = np.linspace(float(s.min()), float(s.max()) + 1e-9, 40)
    ax.hist(s[y], bins=bins, alpha=0.6, color="tab:green", label=f"same ({int(y.sum())})")
    ax.hist(s[~y], bins=bins, alpha=0.6, color="tab:red", label=f"different ({int((~y).sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.4f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, path)
