"""Information floor of an external set: the best MAE / range-centre ratio any estimator reaches.

A uniform texture is torque-free for every coupling: it holds nothing of (lambda, K, D)
beyond "the state is uniform". On such textures the best any estimator can do is one
constant per coupling (the median of their true values, known only in hindsight); on the
textured rest, assume it is perfect. The ratio of that oracle's MAE to predicting the
centre of the ranges (``external_mae_over_centre_*``'s denominator) is a floor under every
run's external ratio: a target below it cannot be met on this set by any model.

The oracle knows the set's own median. An estimator that does not (a network trained on the
profile's grid) can at best give a uniform state the median of the grid points where a
uniform in-plane state is the ground state (K < Kshape: the effective anisotropy is in
plane); with the textured rest still perfect, that is the *prior bound*. For a target ratio
(``--target``) the script also prints the MAE the textured textures would then need.

Normalization as the pipeline's: the parameter grid's min and max of the configured profile.
Prints the floor and the prior bound per coupling, overall and by phase. Last line: key=value.

    python validation/external_floor.py [--params params.yaml] [--data NPZ] [--uniform 0.98]
        [--target 0.7]
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


def information_floor(
    y: np.ndarray, uniform: np.ndarray, constant: np.ndarray | None = None
) -> np.ndarray:
    """(3,) MAE over the range centre's, for normalized truths ``y`` (N, 3), of an estimator
    perfect on textured states that gives uniform ones ``constant`` (default: their median,
    the oracle)."""
    err = np.zeros_like(y)
    if uniform.any():
        c = np.median(y[uniform], axis=0) if constant is None else constant
        err[uniform] = np.abs(y[uniform] - c)
    with np.errstate(invalid="ignore", divide="ignore"):  # every truth at the centre: NaN
        return err.mean(axis=0) / np.abs(0.5 - y).mean(axis=0)


def in_plane_prior(grid: np.ndarray, kshape_factor: float) -> np.ndarray:
    """(3,) normalized median of the grid points with K < Kshape: the best constant for a
    uniform in-plane state that a model of the grid can know without seeing the set."""
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    in_plane = grid[:, 1] < kshape_factor * grid[:, 2]
    return (np.median(grid[in_plane], axis=0) - lo) / (hi - lo)


def textured_mae_needed(
    y: np.ndarray, uniform: np.ndarray, constant: np.ndarray, target: float
) -> np.ndarray:
    """(3,) mean |error| the textured states may have for the whole set to reach ``target``
    of the range centre's MAE, uniform states given ``constant`` (negative: out of reach)."""
    budget = target * np.abs(0.5 - y).sum(axis=0) - np.abs(y[uniform] - constant).sum(axis=0)
    return budget / max(int((~uniform).sum()), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default=None, help="external set (default: external.data)")
    ap.add_argument("--uniform", type=float, default=0.98, help="|mean spin| of a uniform state")
    ap.add_argument("--target", type=float, default=0.7, help="a target ratio to the range centre")
    args = ap.parse_args()
    params = load_params(args.params)
    ext = load_external(args.data or params.external.data or "data/external/spirit.npz")
    kshape_factor = resolve_kshape_factor(params.physics)
    grid = parameter_grid(params.ranges, kshape_factor)
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    y = (ext.params - lo) / (hi - lo)
    uniform = uniform_mask(ext, args.uniform)
    floor = information_floor(y, uniform)
    prior = in_plane_prior(grid, kshape_factor)
    bound = information_floor(y, uniform, prior)
    needed = textured_mae_needed(y, uniform, prior, args.target)
    oop = ext.out_of_plane
    print(
        f"{len(ext)} textures: {oop.sum()} out of plane, {uniform.sum()} uniform, "
        f"{(~oop & ~uniform).sum()} in plane with texture"
    )
    for j, name in enumerate(COUPLINGS):
        inplane = information_floor(y[~oop], uniform[~oop])[j] if (~oop).any() else float("nan")
        print(
            f"{name:7s} floor {floor[j]:.3f} (in-plane textures alone {inplane:.3f}); "
            f"prior bound {bound[j]:.3f} (uniform states at {prior[j]:.2f}); "
            f"{args.target:g} of the centre needs textured MAE <= {needed[j]:.3f}"
        )
    print(
        " ".join(
            f"floor_{n}={f:.3f} prior_bound_{n}={b:.3f} textured_mae_needed_{n}={m:.3f}"
            for n, f, b, m in zip(COUPLINGS, floor, bound, needed, strict=True)
        )
    )


if __name__ == "__main__":
    main()
