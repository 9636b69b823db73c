"""Minimisers on 100 x 100 out-of-plane textures: L-BFGS against velocity projection.

Textures are annealed with the default schedule of params.yaml (minimisation off) at
``--n`` couplings drawn across the out-of-plane part of the paper's ranges (K from 1.0 to
1.2 Kshape), then each is minimised by both methods from the same state until max |S x H|
< ``--torque`` J or ``--steps`` steps. Printed per texture and as medians: steps, seconds,
final max torque and the energy per spin reached; the ratio of velocity projection's median
seconds to L-BFGS's is the speed-up measured in this run (velocity projection's seconds are
a lower bound where it stops at the step limit). Last line: key=value pairs.

    python benchmarks/minimize.py [--n 6] [--torque 1e-4] [--steps 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from spinfer.config import load_params
from spinfer.physics.anneal import anneal
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian, energy_terms
from spinfer.physics.minimize import minimize

L = 100


def couplings(n: int, kshape: float, seed: int = 0) -> list[Hamiltonian]:
    """Out-of-plane couplings across the paper's D and lambda ranges."""
    rng = np.random.default_rng(seed)
    hams = []
    for _ in range(n):
        d = rng.uniform(0.05, 0.13)
        hams.append(
            Hamiltonian(
                dmi=float(rng.uniform(-3, 3) * d),
                anisotropy=float(rng.uniform(1.0, 1.2) * kshape * d),
                dipolar=float(d),
            )
        )
    return hams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6, help="textures")
    parser.add_argument("--torque", type=float, default=1e-4, help="J")
    parser.add_argument("--steps", type=int, default=20000, help="step limit of both")
    args = parser.parse_args()
    schedule = dataclasses.replace(load_params("params.yaml").schedule, minimize_steps=0)
    kernel = dipolar_kernel(L, L)
    hams = couplings(args.n, kernel.kshape())
    warm = anneal(hams[0], (16, 16), schedule, 0).spins  # compile the numba kernels
    minimize(warm, hams[0], dipolar_kernel(16, 16), 2, 1.0, method="lbfgs")  # before timing
    rows = {"lbfgs": [], "vp": []}
    for i, ham in enumerate(hams):
        start = anneal(ham, (L, L), schedule, seed=i).spins
        line = [f"texture {i}: lam {ham.dmi:+.3f} K {ham.anisotropy:.3f} D {ham.dipolar:.3f}"]
        for method in rows:
            spins = start.copy()
            t0 = time.perf_counter()
            steps, torque = minimize(spins, ham, kernel, args.steps, args.torque, method=method)
            seconds = time.perf_counter() - t0
            energy = energy_terms(spins, ham).total / (L * L)
            rows[method].append((steps, seconds, torque, energy))
            line.append(f"{method} {steps} steps {seconds:.1f} s {torque:.1e} J E {energy:.6f}")
        print(" | ".join(line), flush=True)
    med = {m: np.median(np.array(r), axis=0) for m, r in rows.items()}
    lower = np.mean([e for *_, e in rows["lbfgs"]]) - np.mean([e for *_, e in rows["vp"]])
    reached = {m: np.mean([t < args.torque for _, _, t, _ in r]) for m, r in rows.items()}
    print(
        f"median steps lbfgs {med['lbfgs'][0]:.0f} vp {med['vp'][0]:.0f}; "
        f"reached {args.torque:g} J: lbfgs {reached['lbfgs']:.0%} vp {reached['vp']:.0%}; "
        f"L-BFGS energy per spin lower by {-lower:.2e} J"
    )
    print(
        f"lbfgs_median_s={med['lbfgs'][1]:.2f} vp_median_s={med['vp'][1]:.2f} "
        f"speedup={med['vp'][1] / med['lbfgs'][1]:.1f} "
        f"lbfgs_reached={reached['lbfgs']:.2f} vp_reached={reached['vp']:.2f}"
    )


if __name__ == "__main__":
    main()
