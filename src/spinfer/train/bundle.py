"""What a finished training leaves beside its checkpoints, for evaluation and serving.

* ``model.pt``: the run's predictor (its members, test-time averaging, and interval
  calibration fitted on the validation set of its own training data: no test data);
* ``run.json``: the run's name and MLflow run id, so that the evaluation stages add their
  metrics to the same MLflow run (resumed by id, never searched for);
* in that MLflow run: the best checkpoint and the served pyfunc models.

The train stage writes them; the evaluation stages (test noise, external set) only read
them, so a change of ``noise.test_levels`` or of the external set retrains nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spinfer.config import Params
from spinfer.io import atomic_write_text
from spinfer.train.predictor import (
    Predictor,
    assemble,
    fit_quantiles,
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
    """Write the run's predictor and record after training, and log the best checkpoint and
    the served models to its MLflow run (``run_id``; None: no tracking). Returns model.pt."""
    root = Path(root)
    paths = run_paths(params, model_name, data, root)
    predictor = build_predictor(params, model_name, data, root)
    bundle = save_predictor(predictor, paths.out / "model.pt")
    record = {"run": paths.name, "model": model_name, "data": data, "run_id": run_id}
    atomic_write_text(paths.out / RUN_RECORD, json.dumps(record, indent=2) + "\n")
    if run_id is not None:
        import mlflow

        from spinfer.serve.pyfunc import log_served_models
        from spinfer.tracking import setup_tracking

        setup_tracking(params, root)
        with mlflow.start_run(run_id=run_id):
            if paths.best.is_file():  # last.pt (optimizer state) stays a DVC output only
                mlflow.log_artifact(str(paths.best), artifact_path="checkpoints")
            log_served_models(bundle)
    return bundle


def recorded_run_id(paths: RunPaths) -> str | None:
    """The MLflow run id that trained the run at ``paths`` (None: untracked or unknown)."""
    record = paths.out / RUN_RECORD
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text()).get("run_id")
    except (OSError, json.JSONDecodeError):
        return None


def tracked_run(params: Params, root: Path, paths: RunPaths) -> str | None:
    """The recorded MLflow run id of ``paths`` when the project's store still holds that
    run (tracking set up); None, with a warning when the store has lost it, otherwise."""
    from spinfer.tracking import run_exists, setup_tracking

    run_id = recorded_run_id(paths)
    if run_id is None:
        return None
    setup_tracking(params, root)
    if not run_exists(run_id):
        log.warning("%s: MLflow run %s is not in the store; nothing logged", paths.name, run_id)
        return None
    return run_id
