"""validation/learning_curve.py on the tiny profile: four sizes, power-law fits, one MLflow run."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from spinfer.config import load_params
from tests.conftest import ROOT, make_project


def test_learning_curve_fits_and_logs(tmp_path, tiny_data):
    params_path = make_project(tmp_path / "project", tiny_data)
    out = tmp_path / "curve"
    cmd = [
        sys.executable, str(ROOT / "validation" / "learning_curve.py"),
        "--root", str(params_path.parent), "--model", "cnn", "--cnn-width", "8",
        "--steps", "12", "--evals", "4", "--batch", "8", "--out", str(out),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    doc = json.loads((out / "learning_curve.json").read_text())
    sizes = [r["n"] for r in doc["runs"]]
    assert len(sizes) == 4 and sizes == sorted(sizes) and sizes[-1] == doc["train_textures"]
    for r in doc["runs"]:
        assert [c["step"] for c in r["curve"]][-1] == 12 and len(r["mae"]) == 3
        assert 0 <= r["out_of_plane_trained"] <= r["n"]
    # the tiny test split holds both phases: a fit over all textures and one over the
    # out-of-plane ones, whose MAE is the mean over that subset of the same errors
    assert 0 < doc["test_out_of_plane"] < doc["test_textures"]
    assert sorted(doc["fits"]) == ["all", "out_of_plane"]
    for cls in doc["fits"]:
        for t in ("lambda", "K", "D"):
            fit = doc["fits"][cls][t]
            assert math.isfinite(fit["a"]) and math.isfinite(fit["b"]) and fit["a"] > 0
            assert fit["textures_needed"] > 0 and fit["steps_needed"] > 0
    assert (out / "learning_curve.png").stat().st_size > 10_000
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("textures_needed_lambda=") and "run_id=" in last

    import mlflow

    from spinfer.tracking import setup_tracking

    params = load_params(params_path)
    experiment = setup_tracking(params, params_path.parent)
    runs = mlflow.MlflowClient().search_runs([experiment], "tags.kind = 'learning_curve'")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert (
        "b_D" in metrics and "b_D_out_of_plane" in metrics and "mae_K_ts0_out_of_plane" in metrics
    )
    assert runs[0].data.params["model"] == "cnn"
    artifacts = [
        a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "figures")
    ]
    assert artifacts == ["figures/learning_curve.png"]


def test_the_data_needed_is_infinite_for_a_flat_fit_and_never_overflows():
    import importlib.util

    path = ROOT / "validation" / "learning_curve.py"
    spec = importlib.util.spec_from_file_location("learning_curve", path)
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    assert math.isclose(curve.needed(0.2, 0.5, 0.01), 400.0)  # (0.2 / 0.01) ** 2
    assert curve.needed(0.2, 0.0, 0.01) == math.inf and curve.needed(0.2, -0.1, 0.01) == math.inf
    assert curve.needed(0.2, 1e-5, 0.01) == math.inf  # 20 ** 1e5 overflows a float
    assert curve.law("N", 0.78) == "N^-0.78" and curve.law("N", -0.01) == "N^+0.01"


def test_class_maes_split_the_same_errors_by_phase():
    import importlib.util

    import numpy as np

    path = ROOT / "validation" / "learning_curve.py"
    spec = importlib.util.spec_from_file_location("learning_curve", path)
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    err = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.5, 0.5]])
    maes = curve.class_maes(err, np.array([True, False, True]))
    assert np.allclose(maes["all"], [0.3, 0.3, 0.3])
    assert np.allclose(maes["out_of_plane"], [0.3, 0.35, 0.4])
    assert curve.class_maes(err, np.zeros(3, dtype=bool))["out_of_plane"] is None
