"""Metropolis kernels and annealing: bookkeeping, detailed energy changes, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spinfer.errors import InputError
from spinfer.physics.anneal import PROTOCOL, Schedule, anneal, descend, rng_state
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian, effective_field, energy_terms
from spinfer.physics.montecarlo import (
    exact_metropolis_sweep,
    metropolis_sweep,
    random_spins,
    relaxation_sweep,
)
from spinfer.physics.observables import domain_period, max_torque, mean_abs_sz, neel_chirality

HAM = Hamiltonian(dmi=0.3, anisotropy=0.6, dipolar=0.12)
FAST = Schedule(sweeps=150, relax_sweeps=30)


def _setup(size: int, radius: int, seed: int = 1):
    state = rng_state(seed)
    spins = random_spins(size, size, state)
    kernel = dipolar_kernel(size, size)
    return state, spins, kernel, kernel.stencil(radius)


def test_near_field_bookkeeping_is_exact_when_stencil_covers_lattice():
    # 5x5 lattice, radius 2: the stencil is the whole periodic kernel, so far + near must
    # equal a fresh FFT field after any number of accepted moves.
    state, spins, kernel, near = _setup(5, 2)
    far = kernel.field(spins)
    near_field = np.zeros_like(spins)
    for beta in (0.5, 2.0, 10.0):
        acc = metropolis_sweep(spins, far, near_field, near, 1.0, 0.3, 0.6, 0.12, beta, 0.8, state)
        assert acc > 0
        np.testing.assert_allclose(far + near_field, kernel.field(spins), atol=1e-12)


def test_relaxation_energy_change_equals_energy_difference():
    _state, spins, kernel, near = _setup(5, 2, seed=4)
    before = energy_terms(spins, HAM).total
    far = kernel.field(spins)
    near_field = np.zeros_like(spins)
    gain = relaxation_sweep(
        spins, far, near_field, near, 1.0, HAM.dmi, HAM.anisotropy, HAM.dipolar
    )
    after = energy_terms(spins, HAM).total
    assert gain < 0
    assert after - before == pytest.approx(gain, rel=1e-9, abs=1e-9)


def test_fast_and_exact_sweeps_agree_when_stencil_is_complete():
    """Same random numbers, same acceptance decisions: the two variants coincide."""
    s1, spins1, kernel, near = _setup(5, 2, seed=7)
    s2 = s1.copy()
    spins2 = spins1.copy()
    far = kernel.field(spins1)
    near_field = np.zeros_like(spins1)
    dip2 = kernel.field(spins2)
    full = np.ascontiguousarray(kernel.real)
    for beta in (0.3, 1.0, 5.0, 20.0):
        a = metropolis_sweep(spins1, far, near_field, near, 1.0, 0.3, 0.6, 0.12, beta, 0.7, s1)
        b = exact_metropolis_sweep(spins2, dip2, full, 1.0, 0.3, 0.6, 0.12, beta, 0.7, s2)
        assert a == b
    np.testing.assert_allclose(spins1, spins2, atol=1e-10)


def test_metropolis_samples_boltzmann_for_single_spin_in_field():
    """A decoupled spin in a field h along z: <Sz> = coth(beta h) - 1/(beta h)."""
    state = rng_state(3)
    spins = random_spins(8, 8, state)
    zero = np.zeros_like(spins)
    near = np.zeros((1, 1, 4))
    far = zero.copy()
    # exchange 0, anisotropy 0, dipolar 0: a uniform external field is mimicked by far * D
    far[..., 2] = 1.0
    beta, samples = 2.0, []
    for sweep in range(3000):
        metropolis_sweep(spins, far, zero, near, 0.0, 0.0, 0.0, 1.0, beta, 1.0, state)
        if sweep > 200:
            samples.append(spins[..., 2].mean())
    expected = 1 / np.tanh(beta) - 1 / beta
    assert np.mean(samples) == pytest.approx(expected, abs=0.01)


def test_same_seed_same_texture_bit_for_bit():
    a = anneal(HAM, (16, 16), FAST, seed=11).spins
    b = anneal(HAM, (16, 16), FAST, seed=11).spins
    c = anneal(HAM, (16, 16), FAST, seed=12).spins
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-12)


def test_seed_sequence_and_int_seeds_are_both_reproducible():
    seq = np.random.SeedSequence([2020, 5])
    a = anneal(HAM, (8, 8), FAST, seed=seq).spins
    b = anneal(HAM, (8, 8), FAST, seed=np.random.SeedSequence([2020, 5])).spins
    assert a.tobytes() == b.tobytes()


def test_rectangular_lattice_anneals():
    out = anneal(HAM, (12, 20), dataclasses.replace(FAST, sweeps=20), seed=0).spins
    assert out.shape == (12, 20, 3)


@pytest.mark.slow
def test_out_of_plane_above_kshape_in_plane_below():
    d = 0.1
    kshape = dipolar_kernel(32, 32).kshape() * d
    sched = Schedule(sweeps=300, relax_sweeps=50)
    above = [
        anneal(Hamiltonian(0.0, 1.15 * kshape, d), (32, 32), sched, s).spins for s in range(2)
    ]
    below = [anneal(Hamiltonian(0.0, 0.6 * kshape, d), (32, 32), sched, s).spins for s in range(2)]
    assert all(mean_abs_sz(s) > 0.5 for s in above)
    assert all(mean_abs_sz(s) < 0.5 for s in below)


@pytest.mark.slow
def test_dmi_selects_neel_walls_of_reference_chirality():
    d = 0.12
    kshape = dipolar_kernel(32, 32).kshape() * d
    sched = Schedule(sweeps=300, relax_sweeps=50)
    chi = {}
    for ratio in (3.0, 0.0, -3.0):
        ham = Hamiltonian(ratio * d, 1.1 * kshape, d)
        chi[ratio] = np.mean(
            [neel_chirality(anneal(ham, (32, 32), sched, s).spins) for s in range(2)]
        )
    assert chi[3.0] > 0.5
    assert chi[-3.0] < -0.5
    assert abs(chi[0.0]) < 0.3


def test_domain_period_of_stripes():
    x = np.arange(40)
    spins = np.zeros((40, 40, 3))
    spins[..., 2] = np.sign(np.sin(2 * np.pi * x / 10) + 1e-9)[:, None]
    assert domain_period(spins) == pytest.approx(10, rel=0.25)


@pytest.mark.parametrize("theta", [0.0, 0.3, np.pi / 4, 1.2, np.pi / 2])
def test_max_torque_of_a_uniform_tilt_is_the_anisotropy_torque(theta):
    """Uniform spins at theta from z: the exchange field is parallel, interfacial DMI cancels
    between opposite bonds, so only E_K = -K Sz^2 twists them: |S x 2K Sz z| = K sin 2 theta."""
    spins = np.zeros((8, 8, 3))
    spins[..., 0], spins[..., 2] = np.sin(theta), np.cos(theta)
    ham = Hamiltonian(dmi=0.3, anisotropy=0.7, dipolar=0.0)
    assert max_torque(spins * 2.0, ham) == pytest.approx(0.7 * np.sin(2 * theta), abs=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_end": 0.0},
        {"t_start": 0.1, "t_end": 0.2},
        {"sweeps": 0},
        {"cooling": "x"},
        {"relax": "newton"},
    ],
)
def test_bad_schedule_is_refused(kwargs):
    with pytest.raises(InputError):
        Schedule(**kwargs)


def test_tiny_lattice_is_refused():
    with pytest.raises(InputError, match="4x4"):
        anneal(HAM, (3, 8), FAST, seed=0)


def test_a_fixed_schedule_draws_itself_and_a_randomized_one_draws_per_seed():
    assert FAST.draw(3) is FAST
    rand = dataclasses.replace(FAST, randomize=True)
    drawn = [rand.draw(seed) for seed in range(400)]
    assert rand.draw(17) == drawn[17] and not any(d.randomize for d in drawn)
    assert rand.draw(np.random.SeedSequence(17)) == drawn[17]
    lo, hi = PROTOCOL["sweeps_factor"]
    q = PROTOCOL["quench_sweeps_factor"]
    for d in drawn:
        factor = d.sweeps / FAST.sweeps / (q if d.cooling == "quench" else 1.0)
        assert lo * 0.95 <= factor <= hi * 1.05
        assert FAST.t_start * PROTOCOL["t_start_factor"][0] <= d.t_start
        assert d.t_start <= FAST.t_start * PROTOCOL["t_start_factor"][1]
    cooling = [d.cooling for d in drawn]
    for law, p in PROTOCOL["cooling"].items():
        assert abs(cooling.count(law) / 400 - p) < 0.08, law
    assert "instant" not in cooling  # the minimiser alone is a fixed schedule's choice only
    relax = [d.relax for d in drawn]
    assert abs(relax.count("descent") / 400 - PROTOCOL["relax"]["descent"]) < 0.08
    lengths = [d.sweeps for d in drawn if d.cooling != "quench"]
    assert max(lengths) / min(lengths) > 8  # about a decade of cooling lengths


def test_a_randomized_anneal_is_the_anneal_of_its_drawn_protocol():
    rand = dataclasses.replace(FAST, randomize=True)
    for seed in range(4):
        a = anneal(HAM, (12, 12), rand, seed=seed).spins
        b = anneal(HAM, (12, 12), rand.draw(seed), seed=seed).spins
        np.testing.assert_array_equal(a, b)


def test_an_instant_quench_is_the_minimiser_alone_on_the_random_start():
    sch = Schedule(cooling="instant", sweeps=0, minimize_steps=3000, minimize_torque=1e-3)
    assert sch.temperatures().size == 0
    r = anneal(HAM, (16, 16), sch, seed=5)
    assert np.isnan(r.acceptance) and r.relax_sweeps_done == 0
    assert r.max_torque < 1e-3 and 0 < r.minimize_steps_done < 3000
    start = random_spins(16, 16, rng_state(5))
    assert energy_terms(r.spins, HAM).total < energy_terms(start, HAM).total - 0.5 * 16 * 16
    np.testing.assert_array_equal(r.spins, anneal(HAM, (16, 16), sch, seed=5).spins)
    with pytest.raises(InputError, match=r"instant.*minimize_steps"):
        Schedule(cooling="instant", minimize_steps=0)


def test_quench_holds_the_final_temperature():
    temps = dataclasses.replace(FAST, cooling="quench").temperatures()
    assert len(temps) == FAST.sweeps and (temps == FAST.t_end).all()


def test_overdamped_descent_lowers_the_energy_and_the_torque():
    ham = Hamiltonian(dmi=0.2, anisotropy=0.7, dipolar=0.1)
    spins = anneal(ham, (16, 16), dataclasses.replace(FAST, relax_sweeps=0), seed=2).spins
    kernel = dipolar_kernel(16, 16)

    def torque(s):
        return np.linalg.norm(np.cross(s, effective_field(s, ham)), axis=-1).max()

    energies, torques = [energy_terms(spins, ham).total], [torque(spins)]
    for _ in range(5):
        descend(spins, ham, kernel, 40)
        energies.append(energy_terms(spins, ham).total)
        torques.append(torque(spins))
    assert all(np.diff(energies) <= 1e-9)
    assert torques[-1] < 0.5 * torques[0]
    np.testing.assert_allclose(np.linalg.norm(spins, axis=-1), 1.0, atol=1e-12)
    # a relaxed texture stops early: no step taken once the torque is below the threshold
    assert descend(spins, ham, kernel, 5000, torque=torques[-1] * 1.01) == 0
