r"""A physics inverse: (lambda, K, D) from the torque balance of a relaxed texture.

At a local energy minimum every spin is parallel to its effective field, so the torque
:math:`S_i \times h_i` vanishes. The field is linear in the couplings (J = 1 fixed),

.. math::
    h_i = h^\mathrm{ex}_i + \lambda h^\mathrm{dmi}_i + K h^\mathrm{ani}_i + D h^\mathrm{dip}_i,

so :math:`\sum_i |S_i \times h_i|^2` is a linear least-squares problem in (lambda, K, D)
with 3N equations: one relaxed texture determines all three couplings, with no training.
It needs a texture at rest (noise destroys the balance at once; that is the networks'
job) that is not uniform (a uniform state is torque-free for every coupling). The
weakest-determined direction of the fit is where (K, D) trade against each other along
dK / dD ~ Kshape / D: the effective anisotropy K - Kshape that the paper's networks learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinfer.physics.energy import Hamiltonian, check_spins, effective_field

#: the couplings in the order of the fit (and of the dataset's ``params``)
COUPLINGS = ("lambda", "K", "D")
_UNIT = (
    Hamiltonian(dmi=1.0, anisotropy=0.0, dipolar=0.0),
    Hamiltonian(dmi=0.0, anisotropy=1.0, dipolar=0.0),
    Hamiltonian(dmi=0.0, anisotropy=0.0, dipolar=1.0),
)


@dataclass(frozen=True)
class TorqueFit:
    """Least-squares couplings of one texture.

    ``params``: (lambda, K, D). ``residual``: rms torque left at ``params``, per spin.
    ``condition``: ratio of the largest to the smallest singular value of the design
    matrix (large: some combination of couplings is not determined by this texture).
    ``weakest``: unit vector in (lambda, K, D) along which the fit is least determined.
    """

    params: np.ndarray
    residual: float
    condition: float
    weakest: np.ndarray


def torque_design(spins: np.ndarray, images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with torque = A @ (lambda, K, D) - b, flattened over sites and components."""
    s = check_spins(spins).astype(np.float64)
    h_exchange = effective_field(s, Hamiltonian(dmi=0.0, anisotropy=0.0, dipolar=0.0), images)
    columns = [
        np.cross(s, effective_field(s, unit, images) - h_exchange).ravel() for unit in _UNIT
    ]
    return np.stack(columns, axis=1), -np.cross(s, h_exchange).ravel()


def torque_balance(spins: np.ndarray, images: int | None = None) -> TorqueFit:
    """The couplings that make ``spins`` (Lx, Ly, 3) most nearly torque-free (J = 1)."""
    a, b = torque_design(spins, images)
    params, *_ = np.linalg.lstsq(a, b, rcond=None)
    singular, right = np.linalg.svd(a, full_matrices=False)[1:]
    n_sites = a.shape[0] // 3
    residual = float(np.linalg.norm(a @ params - b) / np.sqrt(n_sites))
    condition = float(singular[0] / singular[-1]) if singular[-1] > 0 else float("inf")
    weakest = right[-1] * np.sign(right[-1][1] or 1.0)  # K component positive
    return TorqueFit(params, residual, condition, weakest)


def relax(
    spins: np.ndarray,
    ham: Hamiltonian,
    steps: int = 2000,
    rate: float = 0.05,
    images: int | None = None,
) -> np.ndarray:
    """Steepest descent on the sphere, S <- normalize(S + rate * S x (h x S)).

    An independent zero-temperature relaxation (not the Monte Carlo of the annealer): it
    brings a texture to rest so that torque-balance fits can be checked to high accuracy.
    """
    s = check_spins(spins).astype(np.float64).copy()
    for _ in range(steps):
        h = effective_field(s, ham, images)
        s += rate * np.cross(s, np.cross(h, s))
        s /= np.linalg.norm(s, axis=-1, keepdims=True)
    return s
