"""Multi-scale bond descriptors: a texture's local energy densities, averaged over the lattice.

At scale 1 they are the Hamiltonian's short-range terms per site and per unit coupling
(``spinfer.physics.energy`` conventions): the exchange bond deviation
``<2 - S_i.S_{i+x} - S_i.S_{i+y}>`` (= 2 + E_ex / (J N)), the DMI bond density
``E_dmi / (lambda N)``, ``<Sz^2>`` (= -E_K / (K N)), and ``<|Sz|>``. At scale b the same
quantities are taken on the texture coarse-grained over b x b blocks (averaged, then
renormalized): site noise averages out there while domains and walls survive, which is what
keeps them informative on noisy images. At scale 1 they are invariant under translations and
the lattice point group, except that the DMI density changes sign with the lambda-reversing
symmetries, as lambda does; coarse scales depend on where the blocks start, so there the
symmetry holds statistically. The dipolar energy per site and unit D (fully periodic
lattice sum) is added once, at scale 1: a long-range sum already averages site noise.

They are the feature set of ``validation/descriptor_probe.py``, a learned-baseline check of
how much of (lambda, K, D) the textures hold, beside the networks.
"""

from __future__ import annotations

import numpy as np

from spinfer.errors import InputError
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import local_energy_terms

DESCRIPTOR_SCALES = (1, 2, 4)
DESCRIPTOR_NAMES = ("log_exchange_deviation", "dmi_density", "sz_squared", "abs_sz")
_LOG_FLOOR = 1e-6


def coarse_grain(spins: np.ndarray, block: int) -> np.ndarray:
    """(L//b, L//b, 3) unit vectors: means over b x b blocks, renormalized.

    Rows and columns past the last whole block are dropped (the lattice is periodic, so
    which ones does not bias the averages); a block whose mean vanishes stays zero.
    """
    s = np.asarray(spins, dtype=np.float64)
    if s.ndim != 3 or s.shape[-1] != 3:
        raise InputError(f"spins must have shape (Lx, Ly, 3), got {s.shape}")
    if block < 1 or block > min(s.shape[:2]):
        raise InputError(f"block must be in [1, {min(s.shape[:2])}], got {block}")
    if block == 1:
        return s
    nx, ny = s.shape[0] // block, s.shape[1] // block
    mean = s[: nx * block, : ny * block].reshape(nx, block, ny, block, 3).mean(axis=(1, 3))
    norm = np.linalg.norm(mean, axis=-1, keepdims=True)
    return np.divide(mean, norm, out=np.zeros_like(mean), where=norm > 1e-12)


def bond_densities(spins: np.ndarray) -> tuple[float, float, float, float]:
    """(exchange bond deviation, DMI energy per unit lambda, <Sz^2>, <|Sz|>) per site,
    from ``spinfer.physics.energy.local_energy_terms`` at unit couplings (its bond and sign
    conventions, not a second copy of them)."""
    s = np.ascontiguousarray(spins, dtype=np.float64)
    n = s.shape[0] * s.shape[1]
    e_ex, e_dmi, e_an = local_energy_terms(s, 1.0, 1.0, 1.0)
    return 2.0 + e_ex / n, e_dmi / n, -e_an / n, float(np.abs(s[..., 2]).mean())


def dipolar_density(spins: np.ndarray) -> float:
    """E_dip / (D N): the dipolar energy per site and unit D, fully periodic lattice sum."""
    s = np.ascontiguousarray(spins, dtype=np.float64)
    kernel = dipolar_kernel(s.shape[0], s.shape[1], None)
    return float(kernel.energy(s, 1.0) / (s.shape[0] * s.shape[1]))


def bond_descriptors(
    spins: np.ndarray, scales: tuple[int, ...] = DESCRIPTOR_SCALES, dipolar: bool = True
) -> np.ndarray:
    """The four bond densities at each scale (scale-major), then the dipolar density:
    (4 * len(scales) + 1,), or without it (``dipolar=False``).

    The exchange deviation enters as its logarithm: it spans decades between a relaxed
    texture (~1e-3) and a noisy one (~1).
    """
    out = []
    for b in scales:
        dev, dmi, sz2, abs_sz = bond_densities(coarse_grain(spins, b))
        out += [np.log(max(dev, 0.0) + _LOG_FLOOR), dmi, sz2, abs_sz]
    if dipolar:
        out.append(dipolar_density(spins))
    return np.asarray(out)


def descriptor_names(
    scales: tuple[int, ...] = DESCRIPTOR_SCALES, dipolar: bool = True
) -> list[str]:
    names = [f"{name}@{b}" for b in scales for name in DESCRIPTOR_NAMES]
    return [*names, "dipolar_density@1"] if dipolar else names
