"""The external simulator (Spirit) speaks spinfer's Hamiltonian: energies of the shared
reference configurations term by term, and its script's draws, records and refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "validation" / "external_spirit.py"


@pytest.fixture(scope="module")
def spirit_script():
    pytest.importorskip("spirit", reason="Spirit (a dev dependency) is not installed")
    spec = importlib.util.spec_from_file_location("external_spirit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_spirit_energies_match_the_reference_and_spinfer(spirit_script):
    rows = spirit_script.check_conventions()  # raises on any term off by more than 1e-5
    assert len(rows) == 9
    walls = {r["case"]: r["spirit"]["dmi"] for r in rows if r["case"].startswith("neel_wall_x")}
    assert walls["neel_wall_x_rot_z_to_+x"] < 0 < walls["neel_wall_x_rot_z_to_-x"]


def test_parameters_fill_the_ranges_and_both_phases(spirit_script):
    kshape = 6.775
    params = spirit_script.draw_parameters(64, kshape, 19)
    np.testing.assert_array_equal(params, spirit_script.draw_parameters(64, kshape, 19))
    lam, k, d = params.T
    assert d.min() >= 0.05 and d.max() <= 0.13
    assert np.abs(lam / d).max() <= 3.0 and (lam / d).std() > 1.0
    ratio = k / (kshape * d)
    assert ratio.min() >= 0.15 and ratio.max() <= 1.13
    assert (ratio > spirit_script.PHASE_SPLIT).sum() == 32


@pytest.mark.slow
def test_small_set_records_protocol_and_torque_and_refuses_other_settings(tmp_path):
    pytest.importorskip("spirit")
    out = tmp_path / "ext.npz"
    args = [sys.executable, str(SCRIPT), "--n", "2", "--size", "12", "--cool-scale", "0.05"]
    run = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("textures=2 ")
    with np.load(out) as z:
        assert z["spins"].shape == (2, 12, 12, 3) and z["params"].shape == (2, 3)
        meta = json.loads(str(z["meta"]))
    record = meta["textures"][0]
    assert {"dmi", "anisotropy", "dipolar", "protocol", "max_torque"} <= set(record)
    assert record["max_torque"] < 1e-3 and meta["simulator"].startswith("Spirit")
    assert not (tmp_path / "ext.npz.partial").exists()  # finished work is tidied away
    # unfinished work of other settings is refused, never mixed in
    partial = tmp_path / "other.npz.partial"
    partial.mkdir()
    record = {"dmi": 9.0, "anisotropy": 0.0, "dipolar": 0.1}
    spins = np.zeros((12, 12, 3), np.float32)
    np.savez(partial / "texture_00000.npz", spins=spins, record=np.array(json.dumps(record)))
    bad = subprocess.run(
        [*args, "--out", str(tmp_path / "other.npz")], capture_output=True, text=True, timeout=600
    )
    assert bad.returncode == 1 and "other settings" in bad.stderr
