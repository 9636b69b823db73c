"""Independent O(N^2) pair sums of every energy term, written from the formula, not the code.

Slow and obvious on purpose (stumpy's tests/naive.py): loops over explicit bonds and pairs.
"""

from __future__ import annotations

import numpy as np


def exchange(spins: np.ndarray, j: float = 1.0) -> float:
    lx, ly, _ = spins.shape
    e = 0.0
    for x in range(lx):
        for y in range(ly):
            for dx, dy in ((1, 0), (0, 1)):
                e -= j * spins[x, y] @ spins[(x + dx) % lx, (y + dy) % ly]
    return e


def dmi(spins: np.ndarray, lam: float) -> float:
    """-sum over bonds of lam (z x r_ij) . (S_i x S_j)."""
    lx, ly, _ = spins.shape
    z = np.array([0.0, 0.0, 1.0])
    e = 0.0
    for x in range(lx):
        for y in range(ly):
            for dx, dy in ((1, 0), (0, 1)):
                r = np.array([dx, dy, 0.0])
                d_vec = lam * np.cross(z, r)
                e -= d_vec @ np.cross(spins[x, y], spins[(x + dx) % lx, (y + dy) % ly])
    return e


def anisotropy(spins: np.ndarray, k: float) -> float:
    return -k * float(np.sum(spins[..., 2] ** 2))


def dipolar(spins: np.ndarray, d: float, images: int) -> float:
    """-(D/2) sum_i sum_j [3 (S_i.r)(S_j.r)/r^5 - S_i.S_j/r^3] over a block of images."""
    lx, ly, _ = spins.shape
    pos = np.array([(x, y, 0.0) for x in range(lx) for y in range(ly)])
    s = spins.reshape(-1, 3)
    e = 0.0
    for i in range(len(pos)):
        for mx in range(-images, images + 1):
            for my in range(-images, images + 1):
                shift = np.array([mx * lx, my * ly, 0.0])
                r = pos + shift - pos[i]
                r2 = np.einsum("ij,ij->i", r, r)
                ok = r2 > 0
                rr = r[ok]
                dist = np.sqrt(r2[ok])
                si_r = rr @ s[i]
                sj_r = np.einsum("ij,ij->i", rr, s[ok])
                term = 3 * si_r * sj_r / dist**5 - (s[ok] @ s[i]) / dist**3
                e += -0.5 * d * term.sum()
    return float(e)


def random_spins(lx: int, ly: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(lx, ly, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
