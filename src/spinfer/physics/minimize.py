"""Energy minimisation to a torque-free texture on the sphere: L-BFGS or velocity projection.

Experimental textures, and those of other simulators (Spirit's LBFGS/VP, mumax3's relax),
are relaxed states: every spin lies along its effective field, walls have their equilibrium
width. A finite Monte Carlo schedule stops short of that (walls ~1.5-2x too wide at the
default's sweeps, ``validation/relaxation.py``), which a network trained on it reads as
different couplings. This minimiser finishes every annealed texture.

Velocity projection (Bessarab, Uzdin & Jonsson 2015, as in Spirit's ``VP`` solver): the
force is the effective field's component perpendicular to each spin, f = H - (S.H) S; the
velocity keeps only its projection on the current force (zero when it points uphill), gains
``dt * f``, and moves the spins, which are then renormalised. It descends far faster than the
overdamped step (``anneal.descend``) on the slow wall modes, but not fast enough: on 100 x 100
out-of-plane textures 10,000 steps leave a max torque of ~2e-3 J, and the last decade of
torque still moves what a network reads (D_N by ~0.03 at the external set's couplings).

L-BFGS (``method="lbfgs"``, as Spirit's default LBFGS-OSO solver relaxes its textures): the
gradient is -f, the search direction the two-loop recursion over the last ``LBFGS_MEMORY``
steps and gradient changes, projected on each spin's tangent plane, scaled so that no spin
turns by more than ``LBFGS_MAX_ANGLE`` (no line search), and the spins move along it and are
renormalised; a direction that does not descend restarts the memory. It reaches 1e-4 J in
~500-1,000 steps where velocity projection needs over 15,000 (``benchmarks/minimize.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from spinfer.errors import InputError
from spinfer.physics.energy import Hamiltonian, local_field

VP_STEP = 0.2  # time step dt (units of 1/J); stable up to ~0.3 for |H| <~ 10 J
MINIMIZERS = ("lbfgs", "vp")
LBFGS_MEMORY = 5  # (step, gradient change) pairs kept
LBFGS_MAX_ANGLE = 0.2  # rad: the largest turn of any spin in one step
LBFGS_FIRST_STEP = 0.05  # the first (and a restarted) direction: this times the force


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
    method: str = "vp",
) -> tuple[int, float]:
    """Minimise the energy of (Lx, Ly, 3) float64 ``spins`` in place (``method``: vp, the
    velocity projection, with time step ``dt``; or lbfgs).

    Stops once max |S x H_eff| < ``torque`` (units of J) or after ``steps`` steps; returns
    (steps taken, max torque of the final texture). The dipolar field is the kernel's full
    lattice sum at every step, in single precision (its round-off, ~1e-7 J, is far below
    any useful torque threshold).
    """
    if method == "lbfgs":
        return _lbfgs(spins, ham, kernel, steps, torque)
    if method != "vp":
        raise InputError(f"unknown minimizer {method!r} (known: {', '.join(MINIMIZERS)})")
    field = np.empty_like(spins)
    velocity = np.zeros_like(spins)
    n = 0
    while True:  # steps + 1 force evaluations at most: the last one measures the result
        _effective_field(spins, ham, kernel, field)
        vf, ff, fmax = _force(spins, field, velocity)
        if fmax < torque * torque or n >= steps:
            return n, math.sqrt(fmax)
        keep = vf / ff if vf > 0.0 and ff > 0.0 else 0.0
        _move(spins, field, velocity, keep, dt)
        n += 1


def _effective_field(spins: np.ndarray, ham: Hamiltonian, kernel, field: np.ndarray) -> None:
    """H_eff = -dH/dS into ``field``: the local terms, plus D times the kernel's dipolar
    field in double precision (whatever the type of ham.dipolar)."""
    local_field(spins, ham.exchange, ham.dmi, ham.anisotropy, field)
    if ham.dipolar:
        field += float(ham.dipolar) * kernel.field(spins.astype(np.float32)).astype(np.float64)


def _tangent_force(spins: np.ndarray, ham: Hamiltonian, kernel, field: np.ndarray) -> np.ndarray:
    """f = H - (S.H) S at every site (the negative energy gradient on the sphere)."""
    _effective_field(spins, ham, kernel, field)
    return field - np.sum(field * spins, axis=-1, keepdims=True) * spins


def _max_norm(vectors: np.ndarray) -> float:
    return math.sqrt(float(np.max(np.sum(vectors * vectors, axis=-1))))


def _lbfgs(spins: np.ndarray, ham: Hamiltonian, kernel, steps: int, torque: float):
    """L-BFGS on the sphere (see the module docstring); (steps taken, final max torque)."""
    field = np.empty_like(spins)
    force = _tangent_force(spins, ham, kernel, field)
    memory: list[tuple[np.ndarray, np.ndarray, float]] = []  # (step, gradient change, 1/s.y)
    n = 0
    while True:
        largest = _max_norm(force)
        if largest < torque or n >= steps:
            return n, largest
        direction = _two_loop(force.ravel(), memory).reshape(spins.shape)
        direction -= np.sum(direction * spins, axis=-1, keepdims=True) * spins
        if _dot(direction.ravel(), force.ravel()) <= 0.0:  # not downhill: forget, restart
            memory.clear()
            direction = LBFGS_FIRST_STEP * force
        turn = _max_norm(direction)
        if turn > LBFGS_MAX_ANGLE:
            direction *= LBFGS_MAX_ANGLE / turn
        moved = spins + direction
        moved /= np.linalg.norm(moved, axis=-1, keepdims=True)
        step = (moved - spins).ravel()
        spins[:] = moved
        new_force = _tangent_force(spins, ham, kernel, field)
        change = (force - new_force).ravel()  # gradient change: g = -f
        curvature = _dot(step, change)
        if curvature > 1e-12:
            memory.append((step, change, 1.0 / curvature))
            if len(memory) > LBFGS_MEMORY:
                memory.pop(0)
        force = new_force
        n += 1


@numba.njit(cache=True)
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a * b over two flat float64 arrays, in order on one thread: a BLAS dot would
    spawn threads of its own, which on a machine whose cores are all busy (generation's
    worker processes) made every step ~50x slower."""
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


def _two_loop(force: np.ndarray, memory: list) -> np.ndarray:
    """The L-BFGS direction -H g = H f from the stored pairs (Nocedal & Wright, Alg. 7.4)."""
    q = force.copy()
    alphas = []
    for step, change, rho in reversed(memory):
        a = rho * _dot(step, q)
        alphas.append(a)
        q -= a * change
    if not memory:
        return LBFGS_FIRST_STEP * q
    step, change, _ = memory[-1]
    q *= _dot(step, change) / _dot(change, change)
    for (step, change, rho), a in zip(memory, reversed(alphas), strict=True):
        q += (a - rho * _dot(change, q)) * step
    return q
