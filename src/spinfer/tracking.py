"""MLflow set-up: one local SQLite store, one experiment, flat params, provenance tags.

The tracking URI ``sqlite:///mlruns/mlflow.db`` is relative: it resolves against the
project root (the directory holding params.yaml), so every command, test and the UI
(``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``, run from the root) see the
same store. Artifacts go to ``mlruns/artifacts``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spinfer.config import Params, to_dict
from spinfer.errors import InputError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def resolve_uri(uri: str, root: Path) -> str:
    """Absolute form of a relative ``sqlite:///`` URI (other URIs pass through)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri[len(prefix) :]).resolve())
    return uri


def setup_tracking(params: Params, root: Path | str = ".") -> str:
    """Point MLflow at the store, create it and the experiment once; returns the id."""
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    root = Path(root)
    uri = resolve_uri(params.tracking.uri, root)
    mlflow.set_tracking_uri(uri)
    name = params.tracking.experiment
    try:
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = (root / params.tracking.artifacts).resolve()
            location.mkdir(parents=True, exist_ok=True)
            return mlflow.create_experiment(name, artifact_location=location.as_uri())
        return experiment.experiment_id
    except MlflowException as exc:
        raise InputError(f"cannot open the MLflow tracking store {uri}: {exc}") from None
    except Exception as exc:  # sqlalchemy errors for unopenable paths
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot open the MLflow tracking store {uri}: {first}") from None


def flat_params(params: Params) -> dict[str, str]:
    """The whole resolved config as flat ``section.key`` -> string (MLflow params)."""
    out: dict[str, str] = {"profile": params.profile}
    for section, values in to_dict(params).items():
        if isinstance(values, dict):
            for key, value in values.items():
                out[f"{section}.{key}"] = (
                    json.dumps(value) if not isinstance(value, str) else value
                )
    return out


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


def provenance_tags(params: Params, root: Path) -> dict[str, Any]:
    from spinfer.data.store import git_commit

    return {
        "git_commit": git_commit(root),
        "dataset.textures": dataset_hash(root, params.dataset.out),
        "dataset.noisy": dataset_hash(root, params.noise.out),
        "profile": params.profile,
    }
