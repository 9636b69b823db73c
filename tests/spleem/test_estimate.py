"""The experimental-image path end to end on the tiny profile: a real registered champion,
a real sample through the forward model, the CLI, MLflow and the notebook (headless)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

from spinfer.config import load_params
from spinfer.serve.publish import publish_run
from spinfer.serve.registry import promote, register
from spinfer.spleem.sample import make_sample
from spinfer.tracking import resolve_uri
from spinfer.train.evaluate import evaluate_and_log
from spinfer.train.loop import train_run
from tests.conftest import make_project

ROOT = Path(__file__).resolve().parents[2]
TINY_SAMPLE = {"sample_size": [40, 48], "sample_dmi_over_dipolar": [2.0, -2.0], "stride": 8}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_data):
    """A champion (cnn, 16 x 16) and a two-set sample of 40 x 48 images."""
    root = tmp_path_factory.mktemp("spleem")
    params_path = make_project(root, tiny_data)
    raw = yaml.safe_load(params_path.read_text())
    raw["spleem"].update(TINY_SAMPLE)
    params_path.write_text(yaml.safe_dump(raw))
    params = load_params(params_path)
    result = train_run(params, "cnn", "noisy", root, progress=False)
    publish_run(params, "cnn", "noisy", root, result.run_id)
    evaluate_and_log(params, "cnn", "noisy", root, result.run_id)
    register(params, root)
    promote(params, root)
    make_sample(params, root / params.spleem.data)
    return {"root": root, "params_path": params_path, "params": params}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "spinfer.cli", *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=cwd,
    )  # fmt: skip


def test_sample_sets_hold_channels_wheel_and_truth(project):
    data = project["root"] / "data" / "spleem"
    assert sorted(p.name for p in data.iterdir()) == ["lam_m2.0", "lam_p2.0"]
    truth = json.loads((data / "lam_p2.0" / "truth.json").read_text())
    assert truth["lambda"] == pytest.approx(2.0 * truth["D"])
    for name in ("sx", "sy", "sz", "wheel"):
        with Image.open(data / "lam_p2.0" / f"{name}.png") as img:
            assert img.size == (40, 48)  # width = Lx (x along the columns), height = Ly


def test_estimate_writes_tables_figures_metrics_and_an_mlflow_run(project):
    root, params_path = project["root"], project["params_path"]
    metrics = root / "spleem.json"
    proc = _cli("spleem", "estimate", "--params", str(params_path), "--metrics", str(metrics))
    assert proc.returncode == 0, proc.stderr
    assert "lam_p2.0 (channels" in proc.stdout and "truth" in proc.stdout
    out = root / "artifacts" / "spleem"
    for name in ("spleem_fig4.png", "series.png"):
        assert (out / name).stat().st_size > 5000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["D_L_meV"] == pytest.approx(0.1704, abs=1e-3)
    sets = summary["sets"]
    assert list(sets) == ["lam_p2.0", "lam_m2.0"]  # the series order, lambda falling
    panels = (out / "lam_p2.0_panels.csv").read_text().splitlines()
    n_panels = len(panels) - 1
    assert n_panels == sets["lam_p2.0"]["panels"] == 4 * 5  # 16 px panels, stride 8
    flat = json.loads(metrics.read_text())
    for name, m in flat.items():
        assert m["J_meV_mean"] == pytest.approx(summary["D_L_meV"] / m["D_mean"], rel=0.05)
        assert {"lambda_true", "w_px", "period_px", "w_px_resimulated"} <= set(m)
        assert m["lambda_std"] >= 0 and np.isfinite(m["lambda_mean"]), name
        # the set's uncertainty: panel sigma and spread combined in quadrature
        for k in ("lambda", "K", "D"):
            assert m[f"{k}_sigma_panel"] > 0
            assert m[f"{k}_sigma_total"] ** 2 == pytest.approx(
                m[f"{k}_sigma_panel"] ** 2 + m[f"{k}_std"] ** 2, rel=1e-9
            )
    for entry in sets.values():
        assert {u["dominant"] for u in entry["uncertainty"].values()} <= {"panel", "spread"}
    assert "dominates" in proc.stdout
    header = panels[0].split(",")
    assert {"lambda_std", "K_std", "D_std"} <= set(header)
    client = mlflow.MlflowClient(resolve_uri(project["params"].tracking.uri, root))
    exp = client.get_experiment_by_name("spinfer-spleem")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["kind"] == "spleem"
    assert "lam_p2.0.lambda_mean" in run.data.metrics
    assert "lam_m2.0.lambda_true" in run.data.metrics
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/spleem_fig4.png", "figures/series.png"}


def test_estimate_from_a_colour_wheel_image(project):
    root, params_path = project["root"], project["params_path"]
    wheel = root / "data" / "spleem" / "lam_m2.0" / "wheel.png"
    proc = _cli("spleem", "estimate", "--params", str(params_path), "--wheel", str(wheel),
                "--json", "--set", "spleem.resimulate=false")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (entry,) = result.values()
    assert entry["source"] == "wheel" and entry["panels"] == 20
    assert (root / "artifacts" / "spleem_adhoc" / "summary.json").is_file()


def test_set_names_meta_yaml_and_orientation(project, tmp_path):
    """Any set name (MLflow metric names sanitised); a set written transposed and declared
    so in its meta.yaml reads as the same lattice as the documented convention."""
    import shutil

    root, params_path = project["root"], project["params_path"]
    source = root / "data" / "spleem" / "lam_p2.0"
    data = tmp_path / "imgs"
    shutil.copytree(source, data / "series_lam+2")
    turned = data / "turned (rot)"
    turned.mkdir()
    for name in ("sx", "sy", "sz"):
        image = np.asarray(Image.open(source / f"{name}.png"))
        Image.fromarray(np.ascontiguousarray(image[::-1].T)).save(turned / f"{name}.png")
    (turned / "meta.yaml").write_text("orientation: transposed\nsz_sign: 1\n")
    blurred = data / "blurred"
    shutil.copytree(source, blurred)
    (blurred / "meta.yaml").write_text("psf_shape: lorentzian\npsf_width: 0.8\n")
    out = tmp_path / "out"
    args = ["spleem", "estimate", "--params", str(params_path), "--data", str(data),
            "--out", str(out), "--set", "spleem.resimulate=false"]  # fmt: skip
    proc = _cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    sets = json.loads(proc.stdout)
    plain = {"orientation": "xy-up", "sz_sign": 1, "psf_shape": "gaussian", "psf_width": 0.0}
    assert sets["turned (rot)"]["reading"] == {**plain, "orientation": "transposed"}
    assert sets["series_lam+2"]["reading"] == plain
    assert sets["blurred"]["reading"] == {**plain, "psf_shape": "lorentzian", "psf_width": 0.8}
    assert sets["blurred"]["mean"]["K"] != sets["series_lam+2"]["mean"]["K"]  # deconvolved
    for k in ("lambda", "K", "D"):
        assert sets["turned (rot)"]["mean"][k] == pytest.approx(sets["series_lam+2"]["mean"][k])
    assert 0 <= sets["series_lam+2"]["walls"]["neel_fraction"] <= 1
    assert (out / "series_lam+2_panels.csv").is_file()
    client = mlflow.MlflowClient(resolve_uri(project["params"].tracking.uri, root))
    exp = client.get_experiment_by_name("spinfer-spleem")
    newest = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert "series_lam_2.lambda_mean" in newest.data.metrics
    assert "turned _rot_.lambda_mean" in newest.data.metrics
    # a meta.yaml with an unknown key, and an unknown orientation: one-line errors
    (turned / "meta.yaml").write_text("orientation: transposed\nflip: true\n")
    bad = _cli(*args)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 1 and len(lines) == 1 and "unknown key 'flip'" in lines[0], lines
    (turned / "meta.yaml").write_text("orientation: sideways\n")
    bad = _cli(*args)
    assert bad.returncode == 1 and "unknown orientation 'sideways'" in bad.stderr, bad.stderr
    flag = _cli(*args, "--orientation", "sideways")
    assert flag.returncode == 2 and "sideways" in flag.stderr and "Traceback" not in flag.stderr
    (turned / "meta.yaml").unlink()
    (blurred / "meta.yaml").write_text("psf_shape: airy\npsf_width: 0.8\n")
    bad = _cli(*args)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 1 and len(lines) == 1 and "unknown PSF shape 'airy'" in lines[0]
    (blurred / "meta.yaml").write_text("psf_width: -1\n")
    bad = _cli(*args)
    assert bad.returncode == 1 and "PSF width must be" in bad.stderr, bad.stderr
    for option, value in (("--psf-shape", "airy"), ("--psf-width", "-2")):
        flag = _cli(*args, option, value)
        assert flag.returncode == 2 and option in flag.stderr and "Traceback" not in flag.stderr


def _bad_channels(tmp: Path, kind: str) -> list[str]:
    shapes = {"small": [(10, 10)] * 3, "mismatch": [(40, 40), (40, 40), (40, 44)]}
    if kind == "unreadable":
        (tmp / "sx.png").write_bytes(b"garbage")
        paths = [tmp / "sx.png"]
        for name in ("sy", "sz"):
            Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp / f"{name}.png")
            paths.append(tmp / f"{name}.png")
        return [str(p) for p in paths]
    if kind == "nan":
        paths = []
        for name in ("sx", "sy", "sz"):
            np.save(tmp / f"{name}.npy", np.full((40, 40), np.nan))
            paths.append(tmp / f"{name}.npy")
        return [str(p) for p in paths]
    rng = np.random.default_rng(0)
    paths = []
    for name, shape in zip(("sx", "sy", "sz"), shapes[kind], strict=True):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp / f"{name}.png")
        paths.append(tmp / f"{name}.png")
    return [str(p) for p in paths]


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("small", "smaller than 16x16"),
        ("mismatch", "channels differ in shape"),
        ("unreadable", "sx.png: cannot read image"),
        ("nan", "every pixel is masked"),
    ],
)
def test_bad_images_are_one_line_errors(project, tmp_path, kind, needle):
    channels = _bad_channels(tmp_path, kind)
    args = [x for c in channels for x in ("--channels", c)]
    proc = _cli("spleem", "estimate", "--params", str(project["params_path"]), *args)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_no_champion_is_a_one_line_error(tmp_path, tiny_data):
    params_path = make_project(tmp_path, tiny_data)
    data = tmp_path / "imgs" / "one"
    data.mkdir(parents=True)
    for name in ("sx", "sy", "sz"):
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(data / f"{name}.png")
    proc = _cli("spleem", "estimate", "--params", str(params_path), "--data", str(data.parent))
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot load model models:/spinfer@champion" in lines[0], lines
    # the pipeline's stages record that there was nothing to estimate with, and go on
    metrics = tmp_path / "spleem.json"
    skip = _cli("spleem", "estimate", "--params", str(params_path), "--data", str(data.parent),
                "--metrics", str(metrics), "--skip-without-model")  # fmt: skip
    assert skip.returncode == 0 and "nothing estimated" in skip.stderr, skip.stderr
    assert json.loads(metrics.read_text()) == {}
    status = json.loads((tmp_path / "artifacts" / "spleem" / "status.json").read_text())
    assert not status["estimated"] and "cannot load model" in status["reason"]


@pytest.mark.slow
def test_notebook_runs_headless(project):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "spleem_inference.ipynb", as_version=4)
    os.environ["SPINFER_ROOT"] = str(project["root"])
    try:
        resources = {"metadata": {"path": str(project["root"])}}
        NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources).execute()
    finally:
        os.environ.pop("SPINFER_ROOT", None)
    text = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )  # fmt: skip
    assert "panels" in text and "D_L = 0.170" in text and "truth" in text


def test_set_uncertainty_combines_panel_sigma_with_spread():
    from spinfer.spleem.estimate import combine_uncertainty

    pred = np.array([[0.1, 0.5, 0.07], [0.3, 0.5, 0.09]])
    sigma = np.array([[0.05, 0.3, 0.001], [0.05, 0.4, 0.001]])
    u = combine_uncertainty(pred, sigma)
    assert u["lambda"]["spread"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert u["lambda"]["dominant"] == "spread" and u["K"]["dominant"] == "panel"
    assert u["K"]["panel_sigma"] == pytest.approx(np.sqrt((0.09 + 0.16) / 2))
    assert u["K"]["total"] == pytest.approx(u["K"]["panel_sigma"])  # no spread in K
    no_model = combine_uncertainty(pred, np.full_like(pred, np.nan))
    assert no_model["D"]["dominant"] == "spread"
    assert no_model["D"]["total"] == pytest.approx(no_model["D"]["spread"])
