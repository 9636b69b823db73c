"""What a finished training leaves beside its checkpoints, for evaluation and serving.

* ``model.pt``: the run's predictor (its members, test-time averaging, and interval
  calibration fitted on the validation set of its own training data: no test data);
* ``run.json``: the run's name and MLflow run id, so that the evaluation stages add their
  metrics to the same MLflow run (resumed by id, never searched for);
* in that MLflow run: the best checkpoint (the served pyfunc models are logged beside it by
  spinfer.serve.publish.publish_run).

The train stage writes them; the evaluation stages (test noise, external set) only read
them, so a change of ``noise.test_levels`` or of the external set retrains nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spinfer.config import Params
from spinfer.errors import InputError
from spinfer.io import atomic_write_text
from spinfer.models.predictor import (
    Predictor,
    assemble,
    fit_quantiles,
    load_predictor,
    member_checkpoints,
    save_predictor,
)
from spinfer.train.runs import RunPaths, open_training_data, run_paths

RUN_RECORD = "run.json"
log = logging.getLogger(__name__)


def build_predictor(params: Params, model_name: str, data: str, root: Path) -> Predictor:
    """The run's members with test-time averaging, calibrated on its validation set."""
    paths = run_paths(params, model_name, data, root)
    predictor = assemble(
        member_checkpoints(paths.out, params.train.ensemble), params.train.tta_ops
    )
    if predictor.has_uncertainty:
        _, val = open_training_data(params, data, root)
        mu, std = predictor.predict_dataset(val, calibrated=False)
        predictor.quantiles = fit_quantiles(mu, std, predictor.scaler.normalize(val.params))
    return predictor


def finish_run(
    params: Params, model_name: str, data: str, root: Path | str, run_id: str | None
) -> Path:
    """Write the run's predictor and record after training, and log the best checkpoint to
    its MLflow run (``run_id``; None: no tracking). Returns model.pt.

    The served models are the serving part's to log (spinfer.serve.publish.publish_run)."""
    root = Path(root)
    paths = run_paths(params, model_name, data, root)
    predictor = build_predictor(params, model_name, data, root)
    bundle = save_predictor(predictor, paths.out / "model.pt")
    record = {"run": paths.name, "model": model_name, "data": data, "run_id": run_id}
    atomic_write_text(paths.out / RUN_RECORD, json.dumps(record, indent=2) + "\n")
    if run_id is not None and paths.best.is_file():  # last.pt (optimizer state): DVC only
        import mlflow

        from spinfer.tracking import setup_tracking

        setup_tracking(params, root)
        with mlflow.start_run(run_id=run_id):
            mlflow.log_artifact(str(paths.best), artifact_path="checkpoints")
    return bundle


def load_run_predictor(paths: RunPaths) -> Predictor:
    """The run's calibrated predictor (``model.pt``); InputError when it was never trained."""
    bundle = paths.out / "model.pt"
    if not bundle.is_file():
        raise InputError(f"{bundle}: no trained predictor (train {paths.name} first)")
    return load_predictor(bundle)


def tracked_run(params: Params, root: Path, paths: RunPaths) -> str | None:
    """The recorded MLflow run id of ``paths`` when the project's store still holds that
    run (tracking set up); None, with a warning when the store has lost it, otherwise."""
    from spinfer.tracking import read_run_id, run_exists, setup_tracking

    run_id = read_run_id(paths.out / RUN_RECORD)
    if run_id is None:
        return None
    setup_tracking(params, root)
    if not run_exists(run_id):
        log.warning("%s: MLflow run %s is not in the store; nothing logged", paths.name, run_id)
        return None
    return run_id
