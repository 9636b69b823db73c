"""Target normalization Y_N = (Y - Ymin) / (Ymax - Ymin) for (lambda, K, D), and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spinfer.errors import InputError

TARGET_NAMES = ("lambda", "K", "D")


@dataclass(frozen=True)
class TargetScaler:
    """Min and max of (lambda, K, D) over the parameter grid, from the store attributes."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TargetScaler:
        try:
            targets = meta["targets"]
            lo, hi = tuple(map(float, targets["min"])), tuple(map(float, targets["max"]))
        except (KeyError, TypeError, ValueError):
            raise InputError("the store records no target ranges (attributes 'targets')") from None
        if len(lo) != 3 or len(hi) != 3:
            raise InputError("target ranges must have three entries (lambda, K, D)")
        return cls(lo, hi)  # type: ignore[arg-type]

    @property
    def span(self) -> np.ndarray:
        span = np.asarray(self.hi) - np.asarray(self.lo)
        return np.where(span > 0, span, 1.0)  # a fixed parameter maps to 0

    def normalize(self, y: np.ndarray) -> np.ndarray:
        """Physical (lambda, K, D) -> [0, 1] per column."""
        return (np.asarray(y, dtype=np.float64) - np.asarray(self.lo)) / self.span

    def denormalize(self, y_n: np.ndarray) -> np.ndarray:
        """[0, 1] per column -> physical (lambda, K, D) in units of J."""
        return np.asarray(y_n, dtype=np.float64) * self.span + np.asarray(self.lo)

    def as_dict(self) -> dict[str, Any]:
        return {"names": list(TARGET_NAMES), "min": list(self.lo), "max": list(self.hi)}
