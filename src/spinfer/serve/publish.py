"""What a finished training publishes: its predictor bundle (spinfer.train.bundle) and,
in its MLflow run, both served pyfunc variants of that bundle.

Training stops at the bundle; serving owns what is served, so the served models are
logged here, one level above training (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path

from spinfer.config import Params


def publish_run(
    params: Params, model_name: str, data: str, root: Path | str, run_id: str | None
) -> Path:
    """``finish_run`` (model.pt, run.json, the best checkpoint in the run), then the served
    models into the same MLflow run (``run_id``; None: no tracking). Returns model.pt."""
    from spinfer.train.bundle import finish_run

    bundle = finish_run(params, model_name, data, root, run_id)
    if run_id is not None:
        import mlflow

        from spinfer.serve.pyfunc import log_served_models
        from spinfer.tracking import setup_tracking

        setup_tracking(params, Path(root))
        with mlflow.start_run(run_id=run_id):
            log_served_models(bundle)
    return bundle
