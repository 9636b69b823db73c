"""The MLflow model: spins in, (lambda, K, D) in physical-model units (J = 1) out.

Input: a float32 array (N, L, L, 3) of unit spins (Sx, Sy, Sz), the layout of the
texture stores, L as in training. Output: a DataFrame with columns lambda, K, D. The
checkpoint travels as a model artifact; loading needs spinfer importable (the project
venv: ``mlflow models serve -m models:/spinfer@champion --env-manager local``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np

from spinfer.data.targets import TARGET_NAMES, TargetScaler


class SpinferModel(mlflow.pyfunc.PythonModel):
    """Wraps a best-validation checkpoint."""

    def load_context(self, context) -> None:
        from spinfer.train.loop import load_best

        self.net, payload = load_best(Path(context.artifacts["checkpoint"]))
        self.scaler = TargetScaler(
            tuple(payload["scaler"]["min"]), tuple(payload["scaler"]["max"])
        )
        self.size = int(payload["size"])

    def predict(self, context, model_input, params=None):
        import pandas as pd
        import torch

        spins = np.asarray(model_input, dtype=np.float32)
        if spins.ndim == 3:
            spins = spins[None]
        if spins.ndim != 4 or spins.shape[-1] != 3:
            raise ValueError(f"expected spins of shape (N, L, L, 3), got {spins.shape}")
        x = torch.from_numpy(np.ascontiguousarray(spins.transpose(0, 3, 1, 2)))
        with torch.no_grad():
            pred_n = self.net(x).float().numpy()
        return pd.DataFrame(self.scaler.denormalize(pred_n), columns=list(TARGET_NAMES))


def log_pyfunc_model(checkpoint: Path, name: str = "model") -> None:
    """Log the checkpoint as an MLflow pyfunc model with a signature and input example."""
    import torch
    from mlflow.models import infer_signature

    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    size = int(payload["size"])
    example = np.zeros((1, size, size, 3), dtype=np.float32)
    example[..., 2] = 1.0  # a saturated +z texture

    probe = SpinferModel()
    probe.load_context(SimpleNamespace(artifacts={"checkpoint": str(checkpoint)}))
    signature = infer_signature(example, probe.predict(None, example))
    import spinfer

    torch_version = torch.__version__.split("+")[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints to the `predict` method")
        mlflow.pyfunc.log_model(
            name=name,
            python_model=SpinferModel(),
            artifacts={"checkpoint": str(checkpoint)},
            signature=signature,
            input_example=example,
            pip_requirements=[f"spinfer=={spinfer.__version__}", f"torch=={torch_version}"],
        )
