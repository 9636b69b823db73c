r"""The spin Hamiltonian: per-term energies and the effective field of a configuration.

.. math::

    H = -J \sum_{\langle ij \rangle} S_i \cdot S_j
        - \sum_{\langle ij \rangle} \lambda (\hat z \times \hat r_{ij}) \cdot (S_i \times S_j)
        + E_\mathrm{dip}(D) - K \sum_i (S_i^z)^2

Conventions are those of the reference simulator (``tests/data/energies.json``): spins are
indexed ``[ix, iy, (Sx, Sy, Sz)]``, periodic in x and y, nearest-neighbour bonds along +x
and +y counted once each, ``r_ij = r_j - r_i``. With lambda > 0 a Neel wall in which S turns
from +z towards +u while moving along +u is favoured. J = 1 throughout the project.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np

from spinfer.errors import InputError
from spinfer.physics.dipolar import DipolarKernel, dipolar_kernel

MIN_SIZE = 4
#: Accepted magnitudes (J = 1); far outside the paper's ranges but still a sane model.
MAX_ABS_DMI = 5.0
MAX_ABS_ANISOTROPY = 20.0
MAX_DIPOLAR = 2.0


@dataclass(frozen=True)
class Hamiltonian:
    """Coupling constants in units of the exchange J."""

    dmi: float  # lambda
    anisotropy: float  # K
    dipolar: float  # D
    exchange: float = 1.0  # J

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not math.isfinite(value):
                raise InputError(f"{name} must be finite, got {value}")
        if abs(self.dmi) > MAX_ABS_DMI:
            raise InputError(f"|dmi| (lambda) must be <= {MAX_ABS_DMI}, got {self.dmi}")
        if abs(self.anisotropy) > MAX_ABS_ANISOTROPY:
            raise InputError(
                f"|anisotropy| (K) must be <= {MAX_ABS_ANISOTROPY}, got {self.anisotropy}"
            )
        if not 0.0 <= self.dipolar <= MAX_DIPOLAR:
            raise InputError(f"dipolar (D) must be in [0, {MAX_DIPOLAR}], got {self.dipolar}")
        if self.exchange <= 0:
            raise InputError(f"exchange (J) must be > 0, got {self.exchange}")


@dataclass(frozen=True)
class EnergyTerms:
    """Total energies over the lattice, one number per term."""

    exchange: float
    dmi: float
    dipolar: float
    anisotropy: float

    @property
    def total(self) -> float:
        return self.exchange + self.dmi + self.dipolar + self.anisotropy

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


@numba.njit(cache=True)
def local_energy_terms(spins: np.ndarray, exchange: float, dmi: float, anisotropy: float):
    """(exchange, dmi, anisotropy) energy totals; each +x and +y bond counted once."""
    lx, ly = spins.shape[0], spins.shape[1]
    e_ex = 0.0
    e_dmi = 0.0
    e_an = 0.0
    for i in range(lx):
        ip = i + 1 if i + 1 < lx else 0
        for j in range(ly):
            jp = j + 1 if j + 1 < ly else 0
            sx, sy, sz = spins[i, j, 0], spins[i, j, 1], spins[i, j, 2]
            rx, ry, rz = spins[ip, j, 0], spins[ip, j, 1], spins[ip, j, 2]
            ux, uy, uz = spins[i, jp, 0], spins[i, jp, 1], spins[i, jp, 2]
            e_ex -= sx * rx + sy * ry + sz * rz + sx * ux + sy * uy + sz * uz
            # bond +x: d = lam y_hat -> -(S_i x S_R)_y ; bond +y: d = -lam x_hat -> +(S_i x S_U)_x
            e_dmi -= (sz * rx - sx * rz) - (sy * uz - sz * uy)
            e_an -= sz * sz
    return exchange * e_ex, dmi * e_dmi, anisotropy * e_an


@numba.njit(cache=True)
def local_field(
    spins: np.ndarray, exchange: float, dmi: float, anisotropy: float, out: np.ndarray
) -> None:
    """Write -dH/dS of the exchange, DMI and anisotropy terms into ``out`` (Lx, Ly, 3)."""
    lx, ly = spins.shape[0], spins.shape[1]
    for i in range(lx):
        ip = i + 1 if i + 1 < lx else 0
        im = i - 1 if i > 0 else lx - 1
        for j in range(ly):
            jp = j + 1 if j + 1 < ly else 0
            jm = j - 1 if j > 0 else ly - 1
            for c in range(3):
                out[i, j, c] = exchange * (
                    spins[ip, j, c] + spins[im, j, c] + spins[i, jp, c] + spins[i, jm, c]
                )
            out[i, j, 0] += dmi * (spins[im, j, 2] - spins[ip, j, 2])
            out[i, j, 1] += dmi * (spins[i, jm, 2] - spins[i, jp, 2])
            out[i, j, 2] += dmi * (
                spins[ip, j, 0] - spins[im, j, 0] + spins[i, jp, 1] - spins[i, jm, 1]
            )
            out[i, j, 2] += 2.0 * anisotropy * spins[i, j, 2]


def check_spins(spins: np.ndarray, name: str = "spins") -> np.ndarray:
    """Validate an (Lx, Ly, 3) finite array with Lx, Ly >= 4; returns it as float64."""
    arr = np.asarray(spins)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(f"{name} must have shape (Lx, Ly, 3), got {arr.shape}")
    if min(arr.shape[:2]) < MIN_SIZE:
        raise InputError(
            f"{name}: lattice must be at least {MIN_SIZE}x{MIN_SIZE}, got "
            f"{arr.shape[0]}x{arr.shape[1]}"
        )
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or Inf values")
    return arr


def energy_terms(spins: np.ndarray, ham: Hamiltonian, images: int | None = None) -> EnergyTerms:
    """Per-term total energies of a configuration, in double precision.

    Parameters
    ----------
    spins
        (Lx, Ly, 3) spin vectors (not renormalized: the energy is that of the given vectors).
    ham
        Coupling constants.
    images
        Dipolar kernel mode: ``None`` = fully periodic lattice sum, M = block of M images.
    """
    s = check_spins(spins)
    e_ex, e_dmi, e_an = local_energy_terms(s, ham.exchange, ham.dmi, ham.anisotropy)
    kernel = dipolar_kernel(s.shape[0], s.shape[1], images)
    e_dip = kernel.energy(s, ham.dipolar) if ham.dipolar else 0.0
    return EnergyTerms(exchange=e_ex, dmi=e_dmi, dipolar=e_dip, anisotropy=e_an)


def effective_field(spins: np.ndarray, ham: Hamiltonian, images: int | None = None) -> np.ndarray:
    """-dH/dS_i at every site, (Lx, Ly, 3), all four terms."""
    s = check_spins(spins)
    out = np.empty_like(s)
    local_field(s, ham.exchange, ham.dmi, ham.anisotropy, out)
    if ham.dipolar:
        kernel: DipolarKernel = dipolar_kernel(s.shape[0], s.shape[1], images)
        out += ham.dipolar * kernel.field(s)
    return out
