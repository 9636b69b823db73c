"""MLflow set-up: one local SQLite store, one experiment, flat params, provenance tags.

The tracking URI ``sqlite:///mlruns/mlflow.db`` is relative: it resolves against the
project root (the directory holding params.yaml), so every command, test and the UI
(``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``, run from the root) see the
same store. Artifacts go to ``mlruns/artifacts``.

``MLFLOW_TRACKING_URI``, when set, wins over ``tracking.uri``: ``dvc exp run --temp`` and
``--queue`` run the pipeline in a copy of the project, so they keep their runs and registry
changes in the project's store only when pointed at it
(``MLFLOW_TRACKING_URI=sqlite:///$PWD/mlruns/mlflow.db dvc exp run --queue``). A new
experiment there keeps its artifacts beside that SQLite file.

Experiments are tagged ``mlflow.experimentKind = custom_model_development`` so the UI
opens on their training runs (not on the GenAI trace views).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spinfer.config import Params, to_dict, to_plain
from spinfer.errors import InputError
from spinfer.io import atomic_write_text

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def resolve_uri(uri: str, root: Path) -> str:
    """Absolute form of a relative ``sqlite:///`` URI (other URIs pass through)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri[len(prefix) :]).resolve())
    return uri


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def store_uri(params: Params, root: Path | str = ".") -> str:
    """The tracking store: ``MLFLOW_TRACKING_URI`` when set, else ``tracking.uri``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or resolve_uri(params.tracking.uri, Path(root))


def use_store(uri: str) -> None:
    """Point this process's MLflow at ``uri`` without exporting it: MLflow's
    set_tracking_uri also sets MLFLOW_TRACKING_URI, which would redirect every later
    subprocess (another project's command included) to this store."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def _artifact_location(params: Params, root: Path, uri: str) -> Path | None:
    """Where a new experiment keeps artifacts: tracking.artifacts, or beside the SQLite
    store named by MLFLOW_TRACKING_URI (a server decides for itself: None)."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return (root / params.tracking.artifacts).resolve()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent / Path(params.tracking.artifacts).name
    return None


def setup_tracking(params: Params, root: Path | str = ".") -> str:
    """Point MLflow at the store, create it and the experiment once; returns the id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    root = Path(root)
    uri = store_uri(params, root)
    use_store(uri)
    name = params.tracking.experiment
    try:
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = _artifact_location(params, root, uri)
            if location is not None:
                location.mkdir(parents=True, exist_ok=True)
            return mlflow.create_experiment(
                name,
                artifact_location=location.as_uri() if location else None,
                tags=EXPERIMENT_KIND,
            )
        if experiment.tags.get("mlflow.experimentKind") is None:  # stores made before the tag
            for key, value in EXPERIMENT_KIND.items():
                mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    except MlflowException as exc:
        raise InputError(f"cannot open the MLflow tracking store {uri}: {exc}") from None
    except Exception as exc:  # sqlalchemy errors for unopenable paths
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot open the MLflow tracking store {uri}: {first}") from None


#: the config keys that decide a training run's weights, logged as MLflow params (the columns
#: the UI compares runs by); the whole resolved config is logged beside them as a file
RUN_PARAMS = {
    "base": ("seed",),
    "physics": ("size", "kshape_factor"),
    "dataset": ("sets", "per_set", "engine"),
    "schedule": ("randomize",),
    "noise": ("amplitude", "microscope"),
}
#: train.* keys that say where and how fast, not what is learned
_TRAIN_PLACES = ("out", "eval_out", "device", "loader_workers", "grid")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def flat_params(params: Params) -> dict[str, str]:
    """The keys that decide a run (``RUN_PARAMS`` and every train.* key but the places) as
    flat ``section.key`` -> string MLflow params."""
    config = to_dict(params)
    out: dict[str, str] = {"profile": params.profile}
    for section, keys in RUN_PARAMS.items():
        out.update({f"{section}.{k}": _text(config[section][k]) for k in keys})
    for key, value in config["train"].items():
        if key not in _TRAIN_PLACES:
            out[f"train.{key}"] = _text(value)
    return out


def log_config(params: Params) -> None:
    """The whole resolved config into the active run as ``config/params.yaml``."""
    import mlflow

    mlflow.log_dict(to_plain(params), "config/params.yaml")


def dataset_hash(root: Path, path: str) -> str:
    """DVC's md5 of a pipeline output from dvc.lock, else the store's manifest sha256."""
    import hashlib

    lock = root / "dvc.lock"
    if lock.is_file():
        import yaml

        doc = yaml.safe_load(lock.read_text()) or {}
        for stage in (doc.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                if out.get("path") == path and out.get("md5"):
                    return f"md5:{out['md5']}"
    manifest = root / path / "manifest.sha256"
    if manifest.is_file():
        return "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()
    return "unknown"


def log_dataset_inputs(params: Params, root: Path, tags: dict[str, Any]) -> None:
    """The active run's datasets as MLflow inputs (the UI's Datasets column): the texture
    store and the training copies, by path and the content hash of ``provenance_tags``
    (dvc.lock's md5 or the manifest's sha256, shortened to MLflow's 36 characters)."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    stores = ((params.dataset.out, tags["dataset.textures"]),
              (params.noise.out, tags["dataset.noisy"]))  # fmt: skip
    for path, digest in stores:
        digest = digest.split(":")[-1].removesuffix(".dir")[:32]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "can be interpreted in multiple ways"
            source = resolve_dataset_source(str((root / path).resolve()))
        mlflow.log_input(
            MetaDataset(source, name=Path(path).name, digest=digest), context="training"
        )


def provenance_tags(params: Params, root: Path) -> dict[str, Any]:
    from spinfer.data.store import git_commit

    return {
        "git_commit": git_commit(root),
        "dataset.textures": dataset_hash(root, params.dataset.out),
        "dataset.noisy": dataset_hash(root, params.noise.out),
        "dataset.test_noise": dataset_hash(root, params.noise.test_out),
        "profile": params.profile,
    }


def run_exists(run_id: str) -> bool:
    """True when the current tracking store holds the run ``run_id``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def read_run_id(record: Path) -> str | None:
    """The ``run_id`` a JSON record keeps (None: no record, unreadable, or untracked)."""
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text()).get("run_id")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def recorded_run(record: Path, create: Callable[[], str], **extra: Any) -> str:
    """The MLflow run whose id the JSON file ``record`` keeps, while the store holds it;
    otherwise a new one, ``create()`` (its id), written to ``record`` with ``extra``.

    How a parent run (an ensemble's, an ablation's, a study's) is found again when its work
    resumes: by the id it recorded, never by a search over tags.
    """
    run_id = read_run_id(record)
    if run_id and run_exists(run_id):
        return run_id
    run_id = create()
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"run_id": run_id, **extra}) + "\n")
    return run_id
