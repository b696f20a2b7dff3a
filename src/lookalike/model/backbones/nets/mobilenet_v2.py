"""MobileNetV2 (Sandler et al., 2018) with torchvision's exact parameter names.

lookalike defines the architecture itself so that the default backbone needs only
``torch``: importing torchvision costs about 3 s on a 2-core machine, more than the
whole forward pass of a cold ``lookalike compare``. The module tree mirrors
``torchvision.models.mobilenet_v2`` so torchvision's ImageNet state dict loads strictly.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(
    inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise (3×3) → project (1×1) block, residual when shapes match."""

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu(inp, hidden, kernel=1))
        layers += [
            _conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, inp, H, W) to (N, out, H / stride, W / stride)."""
        y: torch.Tensor = self.conv(x)
        return x + y if self.use_residual else y


# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0.

    Args:
        num_classes: Size of the ImageNet-style classifier; 0 builds no classifier, and
            :meth:`forward` then returns the last feature map.
        in_chans: Input channels (3 for RGB).

    Shapes:
        input (N, in_chans, H, W) → features (N, 1280, H/32, W/32) → logits (N, num_classes).
    """

    feature_dim = 1280

    def __init__(self, num_classes: int = 0, in_chans: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(in_chans, 32, stride=2)]
        inp = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(_conv_bn_relu(inp, self.feature_dim, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier: nn.Module | None = None
        if num_classes:
            self.classifier = nn.Sequential(
                nn.Dropout(0.2), nn.Linear(self.feature_dim, num_classes)
            )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map (N, 1280, h, w), or logits (N, num_classes) with a classifier."""
        features: torch.Tensor = self.features(x)
        if self.classifier is None:
            return features
        logits: torch.Tensor = self.classifier(features.mean(dim=(2, 3)))
        return logits
