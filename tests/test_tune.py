"""Optuna studies on the tiny dataset: real SQLite storage, real MLflow store, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from spinfer.config import load_params
from spinfer.tracking import resolve_uri
from spinfer.tune import load_tuned, open_storage, tune
from tests.conftest import make_project

SMALL = [
    "tune.models=[cnn]",
    "tune.epochs=2",
    "tune.batch_size=[8]",
    "tune.cnn_width=[4, 8]",
    "tune.cnn_depth=[1, 2]",
    "tune.startup_trials=1",
    "tune.warmup_epochs=0",
]


def _project(root: Path, tiny_data, extra: list[str] = ()) -> Path:
    path = make_project(root, tiny_data)
    raw = yaml.safe_load(path.read_text())
    for item in [*SMALL, *extra]:
        (section, key), value = item.split("=", 1)[0].split("."), item.split("=", 1)[1]
        raw[section][key] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(raw))
    return path


def _client(params_path: Path):
    params = load_params(params_path)
    return mlflow.MlflowClient(resolve_uri(params.tracking.uri, params_path.parent)), params


def _study_runs(params_path: Path, study: str):
    client, params = _client(params_path)
    exp = client.get_experiment_by_name(params.tune.experiment)
    parents = client.search_runs(
        [exp.experiment_id], f"tags.kind = 'study' and tags.`optuna.study` = '{study}'"
    )
    trials = client.search_runs(
        [exp.experiment_id], f"tags.kind = 'trial' and tags.`optuna.study` = '{study}'"
    )
    return client, parents, trials


def _study(params_path: Path, name: str):
    params = load_params(params_path)
    return optuna.load_study(
        study_name=name, storage=open_storage(params.tune, params_path.parent)
    )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "spinfer.cli", *args]


def test_study_logs_nested_trials_and_writes_the_best(tmp_path, tiny_data):
    params_path = _project(tmp_path, tiny_data)
    params = load_params(params_path)
    summary = tune(params, "s1", 3, tmp_path)
    assert summary.trials == 3 and summary.complete + summary.pruned == 3
    assert summary.complete >= 1 and summary.best_value is not None

    client, parents, trials = _study_runs(params_path, "s1")
    assert len(parents) == 1 and len(trials) == 3
    parent = parents[0]
    assert parent.data.metrics["best_val_mae"] == pytest.approx(summary.best_value)
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/optimization_history.png" in figures
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.state"] in ("COMPLETE", "PRUNED")
        assert client.get_metric_history(run.info.run_id, "val_mae")
        assert run.data.params["train.lr"]  # the trial's own settings, logged
    complete = [r for r in trials if r.data.tags["optuna.state"] == "COMPLETE"]
    best = min(r.data.metrics["objective_val_mae"] for r in complete)
    assert best == pytest.approx(summary.best_value)

    tuned = load_tuned(tmp_path / "tuned.yaml")
    assert tuned["study"] == "s1" and tuned["model"] == "cnn"
    assert tuned["trial"] == summary.best_trial
    assert tuned["train"]["batch_size"] == 8 and 1 <= tuned["train"]["cnn_depth"] <= 2
    assert 0.2 <= tuned["train"]["out_of_plane_share"] <= 0.8  # searched, linear range
    shares = {float(r.data.params["train.out_of_plane_share"]) for r in trials}
    assert len(shares) == 3 and all(0.2 <= v <= 0.8 for v in shares)

    # rerun: the study continues (same parent run), the trial count grows
    again = tune(params, "s1", 1, tmp_path)
    assert again.trials == 4 and again.parent_run_id == parent.info.run_id

    # the training stage takes tuned.yaml as its config
    proc = subprocess.run(
        _cli("train", "--params", str(params_path), "--tuned", str(tmp_path / "tuned.yaml")),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    name = f"{tuned['model']}-{tuned['data']}"
    assert (tmp_path / "artifacts/models/tuned" / name / "best.pt").is_file()
    assert (tmp_path / "artifacts/eval/tuned" / name / "metrics.json").is_file()


def test_tuned_file_without_a_study_trains_nothing(tmp_path, tiny_data):
    params_path = _project(tmp_path, tiny_data)
    (tmp_path / "tuned.yaml").write_text("model: null\n")
    proc = subprocess.run(
        _cli("train", "--params", str(params_path), "--tuned", str(tmp_path / "tuned.yaml")),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nothing to train" in proc.stderr
    assert (tmp_path / "artifacts/models/tuned/status.json").is_file()


def test_diverging_trials_fail_and_the_study_goes_on(tmp_path, tiny_data):
    params_path = _project(tmp_path, tiny_data, ["tune.lr=[1.0e+30, 1.0e+30]"])
    summary = tune(load_params(params_path), "div", 2, tmp_path)
    assert summary.trials == 2 and summary.failed == 2 and summary.best_value is None
    study = _study(params_path, "div")
    assert all("loss is" in t.user_attrs["failure"] for t in study.trials)
    _, _, runs = _study_runs(params_path, "div")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}


@pytest.mark.slow
def test_killed_study_resumes_and_its_orphan_is_marked_failed(tmp_path, tiny_data):
    params_path = _project(tmp_path, tiny_data, ["tune.epochs=400"])
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        _cli("train", "tune", "--params", str(params_path), "--study", "k", "--trials", "3"),
        start_new_session=True, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while True:  # wait until a trial is running and has logged an epoch
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        try:
            running = _study(params_path, "k").get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        if running and "mlflow_run_id" in running[0].user_attrs:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    fast = load_params(params_path, ["tune.epochs=1"])
    summary = tune(fast, "k", 1, tmp_path)
    study = _study(params_path, "k")
    orphan = study.trials[0]
    assert orphan.state == TrialState.FAIL
    assert study.trials[1].state == TrialState.COMPLETE and summary.trials == 2
    _, parents, runs = _study_runs(params_path, "k")
    assert len(parents) == 1 and len(runs) == 2
    status = {r.data.tags["optuna.trial"]: r.info.status for r in runs}
    assert status == {"0": "FAILED", "1": "FINISHED"}
    failure = {r.data.tags["optuna.trial"]: r.data.tags.get("failure", "") for r in runs}
    assert "orphaned" in failure["0"] and failure["1"] == ""


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path, tiny_data):
    params_path = _project(tmp_path, tiny_data)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = _cli("train", "tune", "--params", str(params_path), "--study", "pair", "--trials", "2")
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    study = _study(params_path, "pair")
    assert len(study.trials) == 4
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    _, parents, runs = _study_runs(params_path, "pair")
    assert len(parents) == 1 and len(runs) == 4


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--trials", "0"], 2, "--trials"),
        (["--trials", "1", "--set", "tune.storage=redis://x"], 1, "tune.storage"),
        (["--trials", "1", "--set", "tune.models=[]"], 1, "tune.models"),
        (["--trials", "1", "--set", "tune.models=[no_such_net]"], 1, "no_such_net"),
    ],
)
def test_bad_tune_input_is_one_line(tmp_path, tiny_data, args, code, needle):
    params_path = _project(tmp_path, tiny_data)
    proc = subprocess.run(
        _cli("train", "tune", "--params", str(params_path), "--study", "bad", *args),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
