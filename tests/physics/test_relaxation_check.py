"""validation/relaxation.py compares like with like: fed spinfer's own minimised textures as the
"external" set, its minimised route reproduces them exactly and the annealed route does not."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import yaml

from spinfer.physics.anneal import Schedule, anneal
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian
from tests.conftest import ROOT, tiny_params


def test_relaxation_check_on_textures_made_by_spinfer(tmp_path):
    params = tiny_params("schedule.minimize_steps=300", "schedule.randomize=false")
    schedule: Schedule = params.schedule
    size = 32
    kshape = dipolar_kernel(size, size).kshape()
    couplings = np.array([[0.39, 1.02 * kshape * 0.13, 0.13], [-0.36, 1.0 * kshape * 0.12, 0.12]])
    spins = np.stack(
        [
            anneal(Hamiltonian(dmi=lam, anisotropy=k, dipolar=d), (size, size), schedule, i).spins
            for i, (lam, k, d) in enumerate(couplings)
        ]
    )
    sz = np.abs(spins[..., 2])
    assert (sz.mean(axis=(1, 2)) > 0.5).all() and ((sz < 0.5).mean(axis=(1, 2)) > 0).all()
    data = tmp_path / "own.npz"
    np.savez(data, spins=spins.astype(np.float32), params=couplings)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "tiny"
    raw["profiles"]["tiny"]["schedule"].update(minimize_steps=300, randomize=False)
    overrides = tmp_path / "params.yaml"
    overrides.write_text(yaml.safe_dump(raw))
    run = subprocess.run(
        [sys.executable, str(ROOT / "validation" / "relaxation.py"), "--params", str(overrides),
         "--data", str(data), "--workers", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    assert "minimized_wall_fraction_ratio=" in run.stdout.strip().splitlines()[-1]
    result = json.loads((tmp_path / "relaxation.json").read_text())
    summary = result["summary"]
    assert summary["textures"] == 2 and (tmp_path / "relaxation.png").is_file()
    # the script anneals texture i with seed i and the tiny profile's schedule: the same
    # textures as above (to float32 storage), so every minimised ratio is 1
    tiny = dataclasses.asdict(tiny_params().schedule)
    assert summary["schedule"] == {**tiny, "minimize_steps": 300, "randomize": False}
    for name in ("period", "wall_fraction", "mean_abs_sz"):
        assert abs(summary[f"minimized_{name}_ratio"] - 1.0) < 1e-5, name
    assert summary["annealed_max_torque_median"] > summary["minimized_max_torque_median"]
