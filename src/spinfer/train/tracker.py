"""MLflow for a training run: one run per (model, data), open from the first epoch to the
last, reopened by id when a killed training resumes; only rank 0 talks to MLflow."""

from __future__ import annotations

from spinfer.models.networks import count_parameters
from spinfer.tracking import run_exists


class Tracker:
    """MLflow for rank 0: one run per (model, data), open (RUNNING) for the whole training;
    a resumed training reopens its run by id, and the UI never shows it finished between
    epochs."""

    def __init__(self, params, paths, root, state, dist, model_name, data, net, tags) -> None:
        self.enabled = dist.main
        self.state = state
        if not self.enabled:
            return
        import mlflow

        from spinfer.tracking import setup_tracking

        experiment = setup_tracking(params, root)
        if state.run_id is None or not run_exists(state.run_id):
            # a new run, or the store lost it: start one and replay the history
            state.run_id = start_run(params, root, experiment, paths.name, model_name, data,
                                     net, tags)  # fmt: skip
        else:
            mlflow.start_run(run_id=state.run_id)
        if state.history and not has_history(state.run_id):
            for record in state.history:
                self.epoch(record)

    def epoch(self, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        import mlflow

        step = int(record["epoch"])
        metrics = {k: v for k, v in record.items() if k not in ("epoch", "seconds")}
        metrics.update(epoch_seconds=record["seconds"], best_val_mse=self.state.best_val)
        mlflow.log_metrics(metrics, step=step, run_id=self.state.run_id)

    def end(self, status: str = "FINISHED") -> None:
        """End the MLflow run: FINISHED after the last epoch, FAILED or KILLED after an error."""
        if not self.enabled or self.state.run_id is None:
            return
        import mlflow

        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.state.run_id:
            mlflow.end_run(status=status)
        else:
            mlflow.MlflowClient().set_terminated(self.state.run_id, status=status)


def start_run(params, root, experiment, name, model_name, data, net, extra) -> str:
    """A new training run, left active: the params that decide it, the resolved config as a
    file, its datasets, provenance and the tags the UI compares by."""
    import mlflow

    from spinfer.tracking import flat_params, log_config, log_dataset_inputs, provenance_tags

    tags = provenance_tags(params, root)
    run = mlflow.start_run(experiment_id=experiment, run_name=name)
    log_dataset_inputs(params, root, tags)
    mlflow.log_params(flat_params(params))
    log_config(params)
    mlflow.log_params(  # the data and code hashes are tags (provenance_tags)
        {"model": model_name, "training_data": data, "parameters": count_parameters(net)}
    )
    mlflow.set_tags(
        {
            "architecture": model_name,
            "training_data": data,
            "run": name,
            "kind": "training",
            **tags,
            **(extra or {}),
        }
    )
    return run.info.run_id


def has_history(run_id: str) -> bool:
    import mlflow

    return bool(mlflow.MlflowClient().get_metric_history(run_id, "train_objective"))
