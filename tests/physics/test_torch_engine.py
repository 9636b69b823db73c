"""The torch engine against the Hamiltonian, against the numba engine, and against itself."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from spinfer.errors import InputError
from spinfer.physics import torch_engine as te
from spinfer.physics.anneal import Schedule, anneal
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian, energy_terms
from spinfer.physics.observables import domain_period, mean_abs_sz, neel_chirality

CPU = torch.device("cpu")


def _lattices(hams, shape, seeds, spins=None):
    lat = te._Lattices(hams, shape, seeds, None, CPU)
    if spins is not None:
        lat.spins = torch.from_numpy(
            np.moveaxis(spins[None], -1, 1).astype(np.float32)
        ).contiguous()
    return lat


def _numpy(lat, b=0):
    return np.moveaxis(lat.spins[b].double().numpy(), 0, -1)


def _total(spins, ham):
    return energy_terms(spins, ham).total


@pytest.mark.parametrize("parity", [0, 1])
def test_energy_change_of_each_move_equals_the_energy_difference(parity):
    """Every proposal's E(new) - E(old) is the energy difference of making that move alone."""
    ham = Hamiltonian(dmi=0.3, anisotropy=0.6, dipolar=0.12)
    rng = np.random.default_rng(3)
    spins = rng.normal(size=(8, 6, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    lat = _lattices([ham], (8, 6), [1], spins)
    beta = torch.tensor([[2.0]])
    _, new, de, _ = lat.proposals(1, parity, beta, torch.tensor([[1.5]]), draw=0)
    base = _numpy(lat)
    before = _total(base, ham)
    sites = lat.sites[parity].numpy()
    for k, site in enumerate(sites):
        moved = base.copy()
        moved[site // 6, site % 6] = new[0, :, k].double().numpy()
        assert _total(moved, ham) - before == pytest.approx(float(de[0, k]), abs=2e-5)


def test_a_half_sweep_changes_the_energy_by_its_moves_and_their_mutual_dipolar_term():
    """Checkerboard: exchange and DMI partners never move together, so a half-sweep's energy
    change is the sum of its moves plus only the dipolar coupling between moved spins."""
    ham = Hamiltonian(dmi=-0.25, anisotropy=0.4, dipolar=0.1)
    rng = np.random.default_rng(5)
    spins = rng.normal(size=(10, 10, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    lat = _lattices([ham], (10, 10), [2], spins)
    before = _numpy(lat)
    _, _, de, ok = lat.proposals(1, 0, torch.tensor([[1.0]]), torch.tensor([[0.8]]), draw=4)
    lat.half_sweep(1, 0, torch.tensor([[1.0]]), torch.tensor([[0.8]]), draw=4)
    after = _numpy(lat)
    delta = after - before
    assert ok.sum() > 10
    kernel = dipolar_kernel(10, 10)
    mutual = float(np.sum(delta * kernel.field(delta)))
    gxx, gyy, gxy, gzz = kernel.self_term  # each moved spin with its own images
    dx, dy, dz = delta[..., 0], delta[..., 1], delta[..., 2]
    own = float(np.sum(gxx * dx * dx + gyy * dy * dy + 2 * gxy * dx * dy + gzz * dz * dz))
    expected = float(de[ok].double().sum()) - 0.5 * ham.dipolar * (mutual - own)
    assert _total(after, ham) - _total(before, ham) == pytest.approx(expected, abs=1e-4)


def test_without_dipolar_a_half_sweep_is_exactly_its_moves():
    ham = Hamiltonian(dmi=0.4, anisotropy=0.3, dipolar=0.0)
    lat = _lattices([ham], (8, 8), [7])
    before = _numpy(lat)
    _, _, de, ok = lat.proposals(1, 1, torch.tensor([[0.5]]), torch.tensor([[1.0]]), draw=0)
    lat.half_sweep(1, 1, torch.tensor([[0.5]]), torch.tensor([[1.0]]), draw=0)
    change = _total(_numpy(lat), ham) - _total(before, ham)
    assert change == pytest.approx(float(de[ok].double().sum()), abs=1e-4)


def test_the_proposal_is_isotropic_and_the_uniforms_uniform():
    lat = _lattices([Hamiltonian(0.0, 0.0, 0.0)] * 4, (16, 16), [1, 2, 3, 4])
    u = torch.cat([lat.stream.uniform(d, p, 4).flatten() for d in range(20) for p in (0, 1)])
    assert u.min() >= 0 and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    cos, sin = te._circle(u)
    assert torch.allclose(cos * cos + sin * sin, torch.ones_like(u), atol=1e-6)
    assert abs(float(cos.mean())) < 0.01 and abs(float(sin.mean())) < 0.01
    a, b = lat.stream.uniform(0, 0, 4), lat.stream.uniform(1, 0, 4)
    assert abs(float(torch.corrcoef(torch.stack((a.flatten(), b.flatten())))[0, 1])) < 0.05


def test_exp_and_circle_are_accurate():
    x = -torch.linspace(0, 80, 10001)
    rel = (te._exp_nonpositive(x).double() - torch.exp(x.double())) / torch.exp(x.double())
    assert float(rel.abs().max()) < 1e-6
    u = torch.rand(10000, generator=torch.Generator().manual_seed(0))
    cos, sin = te._circle(u)
    assert torch.allclose(cos.double(), torch.cos(2 * math.pi * u.double()), atol=3e-7)
    assert torch.allclose(sin.double(), torch.sin(2 * math.pi * u.double()), atol=3e-7)


def _equilibrium(engine: str, temp: float, replicas: int = 120, sweeps: int = 100):
    """(energy per spin, <Sz^2>) of independent replicas after ``sweeps`` at ``temp``."""
    ham = Hamiltonian(dmi=0.2, anisotropy=0.5, dipolar=0.1)
    sch = Schedule(t_start=temp, t_end=temp, sweeps=sweeps, relax_sweeps=0)
    seeds = list(range(1000, 1000 + replicas))
    if engine == "torch":
        results = te.anneal_batch([ham] * replicas, (8, 8), sch, seeds, device="cpu")
    else:
        results = [anneal(ham, (8, 8), sch, s) for s in seeds]
    energy = np.array([_total(r.spins, ham) / 64 for r in results])
    sz2 = np.array([np.mean(r.spins[..., 2] ** 2) for r in results])
    return energy, sz2


@pytest.mark.parametrize("temp", [1.2, 0.6])
def test_both_engines_sample_the_same_equilibrium(temp):
    """At a fixed temperature the mean energy and <Sz^2> agree within statistical error."""
    for a, b in zip(_equilibrium("torch", temp), _equilibrium("numba", temp), strict=True):
        error = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) < 4 * error, (a.mean(), b.mean(), error)


CASES = [  # (lambda / D, K / Kshape, D)
    (2.0, 1.15, 0.1),
    (-2.0, 1.15, 0.1),
    (1.5, 0.6, 0.08),
]


@pytest.fixture(scope="module")
def annealed():
    """Both engines on the same parameter sets, three seeds each (32 x 32)."""
    kshape = dipolar_kernel(32, 32).kshape()
    sch = Schedule(sweeps=300, relax_sweeps=50, minimize_steps=800)
    out = {}
    for lam, kk, d in CASES:
        ham = Hamiltonian(dmi=lam * d, anisotropy=kk * kshape * d, dipolar=d)
        seeds = [11, 12, 13]
        out[(lam, kk, d)] = (
            ham,
            [r.spins for r in te.anneal_batch([ham] * 3, (32, 32), sch, seeds, device="cpu")],
            [anneal(ham, (32, 32), sch, s).spins for s in seeds],
        )
    return out


def test_final_textures_agree_between_engines(annealed):
    for (lam, kk, _), (ham, torch_spins, numba_spins) in annealed.items():
        e_t = np.mean([_total(s, ham) for s in torch_spins])
        e_n = np.mean([_total(s, ham) for s in numba_spins])
        assert abs(e_t - e_n) < 0.01 * abs(e_n)
        oop_t = np.mean([mean_abs_sz(s) > 0.5 for s in torch_spins])
        oop_n = np.mean([mean_abs_sz(s) > 0.5 for s in numba_spins])
        assert oop_t == oop_n == (1.0 if kk > 1 else 0.0)
        if kk > 1:  # domains: same period within the seeds' spread, Neel of lambda's sign
            p_t = [domain_period(s) for s in torch_spins]
            p_n = [domain_period(s) for s in numba_spins]
            spread = max(np.std(p_t) + np.std(p_n), 0.1 * np.mean(p_n))
            assert abs(np.mean(p_t) - np.mean(p_n)) < 2 * spread
            for s in torch_spins:
                assert np.sign(neel_chirality(s)) == np.sign(lam)


def test_a_texture_does_not_depend_on_its_batch_or_threads():
    sch = Schedule(sweeps=40, relax_sweeps=10, minimize_steps=30, randomize=True)
    hams = [Hamiltonian(0.2, 0.7, 0.1), Hamiltonian(-0.2, 0.3, 0.1), Hamiltonian(0.1, 0.5, 0.08)]
    seeds = [21, 22, 23]
    together = te.anneal_batch(hams, (12, 12), sch, seeds, device="cpu")
    assert len({sch.draw(s).sweeps for s in seeds}) == 3  # different lengths share a batch
    alone = [
        te.anneal_batch([h], (12, 12), sch, [s], device="cpu")[0]
        for h, s in zip(hams, seeds, strict=True)
    ]
    pairs = te.anneal_batch(hams, (12, 12), sch, seeds, device="cpu", batch=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = te.anneal_batch(hams, (12, 12), sch, seeds, device="cpu")
    finally:
        torch.set_num_threads(threads)
    for t, a, p, o in zip(together, alone, pairs, single, strict=True):
        for other in (a, p, o):
            assert np.array_equal(t.spins, other.spins)
            assert t.max_torque == other.max_torque
            assert np.array_equal([t.acceptance], [other.acceptance], equal_nan=True)
    assert not np.array_equal(together[0].spins, together[1].spins)


def test_results_carry_the_schedule_diagnostics():
    sch = Schedule(sweeps=30, relax_sweeps=5, minimize_steps=3000, minimize_torque=1e-3)
    (r,) = te.anneal_batch([Hamiltonian(0.2, 0.9, 0.1)], (12, 12), sch, [4], device="cpu")
    assert r.spins.shape == (12, 12, 3) and r.spins.dtype == np.float64
    assert np.allclose(np.linalg.norm(r.spins, axis=-1), 1.0, atol=1e-12)
    assert 0 < r.acceptance < 1 and 1 <= r.relax_sweeps_done <= 5
    assert r.max_torque < 1e-3 and 0 < r.minimize_steps_done < 3000


def test_lbfgs_per_lattice_converges_faster_and_does_not_depend_on_the_batch():
    hams = [Hamiltonian(0.2, 0.9, 0.1), Hamiltonian(-0.2, 0.7, 0.1), Hamiltonian(0.1, 0.5, 0.08)]
    seeds = [1, 2, 3]
    lbfgs = Schedule(sweeps=30, relax_sweeps=5, minimize_steps=3000, minimize_torque=1e-4,
                     minimizer="lbfgs")  # fmt: skip
    vp = dataclasses.replace(lbfgs, minimizer="vp")
    together = te.anneal_batch(hams, (16, 16), lbfgs, seeds, device="cpu")
    slow = te.anneal_batch(hams, (16, 16), vp, seeds, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = [te.anneal_batch([h], (16, 16), lbfgs, [s], device="cpu")[0]
                 for h, s in zip(hams, seeds, strict=True)]  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    # the lattices converge at different steps, so the working batch shrinks on the way
    assert len({t.minimize_steps_done for t in together}) == len(hams)
    for t, a, v, ham in zip(together, alone, slow, hams, strict=True):
        assert np.array_equal(t.spins, a.spins) and t.max_torque == a.max_torque
        assert t.minimize_steps_done == a.minimize_steps_done
        assert t.max_torque < 1e-4 and t.minimize_steps_done < v.minimize_steps_done
        e_l, e_v = _total(t.spins, ham), _total(v.spins, ham)
        assert e_l <= e_v + 1e-6 * abs(e_v)


def test_velocity_projection_does_not_depend_on_the_batch_as_it_shrinks():
    hams = [Hamiltonian(0.2, 0.9, 0.1), Hamiltonian(-0.2, 0.3, 0.1)]
    vp = Schedule(sweeps=20, relax_sweeps=5, minimize_steps=600, minimize_torque=1e-3,
                  minimizer="vp")  # fmt: skip
    together = te.anneal_batch(hams, (12, 12), vp, [5, 6], device="cpu")
    alone = [te.anneal_batch([h], (12, 12), vp, [s], device="cpu")[0]
             for h, s in zip(hams, [5, 6], strict=True)]  # fmt: skip
    assert together[0].minimize_steps_done != together[1].minimize_steps_done
    for t, a in zip(together, alone, strict=True):
        assert np.array_equal(t.spins, a.spins) and t.minimize_steps_done == a.minimize_steps_done


def test_row_dot_products_are_exact_and_finite_for_zero_rows():
    a = torch.zeros(3, 3, 4, 4, dtype=torch.float64)
    a[1] = 0.5
    a[2, 0, 0, 0] = 1e-200
    assert te._dot_rows(a, a).tolist() == [0.0, 12.0, 0.0]  # 1e-400 underflows to 0


def test_an_instant_quench_is_the_minimiser_alone():
    sch = Schedule(cooling="instant", sweeps=0, minimize_steps=4000, minimize_torque=1e-3)
    (r,) = te.anneal_batch([Hamiltonian(0.2, 0.9, 0.1)], (12, 12), sch, [4], device="cpu")
    assert math.isnan(r.acceptance) and r.relax_sweeps_done == 0
    assert r.max_torque < 1e-3 and 0 < r.minimize_steps_done < 4000


def test_bad_requests_are_one_line_errors():
    ham = Hamiltonian(0.1, 0.5, 0.1)
    with pytest.raises(InputError, match="unknown device"):
        te.anneal_batch([ham], (8, 8), Schedule(), [1], device="tpu")
    with pytest.raises(InputError, match="at least"):
        te.anneal_batch([ham], (2, 8), Schedule(), [1], device="cpu")
    with pytest.raises(InputError, match="seeds"):
        te.anneal_batch([ham], (8, 8), Schedule(), [1, 2], device="cpu")
    with pytest.raises(InputError, match="batch"):
        te.anneal_batch([ham], (8, 8), Schedule(), [1], device="cpu", batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(InputError, match="no CUDA device"):
        te.resolve_device("cuda")


def test_side_by_side_validation_script(tmp_path):
    """validation/engines.py draws both engines on the same seeds and tabulates them."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "validation" / "engines.py"),
            "--params",
            str(ROOT / "params.yaml"),
            "--set",
            "profile=tiny",
            "--set",
            "schedule.minimize_steps=3000",  # tiny's 50 steps leave the walls turning
            "--size",
            "16",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads((tmp_path / "engines.json").read_text())
    assert len(doc["sets"]) == 5 and doc["max_energy_rel_diff"] < 0.05
    torque = 1e-4 * 1.01  # schedule.minimize_torque, by an independent field evaluation
    for row in doc["sets"]:
        assert row["numba"]["max_torque"] < torque and row["torch"]["max_torque"] < torque
    assert (tmp_path / "engines.png").stat().st_size > 10_000
    assert run.stdout.strip().splitlines()[-1].startswith("max_energy_rel_diff=")


def test_a_batch_too_large_for_the_device_is_split_with_a_warning(monkeypatch):
    """The documented fallback: fewer lattices at a time, the same textures, a warning."""
    hams = [Hamiltonian(0.2, 0.7, 0.1), Hamiltonian(-0.1, 0.4, 0.09)]
    sch = Schedule(sweeps=20, relax_sweeps=3, minimize_steps=20)
    whole = te.anneal_batch(hams, (8, 8), sch, [5, 6], device="cpu")
    monkeypatch.setattr(te, "batch_fits", lambda batch, shape, device: 1)
    with pytest.warns(UserWarning, match="does not fit the free memory"):
        split = te.anneal_batch(hams, (8, 8), sch, [5, 6], device="cpu")
    for a, b in zip(whole, split, strict=True):
        assert np.array_equal(a.spins, b.spins)
