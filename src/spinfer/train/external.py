"""How a run's estimates hold on an external test set (textures another simulator made).

The test split measures interpolation within this project's own annealer. The external set
(``external.data``; Spirit's stochastic LLG plus relaxation, see
``validation/external_spirit.py``) measures what an experimental image needs: estimates that
do not depend on how a texture was relaxed. Every run gets, beside its test-set MAE,

* ``external_mae_<p>``: MAE of the normalized couplings (the test set's units);
* ``external_mae_over_centre_<p>``: that MAE over the MAE of predicting the centre of the
  parameter ranges (0.5 in normalized units) for every texture: 1 says the estimate carries
  nothing; the registry refuses a champion at or above ``external.max_ratio``;
* ``external_corr_<p>``: Pearson correlation of estimate and truth;
* the same ratios for out-of-plane (mean |Sz| > 1/2) and in-plane textures apart.

Written to ``train.eval_out/<run>/external.json`` (a DVC metric) with a figure of estimate
against truth, and logged to the run's MLflow record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from spinfer.config import Params
from spinfer.data.external import ExternalSet, load_external, panel_tiles
from spinfer.data.targets import TARGET_NAMES, TargetScaler
from spinfer.errors import InputError
from spinfer.io import atomic_write_text
from spinfer.models.predictor import Predictor
from spinfer.render import save_figure
from spinfer.train.bundle import load_run_predictor, tracked_run
from spinfer.train.runs import run_paths

CENTRE = 0.5  # the centre of every range, normalized
PREFIX = "external_"


def predict_external(predictor: Predictor, ext: ExternalSet, batch: int = 64) -> np.ndarray:
    """(N, 3) normalized estimates: each texture's model-sized panels, averaged."""
    out = []
    for spins in ext.spins:
        tiles = panel_tiles(spins, predictor.size)
        x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))).float()
        mu = np.concatenate(
            [predictor.predict(x[i : i + batch])[0] for i in range(0, len(x), batch)]
        )
        out.append(mu.mean(axis=0))
    return np.array(out)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def external_metrics(pred_n: np.ndarray, ext: ExternalSet, scaler: TargetScaler) -> dict:
    """The ``external_*`` metrics of normalized estimates ``pred_n`` (see module docstring)."""
    truth_n = scaler.normalize(ext.params)
    err = np.abs(pred_n - truth_n)
    centre = np.abs(CENTRE - truth_n)
    phys = np.abs(scaler.denormalize(pred_n) - ext.params)
    oop = ext.out_of_plane
    m: dict[str, float] = {
        f"{PREFIX}n": float(len(ext)),
        f"{PREFIX}n_out_of_plane": float(oop.sum()),
    }
    for j, name in enumerate(TARGET_NAMES):
        m[f"{PREFIX}mae_{name}"] = float(err[:, j].mean())
        m[f"{PREFIX}mae_{name}_phys"] = float(phys[:, j].mean())
        m[f"{PREFIX}centre_mae_{name}"] = float(centre[:, j].mean())
        m[f"{PREFIX}mae_over_centre_{name}"] = float(err[:, j].mean() / centre[:, j].mean())
        m[f"{PREFIX}corr_{name}"] = _corr(pred_n[:, j], truth_n[:, j])
        for cls, mask in (("out_of_plane", oop), ("in_plane", ~oop)):
            if mask.any():
                ratio = err[mask, j].mean() / centre[mask, j].mean()
                m[f"{PREFIX}mae_over_centre_{name}_{cls}"] = float(ratio)
    m[f"{PREFIX}mae_mean"] = float(err.mean())
    m[f"{PREFIX}mae_over_centre_max"] = max(
        m[f"{PREFIX}mae_over_centre_{n}"] for n in TARGET_NAMES
    )
    return m


def plot_external(pred_n: np.ndarray, ext: ExternalSet, scaler: TargetScaler, path: Path, title):
    """Estimate against truth per coupling (normalized), out-of-plane and in-plane apart."""
    truth_n = scaler.normalize(ext.params)
    oop = ext.out_of_plane
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9), dpi=110)
    for j, name in enumerate(TARGET_NAMES):
        ax = axes[j]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.axhline(CENTRE, color="grey", ls=":", lw=0.8, label="range centre")
        ax.scatter(truth_n[oop, j], pred_n[oop, j], s=12, label="out of plane")
        ax.scatter(truth_n[~oop, j], pred_n[~oop, j], s=12, marker="x", label="in plane")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(f"true {name}_N")
        ax.set_ylabel(f"estimated {name}_N")
        ratio = np.abs(pred_n[:, j] - truth_n[:, j]).mean() / np.abs(CENTRE - truth_n[:, j]).mean()
        ax.set_title(f"{name}: MAE / range centre {ratio:.2f}")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def evaluate_external(params: Params, model_name: str, data: str, root: Path | str = ".") -> dict:
    """Estimate the external set with the run's predictor; write external.json and the
    figure, log to the run's MLflow record; returns the metrics."""
    root = Path(root)
    if params.external.data is None:
        raise InputError("external.data is null: no external set to evaluate on")
    paths = run_paths(params, model_name, data, root)
    predictor = load_run_predictor(paths)
    ext = load_external(root / params.external.data)
    pred_n = predict_external(predictor, ext)
    metrics = external_metrics(pred_n, ext, predictor.scaler)
    paths.eval_out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.eval_out / "external.json", json.dumps(metrics, indent=2) + "\n")
    figure = plot_external(
        pred_n, ext, predictor.scaler, paths.eval_out / "external" / "external.png",
        f"{paths.name} on the external set ({ext.meta.get('simulator', ext.name)}, "
        f"{len(ext)} textures)",
    )  # fmt: skip
    _log(params, root, paths, metrics, figure)
    return metrics


#: the external metrics a run shows in the MLflow UI; external.json is logged whole as a file
HEADLINE = (
    *(f"{PREFIX}mae_over_centre_{n}" for n in TARGET_NAMES),
    f"{PREFIX}mae_over_centre_max",
    f"{PREFIX}mae_mean",
)


def _log(params: Params, root: Path, paths, metrics: dict[str, Any], figure: Path) -> None:
    """Add the headline metrics, external.json and the figure to the MLflow run that
    trained the run (its run.json); nothing to do when it has none."""
    import mlflow

    run_id = tracked_run(params, root, paths)
    if run_id is None:
        return
    with mlflow.start_run(run_id=run_id):
        shown = {k: metrics[k] for k in HEADLINE if np.isfinite(metrics.get(k, np.nan))}
        mlflow.log_metrics(shown)
        mlflow.log_dict(metrics, "evaluation/external.json")
        mlflow.log_artifact(str(figure), artifact_path="figures")


def summary_line(name: str, metrics: dict[str, float]) -> str:
    parts = [
        f"{n} {metrics[f'{PREFIX}mae_{n}']:.3f} ({metrics[f'{PREFIX}mae_over_centre_{n}']:.2f} "
        f"of the range centre, r={metrics[f'{PREFIX}corr_{n}']:+.2f})"
        for n in TARGET_NAMES
    ]
    return f"{name}: external MAE " + ", ".join(parts)
