"""The MLflow store: where it is, what kind of experiment it holds."""

from __future__ import annotations

import mlflow

from spinfer.tracking import setup_tracking, store_uri
from tests.conftest import tiny_params


def test_experiment_is_a_model_training_experiment_in_the_project_store(tmp_path):
    params = tiny_params()
    experiment = setup_tracking(params, tmp_path)
    client = mlflow.MlflowClient(store_uri(params, tmp_path))
    tags = client.get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert (tmp_path / "mlruns" / "artifacts").is_dir()


def test_mlflow_tracking_uri_wins_and_keeps_artifacts_beside_its_store(tmp_path, monkeypatch):
    """What `dvc exp run --temp/--queue` needs: a copy of the project writes to the
    project's store, not to the copy's."""
    params = tiny_params()
    store = tmp_path / "project" / "mlruns" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    copy = tmp_path / "copy"
    experiment = setup_tracking(params, copy)
    assert store.is_file() and not (copy / "mlruns").exists()
    location = mlflow.MlflowClient().get_experiment(experiment).artifact_location
    assert location == (store.parent / "artifacts").as_uri()
