"""Information floor of an external set: the best MAE / range-centre ratio any estimator reaches.

A uniform texture is torque-free for every coupling: it holds nothing of (lambda, K, D)
beyond "the state is uniform". On such textures the best any estimator can do is one
constant per coupling (the median of their true values, known only in hindsight); on the
textured rest, assume it is perfect. The ratio of that oracle's MAE to predicting the
centre of the ranges (``external_mae_over_centre_*``'s denominator) is a floor under every
run's external ratio: a target below it cannot be met on this set by any model.

Normalization as the pipeline's: the parameter grid's min and max of the configured profile.
Prints the floor per coupling, overall and by phase. Last line: key=value.

    python validation/external_floor.py [--params params.yaml] [--data NPZ] [--uniform 0.98]
"""

from __future__ import annotations

import argparse

import numpy as np

from spinfer.config import load_params
from spinfer.data.external import ExternalSet, load_external
from spinfer.data.grid import parameter_grid, resolve_kshape_factor

COUPLINGS = ("lambda", "K", "D")


def uniform_mask(ext: ExternalSet, threshold: float) -> np.ndarray:
    """Textures whose mean spin has length above ``threshold`` (1 = perfectly uniform)."""
    flat = ext.spins.reshape(len(ext), -1, 3).astype(np.float64)
    return np.linalg.norm(flat.mean(axis=1), axis=1) > threshold


def information_floor(y: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """(3,) oracle MAE over the range centre's, for normalized truths ``y`` (N, 3)."""
    err = np.zeros_like(y)
    if uniform.any():
        err[uniform] = np.abs(y[uniform] - np.median(y[uniform], axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):  # every truth at the centre: NaN
        return err.mean(axis=0) / np.abs(0.5 - y).mean(axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default=None, help="external set (default: external.data)")
    ap.add_argument("--uniform", type=float, default=0.98, help="|mean spin| of a uniform state")
    args = ap.parse_args()
    params = load_params(args.params)
    ext = load_external(args.data or params.external.data or "data/external/spirit.npz")
    grid = parameter_grid(params.ranges, resolve_kshape_factor(params.physics))
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    y = (ext.params - lo) / (hi - lo)
    uniform = uniform_mask(ext, args.uniform)
    floor = information_floor(y, uniform)
    oop = ext.out_of_plane
    print(
        f"{len(ext)} textures: {oop.sum()} out of plane, {uniform.sum()} uniform, "
        f"{(~oop & ~uniform).sum()} in plane with texture"
    )
    for j, name in enumerate(COUPLINGS):
        inplane = information_floor(y[~oop], uniform[~oop])[j] if (~oop).any() else float("nan")
        print(f"{name:7s} floor {floor[j]:.3f} (in-plane textures alone {inplane:.3f})")
    print(" ".join(f"floor_{n}={f:.3f}" for n, f in zip(COUPLINGS, floor, strict=True)))


if __name__ == "__main__":
    main()
