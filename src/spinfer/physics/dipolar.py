r"""Long-range dipolar interaction on a periodic 2D lattice, evaluated by FFT convolution.

.. math::

    E_\mathrm{dip} = -\frac{D}{2} \sum_i \sum_{j \neq i}
        \frac{3 (S_i \cdot r_{ij})(S_j \cdot r_{ij}) - (S_i \cdot S_j)\, r_{ij}^2}{r_{ij}^5}
    = -\frac{1}{2} \sum_i S_i \cdot h_i, \qquad h_i = D \sum_j G(r_j - r_i)\, S_j

The sum over j runs over the sample and its periodic copies (bonds counted once, as in the
reference simulator). Positions lie in the plane, so the tensor ``G`` has four independent
components: xx, yy, xy and zz (xz = yz = 0). ``G`` is even in r, so the field is a
convolution and costs two FFTs per component.

Two kernel modes:

* ``images=None`` (default): the fully periodic lattice sum. Images up to ``DIRECT_IMAGES``
  are summed directly; the remaining tail is replaced by its continuum integral over the
  plane outside the summed rectangle, which leaves an error of order ``1/R^3``.
* ``images=M``: exactly the reference's finite block of ``(2M+1)^2`` copies centred on the
  original sample. That block is not translation invariant (it is centred on the sample, not
  on spin i), so the field is a linear (zero-padded) convolution over raw displacements.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
from scipy import integrate

#: Images summed directly in the periodic mode before the continuum tail takes over.
DIRECT_IMAGES = 8

XX, YY, XY, ZZ = 0, 1, 2, 3


@numba.njit(cache=True)
def _pair_tensor(x: float, y: float, w: float, out: np.ndarray, i: int, j: int) -> None:
    """Add w * W(r), W = (3 r r^T - r^2 1)/r^5 for an in-plane r = (x, y), to out[:, i, j]."""
    r2 = x * x + y * y
    inv_r5 = w / (r2 * r2 * math.sqrt(r2))
    out[XX, i, j] += (3.0 * x * x - r2) * inv_r5
    out[YY, i, j] += (3.0 * y * y - r2) * inv_r5
    out[XY, i, j] += 3.0 * x * y * inv_r5
    out[ZZ, i, j] -= r2 * inv_r5


@numba.njit(cache=True)
def periodic_kernel_sum(lx: int, ly: int, images: int) -> np.ndarray:
    """Sum W over images |m| <= images for each displacement class modulo the lattice.

    Each class is represented by its centred displacement in [-L/2, L/2]; for even L the
    class L/2 is split half-half between -L/2 and +L/2 so that the kernel stays exactly even
    (G(-d) = G(d)) and invariant under 90-degree rotations. Returns (4, lx, ly), FFT layout.
    """
    out = np.zeros((4, lx, ly))
    for i in range(lx):
        dx0 = i if i < (lx + 1) // 2 else i - lx
        split_x = lx % 2 == 0 and i == lx // 2
        for j in range(ly):
            dy0 = j if j < (ly + 1) // 2 else j - ly
            split_y = ly % 2 == 0 and j == ly // 2
            for sx in range(2 if split_x else 1):
                dx = -dx0 if sx == 1 else dx0
                for sy in range(2 if split_y else 1):
                    dy = -dy0 if sy == 1 else dy0
                    w = (0.5 if split_x else 1.0) * (0.5 if split_y else 1.0)
                    for mx in range(-images, images + 1):
                        x = dx + mx * lx
                        for my in range(-images, images + 1):
                            y = dy + my * ly
                            if x == 0 and y == 0:
                                continue
                            _pair_tensor(float(x), float(y), w, out, i, j)
    return out


@numba.njit(cache=True)
def block_kernel_sum(lx: int, ly: int, images: int) -> np.ndarray:
    """Sum W over images |m| <= images for each raw displacement in (-L, L).

    Returns (4, 2 lx, 2 ly) in zero-padded FFT layout; the row and column at +-L stay zero.
    """
    out = np.zeros((4, 2 * lx, 2 * ly))
    for dx in range(-lx + 1, lx):
        i = dx % (2 * lx)
        for dy in range(-ly + 1, ly):
            j = dy % (2 * ly)
            for mx in range(-images, images + 1):
                x = dx + mx * lx
                for my in range(-images, images + 1):
                    y = dy + my * ly
                    if x == 0 and y == 0:
                        continue
                    _pair_tensor(float(x), float(y), 1.0, out, i, j)
    return out


def continuum_tail(half_x: float, half_y: float, area: float) -> np.ndarray:
    r"""Per-displacement tail (xx, yy, xy, zz) of the lattice sum outside a rectangle.

    Each image cell of ``area`` holds one copy of a displacement, so the sum over far images
    is :math:`\frac{1}{A}\int_\mathrm{outside} W\, d^2r
    = \frac{1}{A}\int_0^{2\pi} f(\theta)/r_b(\theta)\, d\theta` with the angular factors
    ``f`` = (3cos^2 - 1, 3 sin^2 - 1, 3 sin cos, -1) and the rectangle's boundary ``r_b``.
    """
    corner = math.atan2(half_y, half_x)

    def inv_rb(theta: float) -> float:
        return max(math.cos(theta) / half_x, math.sin(theta) / half_y)

    factors = (
        lambda t: 3.0 * math.cos(t) ** 2 - 1.0,
        lambda t: 3.0 * math.sin(t) ** 2 - 1.0,
        lambda t: 0.0,  # odd in each quadrant pair: integrates to zero over the rectangle
        lambda t: -1.0,
    )
    tail = np.empty(4)
    for k, f in enumerate(factors):
        val, _ = integrate.quad(
            lambda t, f=f: f(t) * inv_rb(t), 0.0, math.pi / 2, points=[corner], limit=200
        )
        tail[k] = 4.0 * val / area
    return tail


@dataclass(frozen=True, eq=False)
class DipolarKernel:
    """The dipolar tensor of one lattice size and mode, with its FFT, computed once.

    ``field(spins)`` returns h / D, the dipolar field per unit dipolar constant.
    """

    shape: tuple[int, int]
    images: int | None
    real: np.ndarray  # (4, px, py): xx, yy, xy, zz in FFT layout (padded in block mode)
    spectrum: np.ndarray  # rfft2 of ``real`` (complex128)
    spectrum32: np.ndarray  # the same in complex64, for single-precision Monte Carlo refreshes

    @property
    def padded(self) -> bool:
        return self.images is not None

    @property
    def self_term(self) -> np.ndarray:
        """(xx, yy, xy, zz) coupling of a spin to its own periodic images."""
        return self.real[:, 0, 0].copy()

    def stencil(self, radius: int) -> np.ndarray:
        """G(dx, dy) for |dx|, |dy| <= radius as (2r+1, 2r+1, 4), centre = self term.

        Uses the translation-invariant entries (exact in periodic mode; in block mode the
        difference is the coupling to the outermost image shell).
        """
        px, py = self.real.shape[1:]
        idx_x = np.arange(-radius, radius + 1) % px
        idx_y = np.arange(-radius, radius + 1) % py
        block = self.real[:, idx_x][:, :, idx_y]
        return np.ascontiguousarray(np.moveaxis(block, 0, -1))

    def field(self, spins: np.ndarray, workers: int = 1) -> np.ndarray:
        """Dipolar field per unit D at every site, (Lx, Ly, 3).

        float32 input is transformed in single precision (3x faster; used by the Monte Carlo
        refresh), anything else in double.
        """
        lx, ly = self.shape
        px, py = self.real.shape[1:]
        single = spins.dtype == np.float32
        comps = np.moveaxis(spins if single else spins.astype(np.float64, copy=False), -1, 0)
        sk = scipy.fft.rfft2(comps, s=(px, py), axes=(1, 2), workers=workers)
        g = self.spectrum32 if single else self.spectrum
        hk = np.empty_like(sk)
        hk[0] = g[XX] * sk[0] + g[XY] * sk[1]
        hk[1] = g[XY] * sk[0] + g[YY] * sk[1]
        hk[2] = g[ZZ] * sk[2]
        h = scipy.fft.irfft2(hk, s=(px, py), axes=(1, 2), workers=workers)[:, :lx, :ly]
        return np.ascontiguousarray(np.moveaxis(h, 0, -1))

    def energy(self, spins: np.ndarray, dipolar: float) -> float:
        """Total dipolar energy -(D/2) sum_i S_i . h_i/D, in double precision."""
        s = np.asarray(spins, dtype=np.float64)
        return float(-0.5 * dipolar * np.sum(s * self.field(s)))

    def kshape(self) -> float:
        """Shape anisotropy per spin in units of D: [E(uniform +z) - E(uniform +x)] / (N D).

        Where the perpendicular anisotropy K exceeds ``kshape * D`` the uniform out-of-plane
        state is lower than the in-plane one (about 6.77 for the infinite square lattice).
        """
        lx, ly = self.shape
        up = np.zeros((lx, ly, 3))
        up[..., 2] = 1.0
        inplane = np.zeros((lx, ly, 3))
        inplane[..., 0] = 1.0
        return (self.energy(up, 1.0) - self.energy(inplane, 1.0)) / (lx * ly)


@functools.lru_cache(maxsize=16)
def dipolar_kernel(lx: int, ly: int, images: int | None = None) -> DipolarKernel:
    """The dipolar kernel of an lx x ly periodic lattice; cached per size and mode.

    Parameters
    ----------
    lx, ly
        Lattice size.
    images
        ``None`` for the fully periodic lattice sum (default), or M for the reference's finite
        block of (2M+1) x (2M+1) periodic copies centred on the sample.
    """
    if images is None:
        real = periodic_kernel_sum(lx, ly, DIRECT_IMAGES)
        half_x = (DIRECT_IMAGES + 0.5) * lx
        half_y = (DIRECT_IMAGES + 0.5) * ly
        real += continuum_tail(half_x, half_y, float(lx * ly))[:, None, None]
    else:
        if images < 0:
            raise ValueError(f"images must be >= 0, got {images}")
        real = block_kernel_sum(lx, ly, int(images))
    real.setflags(write=False)
    spectrum = scipy.fft.rfft2(real, axes=(1, 2))
    spectrum.setflags(write=False)
    spectrum32 = spectrum.astype(np.complex64)
    spectrum32.setflags(write=False)
    return DipolarKernel((lx, ly), images, real, spectrum, spectrum32)
