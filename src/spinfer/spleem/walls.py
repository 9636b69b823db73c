"""Domain-wall profiles across Sz = 0 contours, fitted with Sz(x) = s tanh((x - c) / w).

Wall points are pixels where Sz changes sign to a neighbour; the local wall normal is the
gradient of a lightly smoothed Sz. Each profile is sampled (bilinear, periodic for
simulated textures, clipped for images) along the normal over +-``half`` pixels and fitted
by least squares. The wall width is pi w (pixels; times the pixel size in nm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WallFit:
    w: np.ndarray  # (n,) fitted w per profile, pixels
    centre: np.ndarray  # (n,) fitted c, pixels from the wall point
    residual: np.ndarray  # (n,) rms residual of each fit
    profiles: np.ndarray  # (n, samples) the sampled Sz
    offsets: np.ndarray  # (samples,) positions along the normal, pixels

    @property
    def w_median(self) -> float:
        return float(np.median(self.w)) if len(self.w) else float("nan")

    def width(self, pixel_nm: float = 1.0) -> float:
        """The wall width pi w (median over profiles), in units of ``pixel_nm``."""
        return float(np.pi * self.w_median * pixel_nm)


def tanh_profile(x: np.ndarray, c: float, w: float, s: float = 1.0) -> np.ndarray:
    return s * np.tanh((x - c) / w)


def wall_points(sz: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) pixels whose right or lower neighbour lies on the other side of Sz = 0."""
    up = sz >= 0
    flip_x = up[:-1, :] != up[1:, :]
    flip_y = up[:, :-1] != up[:, 1:]
    points = np.zeros_like(sz, dtype=bool)
    points[:-1, :] |= flip_x
    points[:, :-1] |= flip_y
    if mask is not None:
        points &= mask
    return np.argwhere(points)


def fit_walls(
    sz: np.ndarray,
    mask: np.ndarray | None = None,
    half: int = 8,
    max_profiles: int = 200,
    seed: int = 0,
    periodic: bool = False,
) -> WallFit:
    """Fit tanh profiles across up to ``max_profiles`` wall points of an Sz map."""
    from scipy.ndimage import gaussian_filter, map_coordinates
    from scipy.optimize import curve_fit

    sz = np.asarray(sz, dtype=np.float64)
    mode = "wrap" if periodic else "nearest"
    smooth = gaussian_filter(sz, 1.0, mode=mode)
    gx, gy = np.gradient(smooth)
    points = wall_points(sz, mask)
    if not periodic:  # keep profiles inside the image
        lx, ly = sz.shape
        inside = (points[:, 0] >= half) & (points[:, 0] < lx - half)
        inside &= (points[:, 1] >= half) & (points[:, 1] < ly - half)
        points = points[inside]
    rng = np.random.default_rng(seed)
    if len(points) > max_profiles:
        points = points[rng.choice(len(points), max_profiles, replace=False)]
    offsets = np.linspace(-half, half, 4 * half + 1)
    ws, cs, res, profs = [], [], [], []
    for px, py in points:
        n = np.array([gx[px, py], gy[px, py]])
        norm = np.hypot(*n)
        if norm < 1e-6:
            continue
        n /= norm
        coords = np.array([px + offsets * n[0], py + offsets * n[1]])
        prof = map_coordinates(sz, coords, order=1, mode="grid-wrap" if periodic else "nearest")
        try:
            (c, w, s), _ = curve_fit(
                tanh_profile, offsets, prof, p0=(0.0, 2.0, 1.0),
                bounds=([-half, 0.2, 0.3], [half, 2.0 * half, 1.2]),
            )  # fmt: skip
        except (RuntimeError, ValueError):
            continue
        ws.append(w)
        cs.append(c)
        res.append(float(np.sqrt(np.mean((tanh_profile(offsets, c, w, s) - prof) ** 2))))
        profs.append(prof)
    return WallFit(
        np.array(ws), np.array(cs), np.array(res),
        np.array(profs).reshape(-1, len(offsets)), offsets,
    )  # fmt: skip


@dataclass(frozen=True)
class WallCharacter:
    """How the in-plane magnetisation sits in the domain walls.

    ``neel_fraction``: sum |m . n| / (sum |m . n| + sum |m x n|) over wall pixels, with m the
    in-plane magnetisation and n the wall normal (along grad Sz): 1 for Neel walls, 0 for
    Bloch walls, about 1/2 for no order. ``chirality``: -sum m . n / sum |m . n|, +1 when the
    walls turn as lambda > 0 favours (moving along +u, S turns from +z towards +u), -1 for
    lambda < 0. Interfacial DMI makes Neel walls; mostly Bloch walls in a film with DMI
    mean the image's axes were read in the wrong orientation (or the DMI is weak).
    """

    neel_fraction: float
    chirality: float
    pixels: int


def wall_character(
    spins: np.ndarray, mask: np.ndarray | None = None, band: float = 0.5, smooth: float = 1.0
) -> WallCharacter:
    """Neel fraction and chirality of the walls (|Sz| < ``band``) of a (Lx, Ly, 3) map."""
    from scipy.ndimage import gaussian_filter

    sz = gaussian_filter(spins[..., 2].astype(np.float64), smooth) if smooth else spins[..., 2]
    gx, gy = np.gradient(sz)
    grad = np.hypot(gx, gy)
    wall = (np.abs(spins[..., 2]) < band) & (grad > 1e-3)
    if mask is not None:
        wall &= mask
    if not wall.any():
        return WallCharacter(float("nan"), float("nan"), 0)
    nx, ny = gx[wall] / grad[wall], gy[wall] / grad[wall]
    mx, my = spins[..., 0][wall], spins[..., 1][wall]
    along = mx * nx + my * ny
    across = mx * ny - my * nx
    neel, bloch = np.abs(along).sum(), np.abs(across).sum()
    total = neel + bloch
    return WallCharacter(
        float(neel / total) if total > 0 else float("nan"),
        float(-along.sum() / neel) if neel > 0 else float("nan"),
        int(wall.sum()),
    )
