"""Recording the domain a model was trained on, at the end of training.

:func:`record_domain` embeds a sample of the training images (and of held-out in-domain
images) with the finished model, fits a :class:`~lookalike.model.domain.DomainRecord` and
sets it as ``model.domain``, so that :meth:`SiameseModel.save` writes it into
``config.json``. ``train_model``, the demo and few-shot head training call it; compare,
search and the server then warn about inputs outside that domain
(:func:`lookalike.inference.domain.domain_warnings`).
"""

from __future__ import annotations

import numpy as np
import torch

from lookalike.data.decode import normalize
from lookalike.model.domain import DomainRecord
from lookalike.model.network import SiameseModel

__all__ = ["MAX_FIT_IMAGES", "MAX_HELD_OUT_IMAGES", "embed_pixels", "record_domain"]

MAX_FIT_IMAGES = 1000
"""Most training images embedded for the statistics (a seeded sample beyond that)."""

MAX_HELD_OUT_IMAGES = 500
"""Most held-out images embedded to measure the false-alarm rate."""


def embed_pixels(model: SiameseModel, pixels: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Embeddings (N, D) of decoded pixels (N, C, H, W, uint8), without augmentation."""
    chunks = [np.zeros((0, model.embedding_dim), dtype=np.float32)]
    for start in range(0, len(pixels), batch_size):
        x = normalize(pixels[start : start + batch_size], model.preprocess)
        chunks.append(model.embed(x.cpu().numpy(), batch_size=batch_size))
    return np.concatenate(chunks)


def _sample(pixels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    if len(pixels) <= limit:
        return pixels
    keep = np.sort(np.random.default_rng(seed).choice(len(pixels), size=limit, replace=False))
    return pixels[torch.from_numpy(keep)]


def record_domain(
    model: SiameseModel,
    train: torch.Tensor,
    held_out: torch.Tensor | None = None,
    *,
    seed: int = 0,
    source: str = "training images",
    limits: tuple[int, int] = (MAX_FIT_IMAGES, MAX_HELD_OUT_IMAGES),
) -> DomainRecord | None:
    """Fit the model's domain record and set it as ``model.domain``.

    Args:
        model: The finished model (any device).
        train: Decoded training images, uint8 (N, C, H, W); at most :data:`MAX_FIT_IMAGES`
            of them (a seeded sample) are embedded.
        held_out: In-domain images the model was not trained on, to measure the false-alarm
            rate (at most :data:`MAX_HELD_OUT_IMAGES`); ``None`` leaves it unmeasured.
        seed: Seed of the samples.
        source: What the images were, in words (shown in warnings: "the {source} this model
            was trained on").
        limits: Most training and held-out images embedded (small data sets use them all).

    Returns:
        The record, or ``None`` (then ``model.domain`` is ``None`` too) with fewer than
        :data:`~lookalike.model.domain.MIN_IMAGES` training images: a stale record of the
        model training started from is never kept.
    """
    fit = embed_pixels(model, _sample(train, limits[0], seed))
    held = None
    if held_out is not None and len(held_out):
        held = embed_pixels(model, _sample(held_out, limits[1], seed + 1))
    model.domain = DomainRecord.fit(fit, held, source=source)
    return model.domain
