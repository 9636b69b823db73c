"""Model factory: timm ResNet18 / ResNet50 and a shallow CNN, all (B, 3, L, L) -> (B, 3).

Inputs are the spin components (Sx, Sy, Sz) as channels; outputs the normalized
(lambda, K, D). ``pretrained=False`` always: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from spinfer.config import MODEL_NAMES
from spinfer.errors import ConfigError


class ShallowCNN(nn.Module):
    """The paper's low-capacity model: three conv blocks, global average pool, linear head.

    Global pooling makes it size-agnostic, so it reads textures of any L.
    """

    def __init__(self, width: int = 32, outputs: int = 3) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, padding_mode="circular", bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(3, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(name: str, cnn_width: int = 32) -> nn.Module:
    """A fresh, randomly initialised model by name (``resnet18``, ``resnet50``, ``cnn``)."""
    if name == "cnn":
        return ShallowCNN(cnn_width)
    if name in ("resnet18", "resnet50"):
        import timm

        return timm.create_model(name, pretrained=False, in_chans=3, num_classes=3)
    raise ConfigError(f"unknown model '{name}' (known: {', '.join(MODEL_NAMES)})")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
