"""Energy terms against brute-force pair sums, analytic states, gradients and symmetry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinfer.errors import InputError
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian, effective_field, energy_terms
from tests import reference

HAM = Hamiltonian(dmi=0.27, anisotropy=0.43, dipolar=0.11)


@pytest.mark.parametrize("shape", [(4, 4), (5, 7), (8, 6)])
def test_local_terms_match_pair_sums(shape):
    s = reference.random_spins(*shape, seed=sum(shape))
    got = energy_terms(s, HAM)
    assert got.exchange == pytest.approx(reference.exchange(s), rel=1e-12, abs=1e-12)
    assert got.dmi == pytest.approx(reference.dmi(s, HAM.dmi), rel=1e-12, abs=1e-12)
    assert got.anisotropy == pytest.approx(reference.anisotropy(s, HAM.anisotropy), rel=1e-12)


@pytest.mark.parametrize("shape,images", [((4, 4), 0), ((5, 4), 1), ((6, 6), 2), ((4, 7), 3)])
def test_dipolar_block_matches_pair_sum(shape, images):
    s = reference.random_spins(*shape, seed=images + 11)
    got = energy_terms(s, HAM, images=images).dipolar
    assert got == pytest.approx(reference.dipolar(s, HAM.dipolar, images), rel=1e-10)


def test_periodic_kernel_is_large_block_limit():
    s = reference.random_spins(6, 6, seed=5)
    periodic = energy_terms(s, HAM).dipolar
    big = reference.dipolar(s, HAM.dipolar, images=40)
    assert periodic == pytest.approx(big, rel=2e-3, abs=1e-4)


def test_analytic_uniform_states():
    n = 12 * 12
    up = np.zeros((12, 12, 3))
    up[..., 2] = 1
    e = energy_terms(up, HAM)
    assert e.exchange == pytest.approx(-2 * n)
    assert e.dmi == pytest.approx(0.0, abs=1e-12)
    assert e.anisotropy == pytest.approx(-HAM.anisotropy * n)
    # out-of-plane uniform: + (D/2) sum' 1/r^3 per spin
    assert e.dipolar / n == pytest.approx(0.5 * HAM.dipolar * 9.0336217, rel=1e-6)


def test_single_neel_spiral_dmi_energy_is_analytic():
    """A cycloid rotating z -> +x along x with pitch q: E_dmi = -lam N sin(q)."""
    lx, ly = 12, 4
    q = 2 * np.pi / lx
    phase = q * np.arange(lx)
    s = np.zeros((lx, ly, 3))
    s[..., 0] = np.sin(phase)[:, None]
    s[..., 2] = np.cos(phase)[:, None]
    e = energy_terms(s, Hamiltonian(dmi=0.3, anisotropy=0.0, dipolar=0.0))
    assert e.dmi == pytest.approx(-0.3 * lx * ly * np.sin(q), rel=1e-12)
    assert e.exchange == pytest.approx(-lx * ly * (np.cos(q) + 1), rel=1e-12)


def test_field_is_minus_gradient():
    s = reference.random_spins(6, 5, seed=3)
    h = effective_field(s, HAM)
    eps = 1e-6
    for idx in [(0, 0, 0), (2, 3, 1), (5, 4, 2), (3, 0, 2), (1, 4, 0)]:
        plus, minus = s.copy(), s.copy()
        plus[idx] += eps
        minus[idx] -= eps
        grad = (energy_terms(plus, HAM).total - energy_terms(minus, HAM).total) / (2 * eps)
        assert -grad == pytest.approx(h[idx], rel=1e-6, abs=1e-7)


def test_energy_is_minus_half_field_for_bilinear_terms():
    s = reference.random_spins(8, 8, seed=9)
    h = effective_field(s, HAM)
    assert energy_terms(s, HAM).total == pytest.approx(-0.5 * np.sum(s * h), rel=1e-12)


def rotate90(s: np.ndarray) -> np.ndarray:
    """Rotate positions and vector components together by +90 degrees about z."""
    lx, ly, _ = s.shape
    out = np.empty((ly, lx, 3))
    for x in range(lx):
        for y in range(ly):
            # (x, y) -> (-y, x); (Sx, Sy, Sz) -> (-Sy, Sx, Sz)
            out[(-y) % ly, x] = (-s[x, y, 1], s[x, y, 0], s[x, y, 2])
    return out


@pytest.mark.parametrize("shape", [(8, 8), (7, 7)])
def test_rotation_by_90_degrees_keeps_every_term(shape):
    """Exact for the fully periodic sum (the default). The reference's finite image block is
    centred on the sample, not on each spin, so it is only invariant up to its truncation."""
    images = None
    s = reference.random_spins(*shape, seed=21)
    before = energy_terms(s, HAM, images).as_dict()
    r = s
    for _ in range(4):
        r = rotate90(r)
        after = energy_terms(r, HAM, images).as_dict()
        for name, value in before.items():
            assert after[name] == pytest.approx(value, rel=1e-10, abs=1e-10), name
    np.testing.assert_allclose(r, s)


def test_positions_rotated_without_components_change_energy():
    """The control: moving positions only is not a symmetry (DMI and dipolar change)."""
    s = reference.random_spins(8, 8, seed=22)
    moved = np.rot90(s, k=1, axes=(0, 1))
    a, b = energy_terms(s, HAM), energy_terms(moved, HAM)
    assert abs(a.dmi - b.dmi) > 1e-3


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 7), st.integers(0, 7), st.integers(0, 10**6))
def test_translation_invariance(dx, dy, seed):
    s = reference.random_spins(8, 8, seed=seed)
    a = energy_terms(s, HAM).as_dict()
    b = energy_terms(np.roll(s, (dx, dy), axis=(0, 1)), HAM).as_dict()
    for name in a:
        assert b[name] == pytest.approx(a[name], rel=1e-10, abs=1e-10)


@settings(max_examples=15, deadline=None)
@given(st.floats(0, 2 * np.pi), st.floats(0, np.pi), st.integers(0, 10**6))
def test_exchange_invariant_under_global_rotation(alpha, beta, seed):
    s = reference.random_spins(6, 6, seed=seed)
    ca, sa, cb, sb = np.cos(alpha), np.sin(alpha), np.cos(beta), np.sin(beta)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    rotated = s @ (rx @ rz).T
    ham = Hamiltonian(0, 0, 0)
    assert energy_terms(rotated, ham).exchange == pytest.approx(energy_terms(s, ham).exchange)


def test_inplane_reversal_flips_only_dmi():
    s = reference.random_spins(8, 8, seed=4)
    flipped = s * np.array([-1.0, -1.0, 1.0])
    a, b = energy_terms(s, HAM), energy_terms(flipped, HAM)
    assert b.dmi == pytest.approx(-a.dmi, rel=1e-12)
    for name in ("exchange", "dipolar", "anisotropy"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-12)


def test_rectangular_experimental_size_kernel():
    kernel = dipolar_kernel(37, 40)
    s = reference.random_spins(37, 40, seed=1)
    h = kernel.field(s)
    assert h.shape == (37, 40, 3)
    assert kernel.kshape() == pytest.approx(6.7752162, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dmi": float("nan"), "anisotropy": 0.1, "dipolar": 0.1}, "finite"),
        ({"dmi": 0.1, "anisotropy": float("inf"), "dipolar": 0.1}, "finite"),
        ({"dmi": 0.1, "anisotropy": 0.1, "dipolar": -0.1}, "dipolar"),
        ({"dmi": 50.0, "anisotropy": 0.1, "dipolar": 0.1}, "dmi"),
    ],
)
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        Hamiltonian(**kwargs)


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.zeros((3, 3, 3)), "at least 4x4"),
        (np.zeros((8, 8)), "shape"),
        (np.zeros((8, 8, 2)), "shape"),
        (np.full((8, 8, 3), np.nan), "NaN"),
    ],
)
def test_bad_arrays_are_refused(arr, match):
    with pytest.raises(InputError, match=match):
        energy_terms(arr, HAM)
