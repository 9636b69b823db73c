"""Symmetries of the Hamiltonian that leave (lambda, K, D) unchanged, as image transforms.

On the periodic square lattice, H (exchange, interfacial DMI, dipolar, uniaxial K) is
invariant under

* the point group D4 of the lattice, acting on positions and on (Sx, Sy) alike, Sz fixed
  (for the mirrors this is the axial-vector action composed with time reversal; interfacial
  DMI, z x r_ij . (S_i x S_j), is invariant under both);
* time reversal S -> -S (every term is even in S);
* periodic translations.

``apply_symmetry`` maps a (..., 3, Lx, Ly) image [c, ix, iy] with one of the 16 elements
of D4 x {1, -1}; ``random_symmetry`` adds a random translation. The energy invariance of
every element is tested against the Hamiltonian itself (tests/physics).
"""

from __future__ import annotations

import numpy as np
import torch

N_ELEMENTS = 16


def apply_symmetry(x: torch.Tensor, element: int) -> torch.Tensor:
    """Element ``0 <= element < 16``: bits 0-1 rotation by k * 90 degrees, bit 2 mirror
    ix -> -ix, bit 3 time reversal. ``x`` is (..., 3, Lx, Ly) (square lattices only for
    odd rotations)."""
    k, mirror, flip = element & 3, bool(element & 4), bool(element & 8)
    sx, sy, sz = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    if mirror:  # position ix -> -ix (periodic), in-plane spin (Sx, Sy) -> (-Sx, Sy)
        sx, sy, sz = (_mirror(-sx), _mirror(sy), _mirror(sz))
    for _ in range(k):  # position (ix, iy) -> (-iy, ix), spin (Sx, Sy) -> (-Sy, Sx)
        sx, sy, sz = _rot(-sy), _rot(sx), _rot(sz)
    out = torch.stack([sx, sy, sz], dim=-3)
    return -out if flip else out


def _mirror(a: torch.Tensor) -> torch.Tensor:
    """a'[ix] = a[-ix mod L]."""
    return torch.roll(torch.flip(a, dims=(-2,)), shifts=1, dims=-2)


def _rot(a: torch.Tensor) -> torch.Tensor:
    """a'[ix', iy'] = a[ix, iy] with (ix', iy') = (-iy, ix) mod L: a'[p, q] = a[q, -p]."""
    return torch.roll(torch.flip(a.transpose(-2, -1), dims=(-2,)), shifts=1, dims=-2)


def random_symmetry(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random element of D4 x {1, -1} followed by a random periodic translation."""
    out = apply_symmetry(x, int(rng.integers(N_ELEMENTS)))
    shift = (int(rng.integers(out.shape[-2])), int(rng.integers(out.shape[-1])))
    return torch.roll(out, shifts=shift, dims=(-2, -1))
