"""Bond descriptors: equal to the Hamiltonian's per-term energies at scale 1 (the project's
energy and the brute-force pair sums), coarse-graining exact on blocks, symmetry behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinfer.data.descriptors import (
    DESCRIPTOR_NAMES,
    bond_densities,
    bond_descriptors,
    coarse_grain,
    descriptor_names,
    dipolar_density,
)
from spinfer.data.symmetry import N_ELEMENTS, apply_symmetry, lambda_sign
from spinfer.errors import InputError
from spinfer.physics.energy import Hamiltonian, energy_terms
from tests import reference
from tests.conftest import smooth_texture


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scale_one_is_the_energy_per_site_and_unit_coupling(seed):
    s = smooth_texture(seed, 10)
    n = s.shape[0] * s.shape[1]
    dev, dmi, sz2, abs_sz = bond_densities(s)
    terms = energy_terms(s, Hamiltonian(dmi=1.0, anisotropy=1.0, dipolar=0.0))
    assert dev == pytest.approx(2.0 + terms.exchange / n, abs=1e-12)
    assert dmi == pytest.approx(terms.dmi / n, abs=1e-12)
    assert sz2 == pytest.approx(-terms.anisotropy / n, abs=1e-12)
    # and against the independent pair sums, not only the project's kernels
    assert dev == pytest.approx(2.0 + reference.exchange(s) / n, abs=1e-12)
    assert dmi == pytest.approx(reference.dmi(s, 1.0) / n, abs=1e-12)
    assert abs_sz == pytest.approx(np.abs(s[..., 2]).mean())
    dip = energy_terms(s, Hamiltonian(dmi=0.0, anisotropy=0.0, dipolar=1.0)).dipolar
    assert dipolar_density(s) == pytest.approx(dip / n, rel=1e-12)
    assert bond_descriptors(s)[-1] == dipolar_density(s)


def test_dipolar_density_of_uniform_states_is_the_shape_anisotropy():
    """Out-of-plane minus in-plane uniform: Kshape / D per site (grid.resolve_kshape_factor)."""
    from spinfer.config import PhysicsParams
    from spinfer.data.grid import resolve_kshape_factor

    up, inplane = np.zeros((16, 16, 3)), np.zeros((16, 16, 3))
    up[..., 2] = inplane[..., 0] = 1.0
    kshape = resolve_kshape_factor(PhysicsParams(size=16))
    assert dipolar_density(up) - dipolar_density(inplane) == pytest.approx(kshape, rel=1e-6)
    assert kshape == pytest.approx(6.775, abs=1e-3)  # the infinite square lattice's value


def test_uniform_states():
    up = np.zeros((8, 8, 3))
    up[..., 2] = 1.0
    d = bond_descriptors(up, dipolar=False)
    for b in range(3):
        dev, dmi, sz2, abs_sz = d[4 * b : 4 * b + 4]
        assert dev == pytest.approx(np.log(1e-6))  # no bond deviation at any scale
        assert (dmi, sz2, abs_sz) == pytest.approx((0.0, 1.0, 1.0))


def test_coarse_grain_blocks():
    s = smooth_texture(3, 12)
    c = coarse_grain(s, 4)
    assert c.shape == (3, 3, 3)
    block = s[4:8, 0:4].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(c[1, 0], block / np.linalg.norm(block))
    assert coarse_grain(s, 1) is not None and np.array_equal(coarse_grain(s, 1), s)
    # a lattice that is not a multiple of the block drops the partial blocks
    assert coarse_grain(smooth_texture(4, 10), 4).shape == (2, 2, 3)
    # a block whose spins cancel stays zero rather than dividing by zero
    cancel = np.zeros((2, 2, 3))
    cancel[0, 0, 0] = cancel[1, 1, 0] = 1.0
    cancel[0, 1, 0] = cancel[1, 0, 0] = -1.0
    assert np.array_equal(coarse_grain(cancel, 2), np.zeros((1, 1, 3)))


def test_coarse_graining_averages_site_noise_out():
    from spinfer.data.noise import add_noise

    s = smooth_texture(5, 32)
    noisy = add_noise(s, 0.5, np.random.default_rng(0))
    fine = abs(bond_densities(noisy)[0] - bond_densities(s)[0])
    coarse = abs(bond_densities(coarse_grain(noisy, 4))[0] - bond_densities(coarse_grain(s, 4))[0])
    assert coarse < fine / 2


def test_invariant_under_the_point_group_up_to_the_dmi_sign():
    """Exact at scale 1 (coarse scales depend on where the blocks start, so there the
    symmetry holds only statistically)."""
    s = smooth_texture(6, 12)
    base = bond_descriptors(s, (1,), dipolar=False)
    for e in range(N_ELEMENTS):
        g = apply_symmetry(torch.from_numpy(s.transpose(2, 0, 1).copy()), e)
        d = bond_descriptors(g.numpy().transpose(1, 2, 0), (1,), dipolar=False)
        expect = base * np.array([1.0, lambda_sign(e), 1.0, 1.0])
        np.testing.assert_allclose(d, expect, atol=1e-12, err_msg=f"element {e}")
    shifted = np.roll(s, (5, 3), axis=(0, 1))
    np.testing.assert_allclose(bond_descriptors(shifted, (1,), dipolar=False), base, atol=1e-12)
    # a shift by whole blocks keeps every scale
    blocks = np.roll(s, (4, 8), axis=(0, 1))
    np.testing.assert_allclose(bond_descriptors(blocks), bond_descriptors(s), atol=1e-12)


def test_names_and_bad_input():
    names = [f"{n}@{b}" for b in (1, 2) for n in DESCRIPTOR_NAMES]
    assert descriptor_names((1, 2), dipolar=False) == names
    assert descriptor_names((1, 2)) == [*names, "dipolar_density@1"]
    assert len(bond_descriptors(smooth_texture(7, 8))) == len(descriptor_names()) == 13
    with pytest.raises(InputError, match="shape"):
        coarse_grain(np.zeros((4, 4)), 2)
    with pytest.raises(InputError, match="block"):
        coarse_grain(np.zeros((4, 4, 3)), 5)


def test_descriptor_probe_runs_on_the_tiny_dataset(tiny_data, tmp_path):
    """validation/descriptor_probe.py end to end: every test level, kind and protocol."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT, make_project

    params = make_project(tmp_path, tiny_data)
    out = subprocess.run(
        [sys.executable, str(ROOT / "validation" / "descriptor_probe.py"),
         "--params", str(params), "--draws", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert all("=" in pair for pair in last.split()) and "held_out_D=" in last
    result = json.loads((tmp_path / "artifacts/validation/descriptor_probe.json").read_text())
    assert [r["ts"] for r in result["levels"]] == pytest.approx([i / 10 for i in range(11)])
    for row in result["levels"]:
        for key in ("noisy/paper", "noisy/seen", "noisy/held_out", "clean/paper"):
            assert all(np.isfinite(v) and v >= 0 for v in row[key].values()), key
    assert result["sets"] == 3 and result["sets_curve_ts0"][-1]["sets"] == result["half_sets"]
    assert (tmp_path / "artifacts/validation/descriptor_probe.png").stat().st_size > 0
