"""The (lambda, K, D) parameter grid of Kwon et al. and seeded draws from it."""

from __future__ import annotations

import numpy as np

from spinfer.config import PhysicsParams, RangeParams
from spinfer.errors import ConfigError
from spinfer.physics.dipolar import dipolar_kernel


def resolve_kshape_factor(physics: PhysicsParams) -> float:
    """Kshape / D: the configured value, or E_dip(+z) - E_dip(+x) per spin from the kernel."""
    if physics.kshape_factor is not None:
        return float(physics.kshape_factor)
    kernel = dipolar_kernel(physics.size, physics.size, physics.dipolar_images)
    return kernel.kshape()


def _axis(lo: float, hi: float, step: float) -> np.ndarray:
    """Inclusive grid lo, lo + step, ..., hi (rounded to kill float drift)."""
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return np.round(lo + step * np.arange(n), 12)


def parameter_grid(ranges: RangeParams, kshape_factor: float) -> np.ndarray:
    """All grid points as (n, 3) rows (lambda, K, D) in physical-model units (J = 1).

    D runs over its absolute range; lambda = r * D and K = k * kshape_factor * D with r and
    k over their relative ranges, as in the paper (lambda in -3D..3D, K in 0.1..1.2 Kshape).
    """
    d = _axis(*ranges.dipolar, ranges.dipolar_step)
    r = _axis(*ranges.dmi_over_dipolar, ranges.dmi_step)
    k = _axis(*ranges.anisotropy_over_kshape, ranges.anisotropy_step)
    dd, rr, kk = np.meshgrid(d, r, k, indexing="ij")
    rows = np.stack([rr * dd, kk * kshape_factor * dd, dd], axis=-1).reshape(-1, 3)
    return rows


def draw_set_indices(n_grid: int, n_sets: int, seed: int) -> np.ndarray:
    """Indices of ``n_sets`` distinct grid points drawn without replacement, seeded, sorted."""
    if n_sets < 1:
        raise ConfigError(f"number of parameter sets must be >= 1, got {n_sets}")
    if n_sets > n_grid:
        raise ConfigError(f"asked for {n_sets} parameter sets but the grid has {n_grid}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9E7]))
    return np.sort(rng.choice(n_grid, size=n_sets, replace=False))


def draw_sets(grid: np.ndarray, n_sets: int, seed: int) -> np.ndarray:
    """``n_sets`` distinct grid rows drawn without replacement, seeded, in grid order."""
    return grid[draw_set_indices(len(grid), n_sets, seed)]


def target_bounds(ranges: RangeParams, kshape_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of (lambda, K, D) over the whole grid: the normalization of the targets."""
    grid = parameter_grid(ranges, kshape_factor)
    return grid.min(axis=0), grid.max(axis=0)
