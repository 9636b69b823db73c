"""A real `dvc repro` of the pipeline on the tiny profile, in a scratch copy of the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import ROOT


def _sh(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _ui_shows_the_training_runs_side_by_side(work: Path, champion: str) -> None:
    """What a user of `mlflow ui` sees, through the REST API the UI itself calls: a
    model-training experiment whose training runs carry the headline metric, best first."""
    from spinfer.faults.process import free_port, stop

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{work / 'mlruns' / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not answer"
                time.sleep(0.5)
        with urllib.request.urlopen(f"{api}/experiments/get-by-name?experiment_name=spinfer") as r:
            experiment = json.load(r)["experiment"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        query = {
            "experiment_ids": [experiment["experiment_id"]],
            "filter": "tags.kind = 'training'",
            "order_by": ["metrics.mae_mean ASC"],
        }
        request = urllib.request.Request(
            f"{api}/runs/search", json.dumps(query).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as r:
            runs = json.load(r)["runs"]
    finally:
        stop(proc)
    names = [run["info"]["run_name"] for run in runs]
    assert sorted(names) == ["cnn-clean", "cnn-noisy", "resnet18-clean", "resnet18-noisy"]
    headline = [{m["key"]: m["value"] for m in run["data"]["metrics"]}["mae_mean"] for run in runs]
    assert headline == sorted(headline) and all(v > 0 for v in headline)
    assert all(run["info"]["status"] == "FINISHED" for run in runs)
    assert names[0] == champion  # the registry ranks by the same headline metric
    for run in runs:  # a short set per run: headline, external headline, curves over epochs/Ts
        keys = {m["key"] for m in run["data"]["metrics"]}
        assert len(keys) <= 32 and {"mae_mean", "external_mae_over_centre_K", "test_ts"} <= keys


@pytest.mark.slow
def test_dvc_repro_tiny_profile_then_nothing_to_do(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "tuned.yaml"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "tiny"
    raw["spleem"].update(
        {"sample_size": [40, 48], "sample_dmi_over_dipolar": [2.0, -2.0], "stride": 8}
    )
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    from spinfer.config import load_params
    from spinfer.spleem.sample import make_sample

    make_sample(load_params(work / "params.yaml"), work / "data" / "spleem")  # plays data/
    external = work / "data" / "external" / "spirit.npz"  # a small external set, by Spirit
    made = _sh([sys.executable, str(ROOT / "validation" / "external_spirit.py"), "--n", "4",
                "--size", "16", "--cool-scale", "0.05", "--out", str(external)], work)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    foreign_out = str(work / "data" / "spleem_spirit")  # foreign images, by Spirit
    foreign = _sh([sys.executable, str(ROOT / "validation" / "spleem_foreign.py"), "--size", "40",
                   "--no-estimate", "--out", foreign_out], work)  # fmt: skip
    assert foreign.returncode == 0, foreign.stdout + foreign.stderr
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        assert _sh(cmd, work).returncode == 0
    first = _sh(["dvc", "repro"], work)
    assert first.returncode == 0, first.stdout + first.stderr
    stages = ("generate", "split", "noise", "test_noise", "report", "tuned", "compare",
              "register", "promote", "spleem", "spleem_foreign", "spleem_foreign_psf")  # fmt: skip
    for stage in stages:
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    for model in ("resnet18", "resnet50", "cnn"):
        for data in ("noisy", "clean"):
            for stage in ("train", "evaluate", "external"):
                assert f"Running stage '{stage}@{model}-{data}'" in first.stdout, first.stdout
            evald = work / "artifacts" / "eval" / f"{model}-{data}"
            ext = json.loads((evald / "external.json").read_text())
            best = work / "artifacts" / "models" / f"{model}-{data}" / "best.pt"
            if model == "resnet50":  # not in the tiny profile's train.grid
                assert ext["skipped"] and not best.exists()
                assert json.loads((evald / "metrics.json").read_text())["skipped"]
                continue
            assert best.is_file()
            assert ext["external_n"] == 4 and ext["external_mae_over_centre_K"] > 0
    art = work / "artifacts"
    assert (art / "textures.zarr" / "manifest.sha256").is_file()
    assert (art / "noisy.zarr" / "manifest.sha256").is_file()
    assert json.loads((art / "splits.json").read_text())["counts"]["train"] == 18
    for png in ("contact_sheet.png", "parameters.png", "out_of_plane.png"):
        assert (art / "report" / png).stat().st_size > 1000
    assert not (art / ".partial").exists()
    assert not json.loads((art / "models" / "tuned" / "status.json").read_text())["trained"]
    spleem = json.loads((art / "metrics" / "spleem.json").read_text())
    assert set(spleem) == {"lam_p2.0", "lam_m2.0"} and spleem["lam_p2.0"]["panels"] == 20
    assert (art / "spleem" / "spleem_fig4.png").stat().st_size > 5000
    foreign_metrics = json.loads((art / "metrics" / "spleem_spirit.json").read_text())
    assert set(foreign_metrics) == {"spirit_lam_p2.0", "spirit_lam_0.0", "spirit_lam_m2.0"}
    assert all("neel_fraction" in m and "K_true" in m for m in foreign_metrics.values())
    declared = json.loads((art / "metrics" / "spleem_spirit_psf.json").read_text())
    assert set(declared) == set(foreign_metrics)  # deconvolved: other estimates
    assert all(declared[k]["K_mean"] != foreign_metrics[k]["K_mean"] for k in declared)
    metrics = _sh(["dvc", "metrics", "show", "--json"], work)
    assert metrics.returncode == 0 and '"textures": 30' in metrics.stdout, metrics.stdout
    assert "resnet18_noisy_below_half_chance" in metrics.stdout
    assert "external_mae_over_centre_D" in metrics.stdout
    assert (art / "eval" / "capacity_grid.png").stat().st_size > 1000
    shown = _sh(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], work)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    page = (tmp_path / "plots" / "index.html").read_text()
    for run in ("resnet18-noisy", "resnet18-clean", "cnn-noisy", "cnn-clean"):  # overlaid
        assert f"artifacts/eval/{run}/mae_vs_ts.json" in page
    assert "MAE of K_N" in page and "capacity_grid.png" in page
    runs = mlflow.MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}").search_runs(
        [mlflow.MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
         .get_experiment_by_name("spinfer").experiment_id]
    )  # fmt: skip
    kinds = sorted(r.data.tags.get("kind", "") for r in runs)
    assert kinds == ["summary"] + ["training"] * 4, kinds  # no run for the left-out ResNet50
    assert json.loads((art / "metrics" / "training.json").read_text())["skipped"] == [
        "resnet50-clean", "resnet50-noisy"]  # fmt: skip
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("spinfer", "champion")
    assert champion.tags["promotion.decision"] == "promoted"
    compact = client.get_model_version_by_alias("spinfer-compact", "champion")
    assert compact.run_id == champion.run_id  # the compact variant follows the champion
    promotion = json.loads((art / "metrics" / "promotion.json").read_text())
    assert promotion["champion_run"] == champion.tags["run_name"]
    _ui_shows_the_training_runs_side_by_side(work, promotion["champion_run"])

    second = _sh(["dvc", "repro"], work)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout, second.stdout
    status = _sh(["dvc", "status"], work)
    assert "up to date" in status.stdout, status.stdout

    # a queued `dvc exp run` (like --temp) runs in a copy of the project under .dvc/tmp/exps,
    # without mlruns/, on a queue worker: pointed at the project's store, its training runs
    # and registry changes land there
    (work / ".gitignore").write_text("/mlruns\n")
    for cmd in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "t"],
    ):
        assert _sh(cmd, work).returncode == 0
    store = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    queued = _sh(
        ["dvc", "exp", "run", "--queue", "-S", "train.beta=0.5"], work, MLFLOW_TRACKING_URI=store
    )  # train.beta: a key the tiny overlay leaves alone, so every training starts afresh
    assert queued.returncode == 0 and "Queued experiment" in queued.stdout, queued.stdout
    try:
        exp = _sh(["dvc", "exp", "run", "--run-all"], work, MLFLOW_TRACKING_URI=store)
        assert exp.returncode == 0, exp.stdout + exp.stderr
        queue = _sh(["dvc", "queue", "status"], work)
        assert "Success" in queue.stdout and "Failed" not in queue.stdout, queue.stdout
    finally:
        _sh(["dvc", "queue", "stop", "--kill"], work)
    runs = mlflow.MlflowClient(store).search_runs(
        [client.get_experiment_by_name("spinfer").experiment_id], "tags.kind = 'training'"
    )
    assert len(runs) == 8, [r.info.run_name for r in runs]  # the grid's 4, then the exp's 4
    assert sorted(r.data.params["train.beta"] for r in runs) == ["0.5"] * 4 + ["1.0"] * 4

    # each stage tracks the active profile's overlay and the keys that change its results:
    # editing another profile reruns nothing; where training runs, only the config check
    raw["profiles"]["paper"]["train"]["lr"] = 3.0e-4
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    status = _sh(["dvc", "status"], work)
    assert "up to date" in status.stdout, status.stdout
    raw["train"]["device"] = "cpu"
    raw["train"]["loader_workers"] = 1
    raw["train"]["preload"] = True
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    status = _sh(["dvc", "status", "--json"], work)
    assert set(json.loads(status.stdout)) == {"config"}, status.stdout

    # a key no section knows fails the pipeline with spinfer's one-line error, although no
    # stage but the config check tracks it
    raw["train"]["nope"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    bad = _sh(["dvc", "repro"], work)
    assert bad.returncode != 0
    assert "error: unknown key 'train.nope'" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
    del raw["train"]["nope"]

    # a change to the test noise levels touches the test copies only: every run is
    # evaluated again on them, and nothing is generated, split or trained again
    raw["noise"]["test_levels"] = [0.0, 0.5, 1.0]
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    status = _sh(["dvc", "status", "--json"], work)
    assert set(json.loads(status.stdout)) == {"config", "test_noise"}, status.stdout
    third = _sh(["dvc", "repro"], work)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "Running stage 'evaluate@cnn-noisy'" in third.stdout, third.stdout
    for stage in ("generate", "split", "noise", "train@", "external@"):
        assert f"Running stage '{stage}" not in third.stdout, third.stdout
    curve = json.loads((art / "eval" / "cnn-noisy" / "mae_vs_ts.json").read_text())
    assert [row["ts"] for row in curve] == [0.0, 0.5, 1.0]


def test_training_and_evaluation_stages_depend_on_what_decides_them():
    """Train tracks the code that decides the weights (loop.TRAINING_SOURCES, the predictor
    it packs) and no test data; evaluation tracks the test copies and no training code."""
    from spinfer.train.fingerprint import TRAINING_SOURCES

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    train, evaluate = stages["train"], stages["evaluate"]
    assert {f"src/spinfer/{s}" for s in TRAINING_SOURCES} <= set(train["deps"])
    assert "src/spinfer/train/bundle.py" in train["deps"]
    assert not any("test_noise" in d or "evaluate" in d for d in train["deps"])
    assert "artifacts/test_noise.zarr" in evaluate["deps"]
    assert "src/spinfer/train/loop.py" not in evaluate["deps"]
    assert "noise.test_levels" in stages["test_noise"]["params"]
    assert not any(p.startswith("noise.test") for p in stages["noise"]["params"])
