"""In-domain classifier: the feature network for IS, conditional accuracy, mode coverage and the Frechet
distance on classifier features (FD-classifier). Trained by genbench on the real training split.

conv(1->32) @28 -> pool -> conv(32->64) @14 -> pool -> conv(64->128) @7 -> global avg pool -> FC 128
(penultimate features) -> 10 logits. BatchNorm + ReLU, dropout before the head.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Classifier(nn.Module):
    """x float32 (B, C, 28, 28) in [-1, 1] -> logits (B, num_classes); :meth:`features` -> (B, feature_dim)."""

    def __init__(self, *, channels: int = 1, num_classes: int = 10, feature_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.body = nn.Sequential(
            _block(channels, 32), nn.MaxPool2d(2),  # 32 x 14 x 14
            _block(32, 64), nn.MaxPool2d(2),  # 64 x 7 x 7
            _block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # 128
            nn.Linear(128, feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
