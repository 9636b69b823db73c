"""The MLflow store: where it is, what kind of experiment it holds."""

from __future__ import annotations

import json

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


def test_a_parent_run_is_found_again_by_the_id_it_recorded(tmp_path):
    """Ensemble, ablation and study parents: the recorded run while the store holds it, a
    new one (recorded again) once the store has lost it."""
    from spinfer.tracking import recorded_run, use_store

    made = []

    def create() -> str:
        with mlflow.start_run(experiment_id=experiment) as run:
            made.append(run.info.run_id)
        return run.info.run_id

    record = tmp_path / "parent" / "run.json"
    use_store(f"sqlite:///{tmp_path / 'a.db'}")
    experiment = mlflow.create_experiment("parents")
    first = recorded_run(record, create, members=2)
    assert recorded_run(record, create) == first and made == [first]
    assert json.loads(record.read_text()) == {"run_id": first, "members": 2}
    use_store(f"sqlite:///{tmp_path / 'b.db'}")  # another store: the recorded run is gone
    experiment = mlflow.create_experiment("parents")
    second = recorded_run(record, create)
    assert second != first and made == [first, second]
    assert json.loads(record.read_text())["run_id"] == second
