"""Texture observables: out-of-plane fraction, wall chirality, domain period, residual torque."""

from __future__ import annotations

import numpy as np

from spinfer.physics.energy import Hamiltonian, effective_field

#: mean |Sz| above which a texture counts as out of plane (the paper's classification)
OUT_OF_PLANE = 0.5


def mean_abs_sz(spins: np.ndarray) -> float:
    """Mean |Sz|: above OUT_OF_PLANE counts as an out-of-plane texture."""
    return float(np.mean(np.abs(spins[..., 2])))


def neel_chirality(spins: np.ndarray) -> float:
    r"""Net Neel chirality in [-1, 1] of the +x and +y bonds.

    :math:`\chi = \sum [(S_i \times S_{i+x})_y - (S_i \times S_{i+y})_x] /
    \sum |S_i \times S_j|`, i.e. -E_dmi / lambda normalised by the total rotation. +1: every
    rotation is a Neel rotation of the kind lambda > 0 favours; 0: Bloch or no preference.
    """
    right = np.roll(spins, -1, axis=0)
    up = np.roll(spins, -1, axis=1)
    cx = np.cross(spins, right)
    cy = np.cross(spins, up)
    signed = cx[..., 1].sum() - cy[..., 0].sum()
    total = np.linalg.norm(cx, axis=-1).sum() + np.linalg.norm(cy, axis=-1).sum()
    return float(signed / total) if total > 0 else 0.0


def structure_factor(sz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|FFT(Sz - <Sz>)|^2 and |q| (rad per lattice spacing) on the FFT grid."""
    lx, ly = sz.shape
    power = np.abs(np.fft.fft2(sz - sz.mean())) ** 2
    qx = 2 * np.pi * np.fft.fftfreq(lx)
    qy = 2 * np.pi * np.fft.fftfreq(ly)
    q = np.hypot(qx[:, None], qy[None, :])
    return power, q


def domain_period(spins: np.ndarray) -> float:
    """Domain period 2 pi / q* (in sites) of a texture's Sz (:func:`sz_period`)."""
    return sz_period(spins[..., 2])


def sz_period(sz: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Domain period 2 pi / q* (in sites or pixels) of an Sz map from the peak of the
    radially averaged S(q).

    Shells 2 pi / min(shape) wide up to that side's Nyquist (a rectangular image works);
    q* is the S(q)-weighted mean |q| over the peak shell and its two neighbours, so that it
    is not quantised to the FFT grid. Pixels outside ``mask`` are set to the mean of those
    inside. Returns inf for a uniform map.
    """
    sz = np.asarray(sz, dtype=np.float64)
    if mask is not None:
        sz = np.where(mask, sz, sz[mask].mean())
    power, q = structure_factor(sz)
    if power.sum() <= 1e-12 * power.size:
        return float("inf")
    shell = np.rint(q / (2 * np.pi / min(q.shape))).astype(int)
    power = np.where(shell <= min(q.shape) // 2, power, 0.0)
    counts = np.bincount(shell.ravel())
    radial = np.bincount(shell.ravel(), weights=power.ravel()) / np.maximum(counts, 1)
    radial[0] = 0.0
    peak = int(np.argmax(radial))
    if peak == 0:
        return float("inf")
    sel = (shell >= max(peak - 1, 1)) & (shell <= peak + 1)
    q_star = np.sum(power[sel] * q[sel]) / np.sum(power[sel])
    return float(2 * np.pi / q_star)


def wall_fraction(spins: np.ndarray, threshold: float = 0.5) -> float:
    """Share of sites with |Sz| < ``threshold``: for out-of-plane textures the area the walls
    take, ~ (wall width) / (domain period), so it reads how wide the walls are."""
    return float(np.mean(np.abs(spins[..., 2]) < threshold))


def max_torque(spins: np.ndarray, ham: Hamiltonian, images: int | None = None) -> float:
    """max_i |S_i x H_eff,i| (J): how far a texture is from a stationary state of ``ham``.

    The field is :func:`spinfer.physics.energy.effective_field` in double precision, a path
    independent of both engines' minimisers, so it checks their convergence from outside.
    Spins are renormalised first (a store holds float32 unit vectors).
    """
    s = np.asarray(spins, dtype=np.float64)
    s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    return float(np.linalg.norm(np.cross(s, effective_field(s, ham, images)), axis=-1).max())
