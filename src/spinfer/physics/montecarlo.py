"""Numba Metropolis kernels for classical Heisenberg spins with the full Hamiltonian.

The dipolar field of a sweep comes from an FFT refresh (``far``) plus an incremental
correction (``near``): every accepted move adds G(r) * dS to the sites within the stencil
radius (itself included, for the coupling to its own periodic images). Only the far part
beyond that radius is stale between refreshes; ``validation/mc_bias.py`` measures the effect.

Kernels take arrays and scalars only. Random numbers come from a xoshiro256+ state owned by
the caller, so a texture depends only on its seed, never on the thread that runs it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_U11 = np.uint64(11)
_U17 = np.uint64(17)
_U45 = np.uint64(45)
_U19 = np.uint64(64 - 45)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(cache=True, inline="always")
def _xoshiro(s0, s1, s2, s3):
    """xoshiro256+ step (Blackman & Vigna) on a state held in registers.

    Returns the new state and a double in [0, 1) from the top 53 bits.
    """
    result = s0 + s3
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _U45) | (s3 >> _U19)
    return s0, s1, s2, s3, float(result >> _U11) * _TO_UNIT


@numba.njit(cache=True, inline="always")
def _unit_vector(s0, s1, s2, s3):
    """Uniform random unit vector (Marsaglia 1972): no trigonometric calls."""
    while True:
        s0, s1, s2, s3, u = _xoshiro(s0, s1, s2, s3)
        s0, s1, s2, s3, w = _xoshiro(s0, s1, s2, s3)
        a = 2.0 * u - 1.0
        b = 2.0 * w - 1.0
        q = a * a + b * b
        if q < 1.0:
            f = 2.0 * math.sqrt(1.0 - q)
            return s0, s1, s2, s3, a * f, b * f, 1.0 - 2.0 * q


@numba.njit(cache=True)
def random_spins(lx: int, ly: int, state: np.ndarray) -> np.ndarray:
    """Infinite-temperature state: independent uniform unit vectors."""
    out = np.empty((lx, ly, 3))
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    for i in range(lx):
        for j in range(ly):
            s0, s1, s2, s3, x, y, z = _unit_vector(s0, s1, s2, s3)
            out[i, j, 0], out[i, j, 1], out[i, j, 2] = x, y, z
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return out


@numba.njit(cache=True, inline="always")
def _site_field(spins, i, j, ip, im, jp, jm, exchange, dmi):
    """Exchange + DMI field at (i, j) from its four neighbours (see energy.local_field)."""
    hx = exchange * (spins[ip, j, 0] + spins[im, j, 0] + spins[i, jp, 0] + spins[i, jm, 0])
    hy = exchange * (spins[ip, j, 1] + spins[im, j, 1] + spins[i, jp, 1] + spins[i, jm, 1])
    hz = exchange * (spins[ip, j, 2] + spins[im, j, 2] + spins[i, jp, 2] + spins[i, jm, 2])
    hx += dmi * (spins[im, j, 2] - spins[ip, j, 2])
    hy += dmi * (spins[i, jm, 2] - spins[i, jp, 2])
    hz += dmi * (spins[ip, j, 0] - spins[im, j, 0] + spins[i, jp, 1] - spins[i, jm, 1])
    return hx, hy, hz


@numba.njit(cache=True, inline="always")
def _delta_energy(sx, sy, sz, nx, ny, nz, hx, hy, hz, g_self, anisotropy, dipolar):
    """E(new) - E(old) for one spin: linear in the field, plus the quadratic self terms."""
    dx, dy, dz = nx - sx, ny - sy, nz - sz
    de = -(dx * hx + dy * hy + dz * hz)
    de -= (
        0.5
        * dipolar
        * (
            g_self[0] * dx * dx
            + g_self[1] * dy * dy
            + 2.0 * g_self[2] * dx * dy
            + g_self[3] * dz * dz
        )
    )
    de -= anisotropy * (nz * nz - sz * sz)
    return de


@numba.njit(cache=True, inline="always")
def _metropolis_move(
    sx, sy, sz, hx, hy, hz, g_self, anisotropy, dipolar, beta, cone, s0, s1, s2, s3
):
    """Propose S' = normalize(S + cone * v) and apply the Metropolis rule.

    Returns the RNG state, whether the move is accepted, and S'. ``beta = inf`` accepts only
    moves that lower the energy (and draws no acceptance number).
    """
    s0, s1, s2, s3, vx, vy, vz = _unit_vector(s0, s1, s2, s3)
    nx, ny, nz = sx + cone * vx, sy + cone * vy, sz + cone * vz
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    if norm == 0.0:
        return s0, s1, s2, s3, False, sx, sy, sz
    nx, ny, nz = nx / norm, ny / norm, nz / norm
    de = _delta_energy(sx, sy, sz, nx, ny, nz, hx, hy, hz, g_self, anisotropy, dipolar)
    if de > 0.0:
        if math.isinf(beta):
            return s0, s1, s2, s3, False, nx, ny, nz
        s0, s1, s2, s3, u = _xoshiro(s0, s1, s2, s3)
        if u >= math.exp(-beta * de):
            return s0, s1, s2, s3, False, nx, ny, nz
    return s0, s1, s2, s3, True, nx, ny, nz


@numba.njit(cache=True, inline="always")
def _spread(near, field, i, j, dx, dy, dz, lx, ly):
    """Add G(r) dS to the near field of every site within the stencil around (i, j)."""
    r = near.shape[0] // 2
    for a in range(-r, r + 1):
        ii = i + a
        ii = ii + lx if ii < 0 else (ii - lx if ii >= lx else ii)
        for b in range(-r, r + 1):
            jj = j + b
            jj = jj + ly if jj < 0 else (jj - ly if jj >= ly else jj)
            g = near[a + r, b + r]
            field[ii, jj, 0] += g[0] * dx + g[2] * dy
            field[ii, jj, 1] += g[2] * dx + g[1] * dy
            field[ii, jj, 2] += g[3] * dz


@numba.njit(cache=True, nogil=True, error_model="numpy")
def metropolis_sweep(
    spins: np.ndarray,
    far: np.ndarray,
    near_field: np.ndarray,
    near: np.ndarray,
    exchange: float,
    dmi: float,
    anisotropy: float,
    dipolar: float,
    beta: float,
    cone: float,
    state: np.ndarray,
) -> int:
    """One sequential Metropolis sweep in place; returns the number of accepted moves.

    Proposal S' = normalize(S + cone * v), v a uniform unit vector: isotropic about S, hence
    symmetric. ``far`` is the dipolar field per unit D at the last refresh; ``near_field``
    accumulates the exact change since then from the stencil ``near`` (2r+1, 2r+1, 4).
    ``beta = inf`` accepts only moves that lower the energy.
    """
    lx, ly = spins.shape[0], spins.shape[1]
    r = near.shape[0] // 2
    g_self = near[r, r]
    accepted = 0
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    for i in range(lx):
        ip = i + 1 if i + 1 < lx else 0
        im = i - 1 if i > 0 else lx - 1
        for j in range(ly):
            jp = j + 1 if j + 1 < ly else 0
            jm = j - 1 if j > 0 else ly - 1
            hx, hy, hz = _site_field(spins, i, j, ip, im, jp, jm, exchange, dmi)
            hx += dipolar * (far[i, j, 0] + near_field[i, j, 0])
            hy += dipolar * (far[i, j, 1] + near_field[i, j, 1])
            hz += dipolar * (far[i, j, 2] + near_field[i, j, 2])
            sx, sy, sz = spins[i, j, 0], spins[i, j, 1], spins[i, j, 2]
            s0, s1, s2, s3, ok, nx, ny, nz = _metropolis_move(
                sx, sy, sz, hx, hy, hz, g_self, anisotropy, dipolar, beta, cone, s0, s1, s2, s3
            )
            if not ok:
                continue
            spins[i, j, 0], spins[i, j, 1], spins[i, j, 2] = nx, ny, nz
            if dipolar != 0.0:
                _spread(near, near_field, i, j, nx - sx, ny - sy, nz - sz, lx, ly)
            accepted += 1
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return accepted


@numba.njit(cache=True, nogil=True, error_model="numpy")
def relaxation_sweep(
    spins: np.ndarray,
    far: np.ndarray,
    near_field: np.ndarray,
    near: np.ndarray,
    exchange: float,
    dmi: float,
    anisotropy: float,
    dipolar: float,
) -> float:
    """Zero-temperature sweep: turn each spin towards its local field if that lowers H.

    The proposal is the direction of -dH/dS_i (anisotropy included); it is kept only when
    the exact single-spin energy change is negative, so H never increases. Returns the total
    energy change of the sweep (<= 0).
    """
    lx, ly = spins.shape[0], spins.shape[1]
    r = near.shape[0] // 2
    g_self = near[r, r]
    total = 0.0
    for i in range(lx):
        ip = i + 1 if i + 1 < lx else 0
        im = i - 1 if i > 0 else lx - 1
        for j in range(ly):
            jp = j + 1 if j + 1 < ly else 0
            jm = j - 1 if j > 0 else ly - 1
            hx, hy, hz = _site_field(spins, i, j, ip, im, jp, jm, exchange, dmi)
            hx += dipolar * (far[i, j, 0] + near_field[i, j, 0])
            hy += dipolar * (far[i, j, 1] + near_field[i, j, 1])
            hz += dipolar * (far[i, j, 2] + near_field[i, j, 2])
            sx, sy, sz = spins[i, j, 0], spins[i, j, 1], spins[i, j, 2]
            tx, ty, tz = hx, hy, hz + 2.0 * anisotropy * sz
            norm = math.sqrt(tx * tx + ty * ty + tz * tz)
            if norm == 0.0:
                continue
            nx, ny, nz = tx / norm, ty / norm, tz / norm
            de = _delta_energy(sx, sy, sz, nx, ny, nz, hx, hy, hz, g_self, anisotropy, dipolar)
            if de >= 0.0:
                continue
            spins[i, j, 0], spins[i, j, 1], spins[i, j, 2] = nx, ny, nz
            if dipolar != 0.0:
                _spread(near, near_field, i, j, nx - sx, ny - sy, nz - sz, lx, ly)
            total += de
    return total


@numba.njit(cache=True, nogil=True, error_model="numpy")
def exact_metropolis_sweep(
    spins: np.ndarray,
    dip_field: np.ndarray,
    kernel: np.ndarray,
    exchange: float,
    dmi: float,
    anisotropy: float,
    dipolar: float,
    beta: float,
    cone: float,
    state: np.ndarray,
) -> int:
    """Reference sweep: the whole dipolar field is updated after every accepted move.

    ``kernel`` is the periodic (4, Lx, Ly) tensor; each acceptance costs O(N). This is the
    straightforward baseline of the speed benchmark and the unbiased variant of the bias
    check; it draws random numbers exactly like ``metropolis_sweep``.
    """
    lx, ly = spins.shape[0], spins.shape[1]
    g_self = kernel[:, 0, 0].copy()
    accepted = 0
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    for i in range(lx):
        ip = i + 1 if i + 1 < lx else 0
        im = i - 1 if i > 0 else lx - 1
        for j in range(ly):
            jp = j + 1 if j + 1 < ly else 0
            jm = j - 1 if j > 0 else ly - 1
            hx, hy, hz = _site_field(spins, i, j, ip, im, jp, jm, exchange, dmi)
            hx += dipolar * dip_field[i, j, 0]
            hy += dipolar * dip_field[i, j, 1]
            hz += dipolar * dip_field[i, j, 2]
            sx, sy, sz = spins[i, j, 0], spins[i, j, 1], spins[i, j, 2]
            s0, s1, s2, s3, ok, nx, ny, nz = _metropolis_move(
                sx, sy, sz, hx, hy, hz, g_self, anisotropy, dipolar, beta, cone, s0, s1, s2, s3
            )
            if not ok:
                continue
            spins[i, j, 0], spins[i, j, 1], spins[i, j, 2] = nx, ny, nz
            dx, dy, dz = nx - sx, ny - sy, nz - sz
            for a in range(lx):
                ka = (a - i) % lx
                for b in range(ly):
                    kb = (b - j) % ly
                    dip_field[a, b, 0] += kernel[0, ka, kb] * dx + kernel[2, ka, kb] * dy
                    dip_field[a, b, 1] += kernel[2, ka, kb] * dx + kernel[1, ka, kb] * dy
                    dip_field[a, b, 2] += kernel[3, ka, kb] * dz
            accepted += 1
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return accepted
