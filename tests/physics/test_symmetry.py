"""Every symmetry used for augmentation leaves each energy term unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinfer.data.symmetry import N_ELEMENTS, apply_symmetry, random_symmetry
from spinfer.physics.energy import Hamiltonian, energy_terms


def _texture(seed: int, size: int = 12) -> np.ndarray:
    """A smooth, chiral-ish random texture (so DMI and dipolar terms are sizeable)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(size, size, 3))
    for _ in range(3):
        s = s + np.roll(s, 1, 0) + np.roll(s, 1, 1)
    return s / np.linalg.norm(s, axis=-1, keepdims=True)


def _as_image(spins: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(spins.transpose(2, 0, 1).copy())


def _as_spins(x: torch.Tensor) -> np.ndarray:
    return x.numpy().transpose(1, 2, 0).copy()


HAM = Hamiltonian(dmi=0.3, anisotropy=0.4, dipolar=0.1)


@pytest.mark.parametrize("element", range(N_ELEMENTS))
def test_each_element_preserves_every_energy_term(element):
    spins = _texture(element)
    before = energy_terms(spins, HAM).as_dict()
    after = energy_terms(_as_spins(apply_symmetry(_as_image(spins), element)), HAM).as_dict()
    for term, value in before.items():
        assert after[term] == pytest.approx(value, rel=1e-9, abs=1e-9), term


def test_the_dmi_sign_would_be_caught():
    """A wrong spin action (rotating positions but not the in-plane spin) changes E_DMI."""
    spins = _texture(1)
    x = _as_image(spins)
    wrong = torch.rot90(x, 1, dims=(-2, -1))
    e0 = energy_terms(spins, HAM).dmi
    assert abs(energy_terms(_as_spins(wrong), HAM).dmi - e0) > 1e-3 * abs(e0)


def test_elements_are_distinct_and_random_symmetry_keeps_unit_length():
    x = _as_image(_texture(3))
    images = {tuple(apply_symmetry(x, e).flatten().tolist()) for e in range(N_ELEMENTS)}
    assert len(images) == N_ELEMENTS
    y = random_symmetry(x, np.random.default_rng(0))
    torch.testing.assert_close((y**2).sum(0), torch.ones(12, 12, dtype=y.dtype))
    assert energy_terms(_as_spins(y), HAM).total == pytest.approx(
        energy_terms(_as_spins(x), HAM).total, rel=1e-9
    )


def test_batched_images_transform_like_single_ones():
    batch = torch.stack([_as_image(_texture(s)) for s in range(3)])
    for e in (1, 6, 13):
        out = apply_symmetry(batch, e)
        for i in range(3):
            torch.testing.assert_close(out[i], apply_symmetry(batch[i], e))
