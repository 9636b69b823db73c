"""The fault-injection suite: every scenario of spinfer.faults against the real components
(Dask LocalCluster, Zarr, MLflow SQLite store and registry, `mlflow models serve`, Optuna
storage, real processes and signals), on one scratch project of the tiny profile."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spinfer.faults import SCENARIOS, Lab, run_scenarios

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("faults"))
    yield lab
    lab.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(lab, name):
    func = SCENARIOS[name]
    outcome = func(lab)
    assert outcome.passed and not outcome.lost_data, outcome


def test_run_scenarios_reports_crashes_as_failures(tmp_path):
    (outcome,) = run_scenarios(tmp_path, ["config_errors"])
    assert outcome.passed
    with pytest.raises(Exception, match="unknown scenario 'nope'"):
        list(run_scenarios(tmp_path, ["nope"]))


def test_doctor_cli_prints_a_scoreboard(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "spinfer.cli", "doctor", "faults", "--scenario", "config_errors",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "tried=1 passed=1 lost_data=0"
    bad = subprocess.run(
        [sys.executable, "-m", "spinfer.cli", "doctor", "faults", "--scenario", "nope"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: unknown scenario")
