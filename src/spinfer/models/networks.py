"""Model factory: timm ResNet18 / ResNet50, a shallow CNN, or any timm model by name; and
what a served model needs of training (rebuilding a checkpoint's network, reading its
outputs) without importing the training loop, its data stores or the simulator.

All map (B, 3, L, L) -> (B, 3) or (B, 6): the spin components (Sx, Sy, Sz) as channels
in, the normalized (lambda, K, D) out (and, for a Gaussian head, their log-variances).
``pretrained=False`` always: nothing is downloaded. Models other than the capacity grid's
three (e.g. ``convnext_atto``, ``efficientnet_b0``) are for tuning studies; they must be
timm names and size-agnostic (convolutional).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spinfer.errors import ConfigError, SpinferError

LOGVAR_RANGE = (-14.0, 3.0)  # log-variance of a normalized target: sigma in [1e-3, 4.5]


class ShallowCNN(nn.Module):
    """The paper's low-capacity model: ``depth`` conv blocks (channels doubling, 2x2
    max-pool between them), global average pool, linear head.

    Circular padding matches the periodic lattice; global pooling makes it size-agnostic.
    """

    def __init__(self, width: int = 32, outputs: int = 3, depth: int = 3) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"cnn depth must be >= 1, got {depth}")

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, padding_mode="circular", bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        layers: list[nn.Module] = [block(3, width)]
        channels = width
        for _ in range(depth - 1):
            layers += [nn.MaxPool2d(2), block(channels, 2 * channels)]
            channels *= 2
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def is_known_model(name: str) -> bool:
    """The grid's names (the shallow CNN, timm's ResNets), or a model timm can build."""
    if name == "cnn":
        return True
    import timm

    return bool(timm.is_model(name))


def outputs_of(head: str) -> int:
    """Network outputs per head: the means of (lambda, K, D), plus their log-variances."""
    return 6 if head == "gaussian" else 3


def build_model(name: str, cnn_width: int = 32, cnn_depth: int = 3, outputs: int = 3) -> nn.Module:
    """A fresh, randomly initialised model by name (``resnet18``, ``resnet50``, ``cnn`` or
    another timm model) with ``outputs`` outputs (3 point estimates, or 6 for a Gaussian
    head: means then log-variances)."""
    if name == "cnn":
        return ShallowCNN(cnn_width, outputs=outputs, depth=cnn_depth)
    if not is_known_model(name):
        from spinfer.config import MODEL_NAMES

        raise ConfigError(
            f"unknown model '{name}' (known: {', '.join(MODEL_NAMES)} or a timm model name)"
        )
    import timm

    return timm.create_model(name, pretrained=False, in_chans=3, num_classes=outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def split_output(out: torch.Tensor, head: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(means, log-variances) of a network output (log-variances None for a point head)."""
    if head == "gaussian":
        return out[:, :3], out[:, 3:].clamp(*LOGVAR_RANGE)
    return out, None


def lambda_offset(scaler) -> float:
    """lambda_N of the reversed texture is offset - lambda_N (1 for a symmetric range)."""
    return float(-2.0 * scaler.lo[0] / scaler.span[0])


def net_from_payload(payload: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The model a best-checkpoint payload describes, in eval mode."""
    outputs = outputs_of(payload.get("head", "point"))
    net = build_model(
        payload["model_name"], payload["cnn_width"], payload.get("cnn_depth", 3), outputs
    )
    net.load_state_dict(payload["model"])
    return net.to(device).eval()


def save_atomic(obj: Any, path: Path) -> None:
    """Write a checkpoint next to ``path`` and rename it into place: a failed write (disk
    full, file size limit) leaves the previous file as it was and says so in one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports failed writes as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or "the write failed (disk full?)"
        raise SpinferError(f"cannot write checkpoint {path}: {reason}") from None
