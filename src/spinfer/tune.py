"""Optuna studies over capacity and training settings; every trial an MLflow run.

``tune(params, study, trials)`` runs (or continues) the study ``study`` in the persistent
storage ``tune.storage``: each trial draws an architecture, training data, learning rate,
batch size, weight decay (and the CNN's width and depth), trains ``tune.epochs`` epochs
and returns its best validation MAE (normalized, mean over lambda, K, D). Every epoch is
reported to a MedianPruner. A trial whose loss diverges is recorded as failed and the study
goes on.

Safe to kill and rerun: trials of this host whose process has died are marked failed
(orphans) before new ones start, and SQLite storage also has Optuna's heartbeat for workers
on other hosts. Two processes may work on one study at once; the study's MLflow parent run
is created once under a file lock.

MLflow: one parent run per study in the experiment ``tune.experiment`` (tag
``optuna.study``), each trial a nested run (``mlflow.parentRunId``) with its params,
per-epoch metrics and final objective; the parent carries the best value and params and
the optimization-history and parameter-importance figures. The best trial's settings are
written to ``tune.best_out`` (tuned.yaml), which ``spinfer train --tuned`` and the
``tuned`` stage of dvc.yaml retrain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spinfer.config import Params, TuneParams
from spinfer.errors import ConfigError, InputError, TrainingDiverged
from spinfer.io import atomic_write_text

TUNED_HEADER = "# the best trial of an Optuna study; retrained by `dvc repro` (stage tuned)\n"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudySummary:
    study: str
    trials: int  # trials in the study, all states
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    best_out: Path | None
    parent_run_id: str


def storage_path(tune: TuneParams, root: Path) -> Path:
    """The file behind ``tune.storage`` (relative paths resolve against ``root``)."""
    raw = tune.storage.removeprefix("sqlite:///").removeprefix("journal:")
    path = Path(raw)
    return path if path.is_absolute() else root / path


def open_storage(tune: TuneParams, root: Path):
    """The Optuna storage named by ``tune.storage``, created if missing."""
    import optuna

    path = storage_path(tune, root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if tune.storage.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
            return optuna.storages.RDBStorage(
                f"sqlite:///{path.resolve()}",
                engine_kwargs={"connect_args": {"timeout": 60}},
                heartbeat_interval=30,
                grace_period=120,
            )
    except Exception as exc:  # sqlalchemy / OS errors for an unusable path
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot open the study storage {tune.storage}: {first}") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process working on studies in one storage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphans(study) -> list[int]:
    """Mark RUNNING trials whose worker is gone as failed; their numbers. Trials of this
    host are checked by process id (at once); trials of other hosts by Optuna's heartbeat
    (``optuna.storages.fail_stale_trials``, after its grace period, SQLite storage)."""
    import mlflow
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        attrs = trial.user_attrs
        if attrs.get("host") != host or _alive(int(attrs.get("pid", -1))):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tell() warns that a failed trial has no value
            study.tell(trial.number, state=TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    orphans = [t for t in running if t.number in failed]
    client = mlflow.MlflowClient()
    for trial in orphans:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            with contextlib.suppress(Exception):
                client.set_tag(run_id, "failure", "orphaned: worker died")
                client.set_terminated(run_id, status="FAILED")
    return sorted(t.number for t in orphans)


def suggest(trial, tune: TuneParams) -> dict[str, Any]:
    """One point of the search space (the CNN's width and depth only for the CNN)."""

    def ranged(name: str, lo: float, hi: float, log: bool = True) -> float:
        if lo == hi:
            return lo
        return trial.suggest_float(name, lo, hi, log=log and lo > 0)

    choice = {
        "model": trial.suggest_categorical("model", list(tune.models)),
        "training_data": trial.suggest_categorical("training_data", list(tune.training_data)),
        "lr": ranged("lr", *tune.lr),
        "batch_size": trial.suggest_categorical("batch_size", list(tune.batch_size)),
        "weight_decay": ranged("weight_decay", *tune.weight_decay),
    }
    if tune.out_of_plane_share is not None:
        share = ranged("out_of_plane_share", *tune.out_of_plane_share, log=False)
        choice["out_of_plane_share"] = share
    if choice["model"] == "cnn":
        choice["cnn_width"] = trial.suggest_int("cnn_width", *tune.cnn_width, log=True)
        choice["cnn_depth"] = trial.suggest_int("cnn_depth", *tune.cnn_depth)
    return choice


def trial_params(params: Params, choice: dict[str, Any], out: str, epochs: int) -> Params:
    """``params`` with a trial's training settings, writing under ``out``. A trial trains
    one model (no ensemble): the pruner follows one learning curve."""
    train = dataclasses.replace(
        params.train,
        ensemble=None,
        lr=float(choice["lr"]),
        batch_size=int(choice["batch_size"]),
        weight_decay=float(choice["weight_decay"]),
        cnn_width=int(choice.get("cnn_width", params.train.cnn_width)),
        cnn_depth=int(choice.get("cnn_depth", params.train.cnn_depth)),
        out_of_plane_share=choice.get("out_of_plane_share", params.train.out_of_plane_share),
        epochs={choice["model"]: epochs},
        out=f"{out}/models",
        eval_out=f"{out}/eval",
    )
    return dataclasses.replace(params, train=train)


def _parent_run(params: Params, root: Path, study_name: str, storage_file: Path) -> str:
    """The study's MLflow parent run, created once (under a lock) and reused on resume."""
    import mlflow

    from spinfer.tracking import flat_params, provenance_tags, recorded_run, setup_tracking

    tracking = dataclasses.replace(params.tracking, experiment=params.tune.experiment)

    def create() -> str:
        with mlflow.start_run(experiment_id=experiment, run_name=f"study-{study_name}") as run:
            mlflow.set_tags(
                {"kind": "study", "optuna.study": study_name, **provenance_tags(params, root)}
            )
            space = {f"space.{k}": v for k, v in dataclasses.asdict(params.tune).items()}
            mlflow.log_params({**flat_params(params), **space})
        return run.info.run_id

    with _locked(storage_file.with_suffix(".lock")):  # one process creates store and run
        experiment = setup_tracking(dataclasses.replace(params, tracking=tracking), root)
        record = storage_file.parent / f"{study_name}.run.json"
        return recorded_run(record, create, study=study_name)


def make_objective(params: Params, root: Path, study_name: str, parent: str, progress: bool):
    import mlflow
    import optuna

    from spinfer.train.loop import train_run
    from spinfer.train.runs import check_run

    tune = params.tune

    def objective(trial: optuna.Trial) -> float:
        choice = suggest(trial, tune)
        check_run(choice["model"], choice["training_data"])
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        out = f"artifacts/tune/{study_name}/trial-{trial.number:04d}"
        p = trial_params(params, choice, out, tune.epochs)
        p = dataclasses.replace(
            p, tracking=dataclasses.replace(p.tracking, experiment=tune.experiment)
        )
        best = {"value": float("inf"), "run_id": None}

        def on_epoch(record: dict[str, Any]) -> None:
            if best["run_id"] is None:
                best["run_id"] = _trial_run_id(tune.experiment, study_name, trial.number)
                trial.set_user_attr("mlflow_run_id", best["run_id"])
            best["value"] = min(best["value"], record["val_mae"])
            trial.report(record["val_mae"], step=int(record["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

        tags = {
            "mlflow.parentRunId": parent,
            "kind": "trial",
            "optuna.study": study_name,
            "optuna.trial": str(trial.number),
        }
        try:
            train_run(p, choice["model"], choice["training_data"], root, resume=False,
                      progress=progress, on_epoch=on_epoch, tags=tags)  # fmt: skip
        except optuna.TrialPruned:
            _close_trial_run(best["run_id"], "PRUNED", best["value"])
            raise
        except TrainingDiverged as exc:
            trial.set_user_attr("failure", str(exc))
            raise
        _close_trial_run(best["run_id"], "COMPLETE", best["value"])
        with contextlib.suppress(Exception):
            mlflow.MlflowClient().log_param(best["run_id"], "optuna.params", json.dumps(choice))
        return best["value"]

    return objective


def _trial_run_id(experiment: str, study_name: str, number: int) -> str | None:
    """The MLflow run of a trial, found by its tags (train_run created it)."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=(
            f"tags.kind = 'trial' and tags.`optuna.study` = '{study_name}' "
            f"and tags.`optuna.trial` = '{number}'"
        ),
        output_format="list",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _close_trial_run(run_id: str | None, state: str, value: float) -> None:
    import math

    import mlflow

    if run_id is None:
        return
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "optuna.state", state)
    if math.isfinite(value):
        client.log_metric(run_id, "objective_val_mae", value)
    client.set_terminated(run_id, status="FINISHED")


def tune(
    params: Params, study_name: str, trials: int, root: Path | str = ".", progress: bool = False
) -> StudySummary:
    """Run ``trials`` more trials of ``study_name`` (created or continued)."""
    import optuna

    if trials < 1:
        raise InputError(f"--trials must be >= 1, got {trials}")
    if not study_name or any(c in study_name for c in "/'\"\\"):
        raise InputError(f"invalid study name {study_name!r}")
    root = Path(root)
    from spinfer.models.networks import is_known_model

    unknown = [m for m in params.tune.models if not is_known_model(m)]
    if unknown:
        raise ConfigError(f"tune.models: unknown model '{unknown[0]}' (not a timm model name)")
    storage_file = storage_path(params.tune, root)
    tune_cfg = params.tune
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=tune_cfg.startup_trials, n_warmup_steps=tune_cfg.warmup_epochs
    )
    with _locked(storage_file.with_suffix(".lock")):  # one process creates the schema
        storage = open_storage(params.tune, root)
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="minimize", load_if_exists=True
        )
        # seeded by the trials done so far: a resumed single worker stays reproducible
        seed = tune_cfg.seed + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    study.pruner = pruner
    parent = _parent_run(params, root, study_name, storage_file)
    orphans = fail_orphans(study)
    if orphans:
        log.warning("tune: marked orphaned trials %s as failed", orphans)
    objective = make_objective(params, root, study_name, parent, progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(objective, n_trials=trials, catch=(TrainingDiverged,))
    return summarize(params, root, study, parent)


def summarize(params: Params, root: Path, study, parent: str) -> StudySummary:
    """Best value and params to the parent run with the figures; tuned.yaml written."""
    from optuna.trial import TrialState

    all_trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in all_trials) for s in TrialState}
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    best_out = None
    if best is not None:
        best_out = write_best(params, root, study.study_name, best)
    _log_parent(params, root, study, parent, best)
    return StudySummary(
        study=study.study_name,
        trials=len(all_trials),
        complete=count[TrialState.COMPLETE],
        pruned=count[TrialState.PRUNED],
        failed=count[TrialState.FAIL],
        best_value=None if best is None else float(best.value),
        best_params={} if best is None else dict(best.params),
        best_trial=None if best is None else best.number,
        best_out=best_out,
        parent_run_id=parent,
    )


def best_settings(params: Params, trial) -> dict[str, Any]:
    """The tuned.yaml mapping of a trial: model, training data and train overrides."""
    p = trial.params
    model = p["model"]
    train: dict[str, Any] = {
        "lr": float(p.get("lr", params.tune.lr[0])),
        "batch_size": int(p["batch_size"]),
        "weight_decay": float(p.get("weight_decay", params.tune.weight_decay[0])),
        "epochs": max(params.tune.epochs, params.train.epochs.get(model, 0)),
    }
    if "out_of_plane_share" in p:
        train["out_of_plane_share"] = float(p["out_of_plane_share"])
    elif params.tune.out_of_plane_share is not None:  # a range with equal ends
        train["out_of_plane_share"] = float(params.tune.out_of_plane_share[0])
    if model == "cnn":
        train["cnn_width"] = int(p["cnn_width"])
        train["cnn_depth"] = int(p["cnn_depth"])
    return {
        "study": trial.study_name if hasattr(trial, "study_name") else None,
        "trial": trial.number,
        "val_mae": float(trial.value),
        "model": model,
        "data": p["training_data"],
        "train": train,
    }


def write_best(params: Params, root: Path, study_name: str, trial) -> Path:
    settings = best_settings(params, trial)
    settings["study"] = study_name
    path = root / params.tune.best_out
    atomic_write_text(path, TUNED_HEADER + yaml.safe_dump(settings, sort_keys=False))
    return path


def _log_parent(params: Params, root: Path, study, parent: str, best) -> None:
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import optuna

    from spinfer.render import save_figure

    client = mlflow.MlflowClient()
    figures = root / "artifacts" / "tune" / study.study_name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if best is not None:
            client.log_metric(parent, "best_val_mae", float(best.value))
            client.set_tag(parent, "best_trial", str(best.number))
            for key, value in best.params.items():
                client.set_tag(parent, f"best.{key}", str(value))
        history = optuna.visualization.matplotlib.plot_optimization_history(study)
        path = save_figure(history.figure, figures / "optimization_history.png")
        client.log_artifact(parent, str(path), artifact_path="figures")
        plt.close("all")
        done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
        if len(done) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in done}) >= 2:
            try:
                axes = optuna.visualization.matplotlib.plot_param_importances(study)
            except (RuntimeError, ValueError, ZeroDivisionError):
                axes = None  # too few distinct trials for an importance estimate
            if axes is not None:
                path = save_figure(axes.figure, figures / "param_importances.png")
                client.log_artifact(parent, str(path), artifact_path="figures")
        plt.close("all")
    values = [t.value for t in study.get_trials(deepcopy=False) if t.value is not None]
    client.log_metric(parent, "trials", float(len(study.get_trials(deepcopy=False))))
    if values and all(math.isfinite(v) for v in values):
        client.log_metric(parent, "mean_val_mae", float(sum(values) / len(values)))


def write_no_trial(params: Params, root: Path, tuned: Path) -> str:
    """The tuned stage's outputs while no study has written ``tuned``; returns why."""
    from spinfer.train.grid import write_not_trained

    why = f"{tuned} names no trial yet (run `spinfer train tune`)"
    for folder in (params.train.out, params.train.eval_out):
        write_not_trained(root / folder / "tuned", why)
    return why


def load_tuned(path: Path | str) -> dict[str, Any] | None:
    """The settings in a tuned.yaml, or None when no study has written one yet."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (run `spinfer train tune` first)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping")
    if data.get("model") is None:
        return None
    for key in ("model", "data", "train"):
        if key not in data:
            raise InputError(f"{path}: missing key '{key}'")
    return data


def tuned_overrides(settings: dict[str, Any], params: Params) -> list[str]:
    """``--set`` overrides that turn params into the tuned run's config."""
    train = dict(settings["train"])
    epochs = {**params.train.epochs, settings["model"]: int(train.pop("epochs"))}
    overrides = [f"train.{k}={json.dumps(v)}" for k, v in train.items()]
    overrides.append(f"train.epochs={json.dumps(epochs)}")
    return overrides


def tuned_run(settings: dict[str, Any], base: Params) -> tuple[str, str, list[str]]:
    """(model, data, overrides) that turn ``base`` into the study winner's run, written
    under ``<train.out>/tuned`` and ``<train.eval_out>/tuned`` (the tuned stage's outputs)."""
    return (
        settings["model"],
        settings["data"],
        [
            *tuned_overrides(settings, base),
            f"train.out={base.train.out}/tuned",
            f"train.eval_out={base.train.eval_out}/tuned",
        ],
    )
