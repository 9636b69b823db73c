"""Minimisation (L-BFGS, velocity projection): torque-free states; the annealer ends with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spinfer.errors import InputError
from spinfer.physics.anneal import Schedule, anneal, descend
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian, energy_terms
from spinfer.physics.minimize import MINIMIZERS, minimize
from spinfer.physics.observables import max_torque

HAM = Hamiltonian(dmi=0.2, anisotropy=0.75, dipolar=0.1)
ANNEALED = Schedule(sweeps=60, relax_sweeps=0)


def _annealed(size: int = 16, seed: int = 3) -> np.ndarray:
    return anneal(HAM, (size, size), ANNEALED, seed=seed).spins


@pytest.mark.parametrize("method", MINIMIZERS)
def test_minimize_reaches_the_torque_threshold_and_lowers_the_energy(method):
    spins = _annealed()
    kernel = dipolar_kernel(16, 16)
    before = energy_terms(spins, HAM).total
    steps, torque = minimize(spins, HAM, kernel, 20000, torque=1e-4, method=method)
    assert 0 < steps < 20000
    assert torque < 1e-4
    # the reported torque is the texture's own, to the single-precision dipolar field
    assert max_torque(spins, HAM) == pytest.approx(torque, abs=1e-5)
    assert energy_terms(spins, HAM).total < before
    np.testing.assert_allclose(np.linalg.norm(spins, axis=-1), 1.0, atol=1e-12)


def test_lbfgs_reaches_the_same_state_in_far_fewer_steps():
    kernel = dipolar_kernel(24, 24)
    ham = Hamiltonian(dmi=0.2, anisotropy=0.9, dipolar=0.1)
    start = anneal(ham, (24, 24), ANNEALED, seed=4).spins
    vp, lbfgs = start.copy(), start.copy()
    n_vp, t_vp = minimize(vp, ham, kernel, 50000, torque=1e-5)
    n_lb, t_lb = minimize(lbfgs, ham, kernel, 50000, torque=1e-5, method="lbfgs")
    assert t_vp < 1e-5 and t_lb < 1e-5
    assert n_lb < n_vp / 3
    e_vp, e_lb = energy_terms(vp, ham).total, energy_terms(lbfgs, ham).total
    assert e_lb == pytest.approx(e_vp, abs=1e-6 * abs(e_vp))
    assert np.abs(vp - lbfgs).max() < 1e-3  # the same minimum, spin by spin


def test_minimize_descends_faster_than_the_overdamped_step():
    kernel = dipolar_kernel(16, 16)
    quick, slow = _annealed(), _annealed()
    minimize(quick, HAM, kernel, 300, torque=1e-12)
    descend(slow, HAM, kernel, 300, torque=1e-12)
    assert energy_terms(quick, HAM).total < energy_terms(slow, HAM).total
    assert max_torque(quick, HAM) < max_torque(slow, HAM)


@pytest.mark.parametrize("method", MINIMIZERS)
def test_a_stationary_state_takes_no_step(method):
    up = np.zeros((12, 12, 3))
    up[..., 2] = 1.0  # uniform +z: the field is along z at every site, for every coupling
    steps, torque = minimize(up, HAM, dipolar_kernel(12, 12), 100, torque=1e-6, method=method)
    assert steps == 0 and torque < 1e-6
    assert (up[..., 2] == 1.0).all()


@pytest.mark.parametrize("method", MINIMIZERS)
def test_zero_steps_only_measure_the_torque(method):
    spins = _annealed()
    copy = spins.copy()
    steps, torque = minimize(spins, HAM, dipolar_kernel(16, 16), 0, torque=1e-9, method=method)
    assert steps == 0
    np.testing.assert_array_equal(spins, copy)
    assert torque == pytest.approx(max_torque(copy, HAM), abs=1e-5)


@pytest.mark.parametrize("method", MINIMIZERS)
def test_anneal_ends_minimised_deterministically_and_records_the_torque(method):
    schedule = dataclasses.replace(
        ANNEALED, minimize_steps=400, minimize_torque=1e-3, minimizer=method
    )
    raw = anneal(HAM, (16, 16), ANNEALED, seed=5)
    a = anneal(HAM, (16, 16), schedule, seed=5)
    b = anneal(HAM, (16, 16), schedule, seed=5)
    np.testing.assert_array_equal(a.spins, b.spins)
    assert raw.minimize_steps_done == 0 and raw.max_torque > 1e-3
    assert 0 < a.minimize_steps_done <= 400
    assert a.max_torque < raw.max_torque
    assert a.max_torque < 1e-3 or a.minimize_steps_done == 400
    assert a.max_torque == pytest.approx(max_torque(a.spins, HAM), abs=1e-5)
    assert energy_terms(a.spins, HAM).total < energy_terms(raw.spins, HAM).total


@pytest.mark.parametrize(
    "bad", [{"minimize_steps": -1}, {"minimize_torque": 0.0}, {"minimizer": "bfgs"}]
)
def test_bad_minimisation_settings_are_refused(bad):
    with pytest.raises(InputError, match="minimi"):
        Schedule(**bad)
    with pytest.raises(InputError, match="unknown minimizer 'cg'"):
        minimize(_annealed(), HAM, dipolar_kernel(16, 16), 10, 1e-3, method="cg")


def test_coupling_types_do_not_change_the_texture():
    # the store hands numpy scalars, callers Python floats: the same texture either way
    schedule = dataclasses.replace(ANNEALED, minimize_steps=100)
    as_float = Hamiltonian(dmi=0.2, anisotropy=0.75, dipolar=0.1)
    as_numpy = Hamiltonian(
        dmi=np.float64(0.2), anisotropy=np.float64(0.75), dipolar=np.float64(0.1)
    )
    a = anneal(as_float, (16, 16), schedule, seed=9).spins
    b = anneal(as_numpy, (16, 16), schedule, seed=9).spins
    np.testing.assert_array_equal(a, b)
