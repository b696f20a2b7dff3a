"""The network's building blocks: pooling (GeM, Pool), the projection MLP, and the pair head.

:class:`~lookalike.model.network.SiameseModel` assembles them: backbone → :class:`Pool` →
optional :func:`projection_mlp` → L2 normalisation, plus an optional :class:`PairHead`
(seed 000's |e_a − e_b| → P(same)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from lookalike.model.card import POOLINGS

__all__ = ["POOLINGS", "GeM", "PairHead", "Pool", "PoolingName", "projection_mlp"]

PoolingName = Literal["avg", "gem", "max", "flatten"]


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al., 2018) with a learnable exponent p.

    Shapes: (N, C, H, W) → (N, C). p = 1 is average pooling; p → ∞ approaches max pooling.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent p must be positive, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool (N, C, H, W) to (N, C)."""
        pooled = x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3))
        return pooled.pow(1.0 / self.p)


class Pool(nn.Module):
    """Global pooling of a feature map (N, C, H, W) to (N, C); flatten gives (N, C·H·W)."""

    def __init__(self, kind: str = "avg") -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {kind!r}")
        self.kind = kind
        self.gem = GeM() if kind == "gem" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool a feature map."""
        if self.gem is not None:
            out: torch.Tensor = self.gem(x)
            return out
        if self.kind == "max":
            return x.amax(dim=(2, 3))
        if self.kind == "flatten":
            return x.flatten(1)
        return x.mean(dim=(2, 3))


def projection_mlp(in_dim: int, widths: Sequence[int]) -> nn.Sequential:
    """Dense layers with ReLU between them and none after the last (seed 001: 128 → ReLU → 128).

    Raises:
        ValueError: A width is not positive.
    """
    if any(w < 1 for w in widths):
        raise ValueError(f"projection widths must be positive, got {list(widths)}")
    layers: list[nn.Module] = []
    width = in_dim
    for i, w in enumerate(widths):
        layers.append(nn.Linear(width, w))
        if i < len(widths) - 1:
            layers.append(nn.ReLU())
        width = w
    return nn.Sequential(*layers)


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
