"""Energy minimisation to a torque-free texture: velocity projection (quick-min) on the sphere.

Experimental textures, and those of other simulators (Spirit's LBFGS/VP, mumax3's relax),
are relaxed states: every spin lies along its effective field, walls have their equilibrium
width. A finite Monte Carlo schedule stops short of that (walls ~1.5-2x too wide at the
default's sweeps, ``validation/relaxation.py``), which a network trained on it reads as
different couplings. This minimiser finishes every annealed texture.

Velocity projection (Bessarab, Uzdin & Jonsson 2015, as in Spirit's ``VP`` solver): the
force is the effective field's component perpendicular to each spin, f = H - (S.H) S; the
velocity keeps only its projection on the current force (zero when it points uphill), gains
``dt * f``, and moves the spins, which are then renormalised. It descends far faster than the
overdamped step (``anneal.descend``) on the slow wall modes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from spinfer.physics.energy import Hamiltonian, local_field

VP_STEP = 0.2  # time step dt (units of 1/J); stable up to ~0.3 for |H| <~ 10 J


@numba.njit(cache=True)
def _force(spins: np.ndarray, field: np.ndarray, velocity: np.ndarray):
    """Turn ``field`` into the force H - (S.H) S in place; return (sum v.f, sum f.f, max |f|^2)."""
    vf = 0.0
    ff = 0.0
    fmax = 0.0
    lx, ly = spins.shape[0], spins.shape[1]
    for i in range(lx):
        for j in range(ly):
            sh = (
                spins[i, j, 0] * field[i, j, 0]
                + spins[i, j, 1] * field[i, j, 1]
                + spins[i, j, 2] * field[i, j, 2]
            )
            f2 = 0.0
            for c in range(3):
                f = field[i, j, c] - sh * spins[i, j, c]
                field[i, j, c] = f
                f2 += f * f
                vf += velocity[i, j, c] * f
            ff += f2
            fmax = max(fmax, f2)
    return vf, ff, fmax


@numba.njit(cache=True)
def _move(spins: np.ndarray, force: np.ndarray, velocity: np.ndarray, keep: float, dt: float):
    """v <- keep * f + dt * f; S <- normalize(S + dt * v)."""
    lx, ly = spins.shape[0], spins.shape[1]
    for i in range(lx):
        for j in range(ly):
            norm = 0.0
            for c in range(3):
                v = (keep + dt) * force[i, j, c]
                velocity[i, j, c] = v
                s = spins[i, j, c] + dt * v
                spins[i, j, c] = s
                norm += s * s
            norm = 1.0 / math.sqrt(norm)
            for c in range(3):
                spins[i, j, c] *= norm


def minimize(
    spins: np.ndarray,
    ham: Hamiltonian,
    kernel,
    steps: int,
    torque: float,
    dt: float = VP_STEP,
) -> tuple[int, float]:
    """Velocity-projection minimisation of (Lx, Ly, 3) float64 ``spins`` in place.

    Stops once max |S x H_eff| < ``torque`` (units of J) or after ``steps`` steps; returns
    (steps taken, max torque of the final texture). The dipolar field is the kernel's full
    lattice sum at every step, in single precision (its round-off, ~1e-7 J, is far below
    any useful torque threshold).
    """
    field = np.empty_like(spins)
    velocity = np.zeros_like(spins)
    n = 0
    while True:  # steps + 1 force evaluations at most: the last one measures the result
        local_field(spins, ham.exchange, ham.dmi, ham.anisotropy, field)
        if ham.dipolar:  # in double precision, whatever the type of ham.dipolar
            field += float(ham.dipolar) * kernel.field(spins.astype(np.float32)).astype(np.float64)
        vf, ff, fmax = _force(spins, field, velocity)
        if fmax < torque * torque or n >= steps:
            return n, math.sqrt(fmax)
        keep = vf / ff if vf > 0.0 and ff > 0.0 else 0.0
        _move(spins, field, velocity, keep, dt)
        n += 1
