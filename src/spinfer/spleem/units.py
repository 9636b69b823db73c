"""Physical units of the estimates (Kwon et al.): the dipolar scale D_L sets the meV.

D_L = mu0/(4 pi) (d_Co mu_Co + d_Ni mu_Ni)^2 / a^3 is the dipolar energy of two columns of
the film (d_Co, d_Ni monolayers with moments mu_Co, mu_Ni) one lattice constant a apart.
The model's D is D_L / J, so J = D_L / D, lambda_phys = D_L lambda / D and
K_phys = D_L K / D, all in meV. With d_Co = 2, d_Ni = 6, mu_Co = 1.7 muB, mu_Ni = 0.6 muB,
a = 2.49 A this gives D_L = 0.1704 meV (the paper quotes 0.171).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MU0_OVER_4PI = 1e-7  # T m / A
MU_B = 9.2740100783e-24  # J / T
MEV = 1.602176634e-22  # J


@dataclass(frozen=True)
class Film:
    """Layer thicknesses (monolayers), moments (Bohr magnetons) and lattice constant (A)."""

    d_co: float = 2.0
    d_ni: float = 6.0
    mu_co: float = 1.7
    mu_ni: float = 0.6
    lattice_a: float = 2.49

    def dipolar_mev(self) -> float:
        """D_L in meV."""
        moment = (self.d_co * self.mu_co + self.d_ni * self.mu_ni) * MU_B
        return MU0_OVER_4PI * moment**2 / (self.lattice_a * 1e-10) ** 3 / MEV


def to_physical(
    lam: np.ndarray, k: np.ndarray, d: np.ndarray, film: Film
) -> dict[str, np.ndarray]:
    """Model-unit (lambda, K, D) (J = 1) -> J, lambda, K in meV, given D_L of the film."""
    d = np.asarray(d, dtype=np.float64)
    if np.any(d <= 0):
        raise ValueError("D must be > 0 to set the energy scale")
    j = film.dipolar_mev() / d
    return {"J_meV": j, "lambda_meV": j * np.asarray(lam), "K_meV": j * np.asarray(k)}
