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
    for t in ("lambda", "K", "D"):
        fit = doc["fits"][t]
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
    assert "b_D" in runs[0].data.metrics and runs[0].data.params["model"] == "cnn"
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
