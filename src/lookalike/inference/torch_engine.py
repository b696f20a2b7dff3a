"""The PyTorch engine: a ``SiameseModel`` behind the engine interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lookalike.inference.embedder import BaseEmbedder

if TYPE_CHECKING:
    from lookalike.model.network import SiameseModel


class TorchEmbedder(BaseEmbedder):
    """A :class:`SiameseModel` as an engine (CUDA: fp16 autocast, pinned memory).

    Args:
        model: The model; it is used where it is (move it first with ``to_device``).
        name: What to call it.
        key: Its cache key, if known.
    """

    engine = "torch"

    def __init__(self, model: SiameseModel, *, name: str = "model", key: str | None = None):
        super().__init__(
            name=name,
            preprocess=model.preprocess,
            embedding_dim=model.embedding_dim,
            thresholds=model.thresholds,
            device=str(model.device),
            key=key,
        )
        self.model = model
        self.domain = model.domain  # the training embeddings' statistics, if recorded

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed one preprocessed batch (N, C, H, W) to float32 (N, D)."""
        out: np.ndarray = self.model.embed(batch, batch_size=max(1, len(batch)))
        return out

    def pair_probability(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray | None:
        """P(same) (N,) from the model's pair head; ``None`` without one."""
        return self.model.pair_probability(emb_a, emb_b)
