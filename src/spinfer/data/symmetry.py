"""Symmetries of the Hamiltonian as image operations, for augmentation and test-time averaging.

On the periodic square lattice, H (exchange, interfacial DMI, dipolar, uniaxial K) is
invariant under

* ``rotate``: rotations by 90 degrees, acting on positions and on (Sx, Sy) alike;
* ``mirror``: the in-plane mirror ix -> -ix with (Sx, Sy, Sz) -> (-Sx, Sy, Sz) (the
  axial-vector action composed with time reversal; interfacial DMI, z x r_ij . (S_i x S_j),
  is invariant under both); with ``rotate`` it generates all four mirrors of D4;
* ``time_reversal``: S -> -S (every term is even in S);
* ``translate``: periodic translations (augmentation only: the models are convolutional).

One operation changes the label instead:

* ``inplane_reversal``: S -> (-Sx, -Sy, Sz) keeps exchange, dipolar and anisotropy energies
  and reverses the DMI energy, so a texture of (lambda, K, D) becomes one of (-lambda, K, D).

Every operation is proven against the Hamiltonian itself (tests/physics/test_symmetry.py):
invariant ones leave each energy term unchanged, the label-changing one reverses E_DMI and
nothing else. Moving positions without transforming the spin components is not a symmetry
(it changes the DMI and dipolar energies) and is not offered.

A group element is an integer ``0 <= e < 32``: bits 0-1 rotation by k * 90 degrees, bit 2
mirror, bit 3 time reversal, bit 4 in-plane reversal (the element's ``lambda_sign`` is -1).
Images are (..., 3, Lx, Ly) tensors indexed [c, ix, iy].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

N_ELEMENTS = 32
#: the point operations' bits (their names are config.OPERATIONS, which validates them; this
#: module imports no config, so the served model loads without it)
_BITS = {"rotate": 0b11, "mirror": 0b100, "time_reversal": 0b1000, "inplane_reversal": 0b10000}


def group_elements(names: Iterable[str]) -> tuple[int, ...]:
    """Every element of the group the named point operations generate (identity first)."""
    mask = 0
    for name in names:
        mask |= _BITS.get(name, 0)
    return tuple(e for e in range(N_ELEMENTS) if e & ~mask == 0)


def lambda_sign(element: int) -> int:
    """-1 when the element reverses lambda (in-plane reversal), else +1."""
    return -1 if element & 0b10000 else 1


def apply_symmetry(x: torch.Tensor, element: int) -> torch.Tensor:
    """The image of ``x`` (..., 3, Lx, Ly) under one group element (square lattices only
    for odd rotations)."""
    k, mirror = element & 3, bool(element & 4)
    flip, inplane = bool(element & 8), bool(element & 16)
    sx, sy, sz = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    if mirror:  # position ix -> -ix (periodic), in-plane spin (Sx, Sy) -> (-Sx, Sy)
        sx, sy, sz = (_mirror(-sx), _mirror(sy), _mirror(sz))
    for _ in range(k):  # position (ix, iy) -> (-iy, ix), spin (Sx, Sy) -> (-Sy, Sx)
        sx, sy, sz = _rot(-sy), _rot(sx), _rot(sz)
    if inplane:  # spins only: (Sx, Sy) -> (-Sx, -Sy)
        sx, sy = -sx, -sy
    out = torch.stack([sx, sy, sz], dim=-3)
    return -out if flip else out


def _mirror(a: torch.Tensor) -> torch.Tensor:
    """a'[ix] = a[-ix mod L]."""
    return torch.roll(torch.flip(a, dims=(-2,)), shifts=1, dims=-2)


def _rot(a: torch.Tensor) -> torch.Tensor:
    """a'[ix', iy'] = a[ix, iy] with (ix', iy') = (-iy, ix) mod L: a'[p, q] = a[q, -p]."""
    return torch.roll(torch.flip(a.transpose(-2, -1), dims=(-2,)), shifts=1, dims=-2)


def flip_lambda(y_n: torch.Tensor | np.ndarray, offset: float = 1.0):
    """Normalized targets of the lambda-reversed texture: lambda_N -> offset - lambda_N
    (offset = -2 lo / span, 1 for the symmetric lambda range the check asks for)."""
    out = y_n.clone() if isinstance(y_n, torch.Tensor) else np.array(y_n, dtype=np.float64)
    out[..., 0] = offset - out[..., 0]
    return out


class Augmenter:
    """A random element of the group ``operations`` generate, then (with ``translate``) a
    random periodic translation, per image; labels follow the label-changing elements."""

    def __init__(self, operations: Sequence[str], lambda_offset: float = 1.0) -> None:
        self.elements = group_elements(operations)
        self.translate = "translate" in operations
        self.offset = lambda_offset

    def draw(
        self, n: int, shape: tuple[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each of ``n`` images' element and periodic shift (zero without ``translate``),
        drawn image by image: element, then the shift along x and y."""
        elements = np.empty(n, dtype=np.int64)
        shifts = np.zeros((n, 2), dtype=np.int64)
        for i in range(n):
            elements[i] = self.elements[int(rng.integers(len(self.elements)))]
            if self.translate:
                shifts[i] = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
        return elements, shifts

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, L, L) and targets (B, 3), on whatever device they are on: one
        tensor operation per element drawn and one gather per axis for the shifts, not a
        loop over images (the images are permuted and negated exactly, so the result does
        not depend on how it is computed)."""
        elements, shifts = self.draw(len(x), (x.shape[-2], x.shape[-1]), rng)
        out, labels = torch.empty_like(x), y.clone()
        for e in np.unique(elements).tolist():
            rows = torch.from_numpy(np.flatnonzero(elements == e)).to(x.device)
            out[rows] = apply_symmetry(x[rows], e)
            if lambda_sign(e) < 0:
                labels[rows] = flip_lambda(y[rows], self.offset)
        if self.translate:
            out = roll_each(out, shifts)
        return out, labels


def roll_each(x: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Image b of (B, C, Lx, Ly) rolled periodically by shifts[b] = (sx, sy), as
    ``torch.roll(x[b], shifts[b], dims=(-2, -1))``."""
    b, c, lx, ly = x.shape
    s = torch.from_numpy(np.asarray(shifts, dtype=np.int64)).to(x.device)
    rows = (torch.arange(lx, device=x.device)[None, :] - s[:, :1]) % lx
    cols = (torch.arange(ly, device=x.device)[None, :] - s[:, 1:]) % ly
    x = torch.gather(x, 2, rows[:, None, :, None].expand(b, c, lx, ly))
    return torch.gather(x, 3, cols[:, None, None, :].expand(b, c, lx, ly))
