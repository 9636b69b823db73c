"""``spinfer predict``: spin images from a file through a registered (or any) MLflow model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinfer.errors import InputError
from spinfer.io import read_array


def read_spin_images(path: Path | str) -> np.ndarray:
    """(N, Lx, Ly, 3) float32 from .npy/.npz (one image or a batch) or a spinfer Zarr store."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        from spinfer.data.store import open_store

        group = open_store(path)
        if "spins" not in group:
            raise InputError(f"{path}: the store holds no 'spins' array")
        arr = group["spins"][:]
    else:
        arr = read_array(path)
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{path}: expected spins of shape (N, Lx, Ly, 3), got {arr.shape}")
    return arr.astype(np.float32)


def load_model(uri: str, tracking_uri: str):
    """An MLflow pyfunc model by URI (``models:/NAME@ALIAS``, ``runs:/ID/model``, a path)
    from the store at ``tracking_uri``."""
    from spinfer.tracking import use_store

    use_store(tracking_uri)
    return load_pyfunc(uri)


def load_pyfunc(uri: str):
    """An MLflow pyfunc model by URI from the active store; InputError in one line when it
    cannot be loaded (unknown name or alias, missing run, unreadable files)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        first = str(exc.message).splitlines()[0]
        raise InputError(f"cannot load model {uri}: {first}") from None
    except OSError as exc:
        raise InputError(f"cannot load model {uri}: {exc}") from None


def predict_file(path: Path | str, model_uri: str, tracking_uri: str, crops: str = "centre"):
    """Predictions for every image (and panel) of a file, as a DataFrame."""
    from mlflow.exceptions import MlflowException

    spins = read_spin_images(path)
    model = load_model(model_uri, tracking_uri)
    try:
        return model.predict(spins, params={"crops": crops})
    except MlflowException as exc:
        raise InputError(f"{path}: {exc.message.splitlines()[-1]}") from None
