"""A small CNN for small grayscale images such as MNIST digits (seed 003's base network)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Three conv blocks (conv → batch norm → ReLU, max-pool after the first two).

    Args:
        in_chans: Input channels (1 for digits).
        widths: Output channels of the three conv blocks; the last is the feature size.

    Shapes:
        input (N, in_chans, H, W), H and W ≥ 8 → feature map (N, widths[-1], H/4, W/4).
    """

    def __init__(self, in_chans: int = 1, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {widths}")
        c1, c2, c3 = widths
        self.feature_dim = c3
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the feature map (N, widths[-1], H/4, W/4)."""
        out: torch.Tensor = self.features(x)
        return out
