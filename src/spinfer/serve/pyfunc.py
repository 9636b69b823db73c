"""The MLflow model: spin images in, (lambda, K, D) in physical-model units (J = 1) out.

Input: float32 (N, Lx, Ly, 3) unit spins (Sx, Sy, Sz), the layout of the texture stores,
Lx, Ly >= L (the training size, 100 on the default profile). Larger images are cropped to
their centre L x L, or, with the predict parameter ``crops="grid"``, cut into every
non-overlapping L x L panel. Output: one row per panel with ``image``, ``panel``,
``lambda``, ``K``, ``D`` (physical), their calibrated standard deviations ``lambda_std``,
``K_std``, ``D_std`` (NaN for a single point-head model), and the same normalized to the
training ranges (``lambda_n``, ``lambda_n_std``, ...). The model is a run's predictor
bundle (spinfer.models.predictor: ensemble members, test-time averaging, calibration
factors) or a single best checkpoint. Bad input (rank, shape, non-finite values, vectors
far from unit length, too many images) is refused with a short message; near-unit vectors
are renormalized.

The spinfer package travels with the model (``code_paths``), so the model loads in a clean
process without the source tree; torch, timm and numpy must be installed (the project
venv: ``mlflow models serve -m models:/spinfer@champion --env-manager local``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from spinfer.data.panels import cut_panels, panel_corners
from spinfer.data.targets import TARGET_NAMES

UNIT_TOLERANCE = 0.05  # |S| may deviate this much before it is refused (then renormalized)
MAX_BATCH = 512
CROPS = ("centre", "grid")
# the compact model's table: float32 little-endian bytes of an (lx, ly, 3) image, C order
COMPACT_COLUMNS = ("spins", "lx", "ly")
COMPACT_ARTIFACT = "compact"  # its name in the run; registered as <name>-compact


class InputRejected(ValueError):
    """A request the model refuses; the message names the problem."""


def check_spins(spins: Any, size: int, max_batch: int = MAX_BATCH) -> np.ndarray:
    """Validated (N, Lx, Ly, 3) float32 unit spins, or InputRejected naming the problem."""
    try:
        arr = np.asarray(spins, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputRejected("input is not a numeric array") from None
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputRejected(f"expected spins of shape (N, Lx, Ly, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise InputRejected("the batch is empty")
    if arr.shape[0] > max_batch:
        raise InputRejected(f"batch of {arr.shape[0]} images exceeds the limit of {max_batch}")
    if arr.shape[1] < size or arr.shape[2] < size:
        raise InputRejected(
            f"images must be at least {size}x{size}, got {arr.shape[1]}x{arr.shape[2]}"
        )
    finite = np.isfinite(arr).all(axis=(1, 2, 3))
    if not finite.all():
        raise InputRejected(f"image {int(np.argmin(finite))} holds NaN or infinite values")
    norm = np.linalg.norm(arr, axis=-1, keepdims=True)
    off = np.abs(norm - 1.0).max(axis=(1, 2, 3))
    if off.max() > UNIT_TOLERANCE:
        i = int(np.argmax(off))
        raise InputRejected(
            f"image {i}: spins must be unit vectors (|S| deviates by up to {off[i]:.3g}, "
            f"tolerance {UNIT_TOLERANCE})"
        )
    return arr / norm


def panels(arr: np.ndarray, size: int, crops: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, L, L, 3) panels with their image and panel indices."""
    n, lx, ly, _ = arr.shape
    if crops == "centre":
        x0, y0 = (lx - size) // 2, (ly - size) // 2
        return arr[:, x0 : x0 + size, y0 : y0 + size], np.arange(n), np.zeros(n, dtype=int)
    corners = panel_corners((lx, ly), size)
    tiles = np.concatenate([cut_panels(a, corners, size) for a in arr])
    return tiles, np.repeat(np.arange(n), len(corners)), np.tile(np.arange(len(corners)), n)


class SpinferModel(mlflow.pyfunc.PythonModel):
    """Wraps a best-validation checkpoint."""

    def load_context(self, context) -> None:
        from spinfer.models.predictor import load_predictor

        np.set_printoptions(threshold=50, edgeitems=2)  # keep server error echoes short
        self.predictor = load_predictor(Path(context.artifacts["checkpoint"]))
        self.scaler = self.predictor.scaler
        self.size = self.predictor.size
        self.max_batch = MAX_BATCH

    def predict(self, context, model_input: np.ndarray, params=None):
        return self.predict_spins(model_input, params)

    def predict_spins(self, spins, params=None, decode=None):
        """Rows of estimates for ``spins`` (``decode`` first turns the input into spins)."""
        import torch

        crops = (params or {}).get("crops", "centre")
        try:
            if crops not in CROPS:
                raise InputRejected(f"crops must be one of {', '.join(CROPS)}, got {crops!r}")
            if decode is not None:
                spins = decode(spins)
            arr = check_spins(spins, self.size, self.max_batch)
        except InputRejected as exc:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        tiles, image, panel = panels(arr, self.size, crops)
        x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)))
        parts = [self.predictor.predict(x[i : i + 64]) for i in range(0, len(x), 64)]
        pred_n = np.concatenate([p[0] for p in parts])
        std_n = np.concatenate([p[1] for p in parts])
        phys, std = self.scaler.denormalize(pred_n), std_n * self.scaler.span
        frame = pd.DataFrame({"image": image, "panel": panel})
        for suffix, values in (("", phys), ("_std", std), ("_n", pred_n), ("_n_std", std_n)):
            for j, name in enumerate(TARGET_NAMES):
                frame[f"{name}{suffix}"] = values[:, j]
        return frame


class SpinferCompactModel(SpinferModel):
    """The same estimator, fed one image per table row as raw float32 bytes.

    MLflow's scoring server spends tens of milliseconds per 100x100 image parsing and
    copying JSON nested lists before the model runs (more than the ResNet18 forward pass);
    a row of bytes (base64 in JSON, as MLflow encodes binary columns, or native in Parquet)
    costs almost nothing. See ``COMPACT_COLUMNS``.
    """

    def predict(self, context, model_input: pd.DataFrame, params=None):
        return self.predict_spins(model_input, params, decode=decode_compact)


def encode_compact(spins: np.ndarray):
    """The compact model's input for (N, Lx, Ly, 3) spins: a DataFrame, one row per image."""
    arr = np.asarray(spins, dtype="<f4")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputRejected(f"expected spins of shape (N, Lx, Ly, 3), got {arr.shape}")
    return pd.DataFrame(
        {
            "spins": [np.ascontiguousarray(a).tobytes() for a in arr],
            "lx": np.full(len(arr), arr.shape[1], dtype=np.int64),
            "ly": np.full(len(arr), arr.shape[2], dtype=np.int64),
        }
    )


def compact_request(spins: np.ndarray) -> dict:
    """A JSON body for ``/invocations`` of the compact model (``dataframe_split``)."""
    import base64

    frame = encode_compact(spins)
    rows = [
        [base64.b64encode(b).decode("ascii"), int(lx), int(ly)]
        for b, lx, ly in zip(frame["spins"], frame["lx"], frame["ly"], strict=True)
    ]
    return {"dataframe_split": {"columns": list(COMPACT_COLUMNS), "data": rows}}


def decode_compact(frame) -> np.ndarray:
    """(N, Lx, Ly, 3) float32 from the compact table, or InputRejected naming the problem."""
    if not isinstance(frame, pd.DataFrame):
        raise InputRejected(
            f"the compact model takes a table with columns {', '.join(COMPACT_COLUMNS)}"
        )
    missing = [c for c in COMPACT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputRejected(f"missing column(s) {', '.join(missing)}")
    if len(frame) == 0:
        raise InputRejected("the batch is empty")
    try:
        shapes = {(int(lx), int(ly)) for lx, ly in zip(frame["lx"], frame["ly"], strict=True)}
    except (TypeError, ValueError):
        raise InputRejected("lx and ly must be integers") from None
    if len(shapes) != 1:
        raise InputRejected("all images of one request must have the same lx, ly")
    lx, ly = shapes.pop()
    if lx <= 0 or ly <= 0:
        raise InputRejected(f"lx and ly must be positive, got {lx}, {ly}")
    images = []
    for i, raw in enumerate(frame["spins"]):
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise InputRejected(f"image {i}: spins must be bytes (base64 in JSON)")
        if len(raw) != lx * ly * 3 * 4:
            raise InputRejected(
                f"image {i}: {len(raw)} bytes, expected {lx * ly * 3 * 4} "
                f"(float32 little-endian, {lx}x{ly}x3)"
            )
        images.append(np.frombuffer(raw, dtype="<f4").reshape(lx, ly, 3))
    return np.stack(images)


def load_for_prediction(checkpoint: Path) -> SpinferModel:
    """The pyfunc wrapper, loaded in this process (no MLflow store involved)."""
    model = SpinferModel()
    model.load_context(SimpleNamespace(artifacts={"checkpoint": str(checkpoint)}))
    return model


def _example_and_outputs(checkpoint: Path):
    """A saturated +z example of the model's size and the signature inferred from the
    checkpoint's prediction on it (loads the predictor bundle once per call)."""
    from mlflow.models import infer_signature

    probe = load_for_prediction(checkpoint)
    example = np.zeros((1, probe.size, probe.size, 3), dtype=np.float32)
    example[..., 2] = 1.0
    with warnings.catch_warnings():  # image/panel are integer columns by design
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer")
        outputs = probe.predict(None, example)
        inferred = infer_signature(example, outputs, params={"crops": "centre"})
    return example, inferred


SERVED_PACKAGES = ("torch", "timm", "numpy", "pandas", "mlflow")
"""What the served code path imports (spinfer.serve.pyfunc, spinfer.models, spinfer.data.symmetry
and .targets): declared so a fresh environment can serve it."""


def served_requirements() -> list[str]:
    """The served model's pip requirements, pinned to this environment's versions."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in SERVED_PACKAGES]


def log_pyfunc_model(
    checkpoint: Path, name: str = "model", compact: bool = False, probed=None
) -> None:
    """Log the checkpoint as a pyfunc model: signature, input example, code paths.

    ``compact`` logs the compact variant (``SpinferCompactModel``: one row of float32 bytes
    per image) instead of the tensor one. ``probed`` = ``_example_and_outputs(checkpoint)``
    when the caller already has it (both variants share one probe).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    import spinfer

    example, inferred = probed if probed is not None else _example_and_outputs(checkpoint)
    if compact:
        inputs = Schema([ColSpec("binary", "spins"), ColSpec("long", "lx"), ColSpec("long", "ly")])
        python_model, example = SpinferCompactModel(), encode_compact(example)
    else:
        # any image size >= L: only the batch, the two lattice axes are free, 3 components fixed
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 3))])
        python_model = SpinferModel()
    signature = ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)
    package = Path(spinfer.__file__).parent
    with warnings.catch_warnings(), _notices_dropped("mlflow.pyfunc"):
        warnings.filterwarnings("ignore", message=".*type hints to the `predict` method")
        warnings.filterwarnings("ignore", message=".*CloudPickle")
        mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            artifacts={"checkpoint": str(checkpoint)},
            signature=signature,
            input_example=example,
            code_paths=[str(package)],
            pip_requirements=served_requirements(),
        )


@contextlib.contextmanager
def _notices_dropped(name: str):
    """Drop ``name``'s records below ERROR while the block runs (the pickling notices of
    every logged model); the logger's level stays the application's."""

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.ERROR

    logger, drop = logging.getLogger(name), Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def log_served_models(checkpoint: Path) -> None:
    """Both served variants into the active run: ``model`` (tensor) and ``compact``, from
    one probe of the checkpoint."""
    probed = _example_and_outputs(checkpoint)
    log_pyfunc_model(checkpoint, "model", probed=probed)
    log_pyfunc_model(checkpoint, COMPACT_ARTIFACT, compact=True, probed=probed)
