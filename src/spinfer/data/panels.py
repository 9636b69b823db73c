"""Square panels cut from a larger spin image: the one grid that serving (``crops="grid"``),
the external set and the experimental images all use. numpy only (the served model
imports it)."""

from __future__ import annotations

import numpy as np

from spinfer.errors import InputError


def panel_corners(
    shape: tuple[int, int], size: int, stride: int | None = None
) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of every size x size panel of an image of ``shape``, on a grid
    of step ``stride`` (default ``size``: non-overlapping), row-major; none if it is
    smaller than one panel."""
    stride = size if stride is None else stride
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    return [
        (x, y)
        for x in range(0, shape[0] - size + 1, stride)
        for y in range(0, shape[1] - size + 1, stride)
    ]


def cut_panels(image: np.ndarray, corners: list[tuple[int, int]], size: int) -> np.ndarray:
    """(P, size, size, ...) panels of an (Lx, Ly, ...) image at ``corners``."""
    return np.stack([image[x : x + size, y : y + size] for x, y in corners])
