"""The trainable pair head of seed 000: |e_a − e_b| → P(same)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class PairHead(nn.Module):
    """Few-shot pair classifier on the absolute difference of two embeddings.

    Exactly seed 000's head: ``|e_a − e_b|`` → Dense(256, ReLU) → Dropout(0.25) →
    Dense(64, ReLU) → Dense(1), with a sigmoid giving P(same). :meth:`forward` returns
    the logit (numerically stable with :class:`lookalike.training.losses.PairBCELoss`);
    :meth:`probability` applies the sigmoid.

    Args:
        embedding_dim: Size D of the embeddings it compares.
        hidden: Widths of the hidden layers (seed 000: 256, 64).
        dropout: Dropout after the first hidden layer (seed 000: 0.25).

    Raises:
        ValueError: Non-positive sizes or a dropout outside [0, 1).
    """

    def __init__(
        self, embedding_dim: int, hidden: Sequence[int] = (256, 64), dropout: float = 0.25
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"sizes must be positive: embedding_dim={embedding_dim}, {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embedding_dim = embedding_dim
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        layers: list[nn.Module] = []
        width = embedding_dim
        for i, h in enumerate(self.hidden):
            layers += [nn.Linear(width, h), nn.ReLU()]
            if i == 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Return logits (N,) for embedding pairs (N, D), (N, D); sigmoid(logit) = P(same)."""
        logits: torch.Tensor = self.layers(torch.abs(emb_a - emb_b))
        return logits.squeeze(-1)

    def probability(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Return P(same) in [0, 1], shape (N,)."""
        return torch.sigmoid(self.forward(emb_a, emb_b))

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {
            "embedding_dim": self.embedding_dim,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
        }
