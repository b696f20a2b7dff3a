"""Figures: training curves (seed 004) and embedding maps, as PNG via matplotlib (Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from lookalike.training.checkpoint import EpochRecord


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise LookalikeError("plots need matplotlib: pip install lookalike[plots]") from exc
    return plt


def plot_history(history: Sequence[EpochRecord], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``loss.png`` (train and validation loss per epoch) and ``accuracy.png``.

    Args:
        history: Records from training (epoch 0 = before training).
        out_dir: Folder for the PNG files.

    Returns:
        The files written.
    """
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    fig.tight_layout()
    loss_png = out / "loss.png"
    fig.savefig(loss_png)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(epochs, [r.val_accuracy for r in history], "o-", color="tab:green")
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("validation pair accuracy")
    ax.set_ylim(min(0.5, min(r.val_accuracy for r in history)) - 0.02, 1.0)
    ax.set_title("Validation pair accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    acc_png = out / "accuracy.png"
    fig.savefig(acc_png)
    plt.close(fig)
    return [loss_png, acc_png]


def project_2d(
    embeddings: np.ndarray, method: Literal["pca", "tsne", "umap"] = "pca", *, seed: int = 0
) -> np.ndarray:
    """Project embeddings (N, D) to (N, 2) with PCA (default), t-SNE or UMAP.

    Raises:
        LookalikeError: The method's package is missing, or fewer than 2 points.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) < 2:
        raise LookalikeError("an embedding map needs at least 2 images")
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = centred @ vt[:2].T
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))) if out.shape[1] < 2 else out
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as exc:
            raise LookalikeError("t-SNE needs scikit-learn: pip install lookalike[plots]") from exc
        perplexity = float(min(30, max(2, len(x) // 4)))
        return np.asarray(
            TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
        )
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise LookalikeError("UMAP needs umap-learn: pip install umap-learn") from exc
        return np.asarray(umap.UMAP(random_state=seed).fit_transform(x))
    raise LookalikeError(f"unknown projection {method!r}: use pca, tsne or umap")


def plot_embedding_map(
    embeddings: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    method: Literal["pca", "tsne", "umap"] = "pca",
    title: str = "Embedding map",
) -> Path:
    """Scatter the 2-D projection of embeddings (N, D), coloured by identity label (N,)."""
    plt = _pyplot()
    xy = project_2d(embeddings, method)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, name in enumerate(classes):
        mask = labels == k
        if mask.any():
            ax.scatter(
                xy[mask, 0], xy[mask, 1], s=10, color=cmap(k % cmap.N), label=name, alpha=0.8
            )
    if len(classes) <= 20:
        ax.legend(markerscale=2, fontsize=8, loc="best", ncols=2)
    ax.set_title(f"{title} ({method.upper()})")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    plt = _pyplot()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


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
    """
    plt = _pyplot()
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
    return _save(fig, path)


def plot_score_histograms(
    scores: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    xlabel: str = "cosine similarity",
    title: str = "Pair scores",
) -> Path:
    """Histograms of same-identity and different-identity pair scores (P,), threshold marked."""
    plt = _pyplot()
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
    return _save(fig, path)


def plot_retrieval_grid(
    queries: Sequence[Any],
    results: Sequence[Sequence[tuple[Any, str, float]]],
    path: str | os.PathLike[str],
    *,
    thumb_inches: float = 1.8,
) -> Path:
    """Seed 002's closest-images figure: one row per query, the query then its hits.

    Args:
        queries: Query images (anything :func:`~lookalike.imaging.load_image` opens), Q of them.
        results: Per query, its hits best first as ``(image, caption, score)``.
        path: The PNG to write.
    """
    from lookalike.errors import ImageError
    from lookalike.imaging.images import load_image

    plt = _pyplot()
    cols = 1 + max((len(r) for r in results), default=0)
    fig, axes = plt.subplots(
        len(queries), cols, figsize=(thumb_inches * cols, thumb_inches * 1.15 * len(queries)),
        dpi=100, squeeze=False,
    )  # fmt: skip
    for row, (query, hits) in enumerate(zip(queries, results, strict=True)):
        cells = [(query, "query", None), *hits]
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(cells):
                ax.axis("off")
                continue
            image, caption, score = cells[col]
            try:
                picture = load_image(image, mode="RGB")
                picture.thumbnail((256, 256))
                ax.imshow(np.asarray(picture))
            except ImageError:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
            name = caption if len(caption) <= 22 else "…" + caption[-21:]
            ax.set_title(name if score is None else f"{name}\n{score:.3f}", fontsize=7)
            if col == 0:
                for spine in ax.spines.values():
                    spine.set_color("tab:blue")
                    spine.set_linewidth(2)
    return _save(fig, path)
