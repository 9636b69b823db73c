"""Every term of every reference case against the independent simulator (Spirit 2.2.0)."""

from __future__ import annotations

import pytest

from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian, energy_terms

TERMS = {
    "Exchange": "exchange",
    "DMI": "dmi",
    "DDI": "dipolar",
    "Anisotropy": "anisotropy",
    "Total": "total",
}


def _ham(case: dict) -> Hamiltonian:
    return Hamiltonian(dmi=case["lam"], anisotropy=case["K"], dipolar=case["D"], exchange=1.0)


def _close(value: float, expected: float, rel: float, floor: float = 1e-9) -> bool:
    return abs(value - expected) <= rel * abs(expected) + floor


def test_images_m4_every_term(reference_cases):
    for case in reference_cases:
        got = energy_terms(case["spins"], _ham(case), images=4).as_dict()
        for ref_name, name in TERMS.items():
            expected = case["energy_images_M4"][ref_name]
            assert _close(got[name], expected, 1e-8), (case["name"], name, got[name], expected)


def test_periodic_default_matches_m64(reference_cases):
    for case in reference_cases:
        got = energy_terms(case["spins"], _ham(case)).dipolar
        assert _close(got, case["ddi_images_M64"], 3e-4), (case["name"], got)


def test_periodic_sum_is_converged_lattice_constant():
    # sum' 1/r^3 over the square lattice = 9.0336217... (fully periodic, any L)
    for size in (16, 100):
        kernel = dipolar_kernel(size, size)
        assert kernel.real[3].sum() == pytest.approx(-9.0336217, rel=2e-7)
        assert kernel.kshape() == pytest.approx(0.75 * 9.0336217, rel=2e-7)


def test_dmi_chirality_convention(reference_cases):
    """lam > 0 favours walls turning from +z towards +u while moving along +u."""
    by_name = {c["name"]: c for c in reference_cases}
    plus = energy_terms(by_name["neel_wall_x_rot_z_to_+x"]["spins"], Hamiltonian(0.2, 0, 0))
    minus = energy_terms(by_name["neel_wall_x_rot_z_to_-x"]["spins"], Hamiltonian(0.2, 0, 0))
    assert plus.dmi < 0 < minus.dmi
