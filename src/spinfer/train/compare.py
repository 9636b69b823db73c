"""The capacity grid side by side: the paper's Fig. 2 with every run, and its two findings.

Reads ``train.eval_out/<model>-<data>/mae_vs_ts.json`` and ``metrics.json`` of every run
present (runs the profile leaves out of ``train.grid`` are listed under ``skipped``) and
writes

* ``capacity_grid.png``: MAE of lambda, K and D against Ts, one line per run (solid: trained
  on noisy data, dashed: on clean data), the mean predictor dotted;
* a metrics JSON with, per run, under the names metrics.json and MLflow use: the headline
  ``mae_mean`` (what the registry ranks by), the MAE at Ts = 0 and its ratio to the mean
  predictor, the loss of accuracy from the lowest to the highest Ts, and the two checks of
  the paper:
  ``resnet18_noisy_below_half_chance`` (MAE at Ts = 0 at most half the mean predictor's for
  lambda, K and D) and ``noisy_degrades_less`` per model (noisy-trained loses less from
  Ts = 0 to Ts = 1 than clean-trained). The ratios for out-of-plane textures alone are
  given beside them: in-plane states carry little trace of the parameters;
* per run, ``external_mae_over_centre_<p>``: the MAE on the external test set (another
  simulator's textures, spinfer.train.external) over that of predicting the range centre,
  drawn as the grid figure's fourth panel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spinfer.config import MODEL_NAMES, TRAINING_DATA, Params
from spinfer.data.targets import TARGET_NAMES
from spinfer.errors import InputError
from spinfer.io import atomic_write_text
from spinfer.render import save_figure
from spinfer.train.grid import is_skipped
from spinfer.train.runs import run_name


def load_runs(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """Curves and metrics of every run of the grid found under ``eval_dir``."""
    runs = {}
    for model in MODEL_NAMES:
        for data in TRAINING_DATA:
            name = run_name(model, data)
            curve, metrics = eval_dir / name / "mae_vs_ts.json", eval_dir / name / "metrics.json"
            external = eval_dir / name / "external.json"
            if curve.is_file() and metrics.is_file():
                record = json.loads(metrics.read_text())
                if is_skipped(record):
                    continue
                runs[name] = {
                    "model": model,
                    "data": data,
                    "curve": json.loads(curve.read_text()),
                    "metrics": record,
                    "external": json.loads(external.read_text()) if external.is_file() else {},
                }
    return runs


def skipped_runs(eval_dir: Path) -> dict[str, str]:
    """The grid runs the profile left out (train.grid), with the reason recorded."""
    found = {}
    for model in MODEL_NAMES:
        for data in TRAINING_DATA:
            path = eval_dir / run_name(model, data) / "metrics.json"
            if path.is_file() and is_skipped(record := json.loads(path.read_text())):
                found[run_name(model, data)] = record.get("reason", "")
    return found


def findings(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, run in runs.items():
        m = run["metrics"]
        out[name] = {  # the names of metrics.json / MLflow: one vocabulary
            "mae_mean": m["mae_mean"],
            "mae_mean_ts0": m["mae_mean_ts0"],
            "mae_increase_ts0_to_max": m["mae_increase_ts0_to_max"],
            **{
                k: m[k]
                for n in TARGET_NAMES
                for k in (f"mae_over_baseline_{n}_ts0", f"mae_over_baseline_{n}_ts0_out_of_plane")
                if k in m
            },
            **{
                k: run["external"][k]
                for n in TARGET_NAMES
                if (k := f"external_mae_over_centre_{n}") in run["external"]
            },
        }
    if "resnet18-noisy" in runs:
        ratios = [out["resnet18-noisy"][f"mae_over_baseline_{n}_ts0"] for n in TARGET_NAMES]
        out["resnet18_noisy_below_half_chance"] = bool(max(ratios) <= 0.5)
    for model in MODEL_NAMES:
        noisy, clean = run_name(model, "noisy"), run_name(model, "clean")
        if noisy in out and clean in out:
            out[f"{model}_noisy_degrades_less"] = bool(
                out[noisy]["mae_increase_ts0_to_max"] < out[clean]["mae_increase_ts0_to_max"]
            )
    return out


def plot_grid(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    external = {n: r["external"] for n, r in runs.items() if r["external"]}
    panels = 4 if external else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 3.8), dpi=110)
    colours = {m: f"C{i}" for i, m in enumerate(MODEL_NAMES)}
    for j, param in enumerate(TARGET_NAMES):
        ax = axes[j]
        for name, run in runs.items():
            ts = [row["ts"] for row in run["curve"]]
            mae = [row[f"mae_{param}"] for row in run["curve"]]
            style = "-" if run["data"] == "noisy" else "--"
            ax.plot(ts, mae, style, marker="o", ms=3, color=colours[run["model"]], label=name)
        chance = next(iter(runs.values()))["metrics"][f"baseline_mae_{param}"]
        ax.axhline(chance, color="grey", ls=":", label="mean predictor")
        ax.set_title(param)
        ax.set_xlabel("test noise Ts")
        ax.set_ylabel(f"MAE of {param}_N")
        top = max(max(row[f"mae_{param}"] for row in r["curve"]) for r in runs.values())
        if top > 3 * chance:  # a run that diverges under noise must not flatten the rest
            ax.set_ylim(0, 3 * chance)
            ax.text(0.02, 0.97, "clipped at 3x chance", transform=ax.transAxes, va="top",
                    fontsize=7, color="grey")  # fmt: skip
        else:
            ax.set_ylim(bottom=0)
    if external:
        _plot_external(axes[3], external)
    axes[0].legend(fontsize=7)
    fig.suptitle("Capacity grid (solid: trained on noisy data, dashed: on clean data)")
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_external(ax, external: dict[str, dict[str, float]]) -> None:
    """Bars: each run's external-set MAE over the range centre's, per coupling."""
    names = list(external)
    width = 0.8 / len(TARGET_NAMES)
    for j, param in enumerate(TARGET_NAMES):
        values = [external[n][f"external_mae_over_centre_{param}"] for n in names]
        ax.bar(np.arange(len(names)) + (j - 1) * width, values, width, label=param)
    ax.axhline(1.0, color="grey", ls=":", label="range centre")
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("external MAE / range centre's")
    ax.set_title("external set (another simulator)")
    ax.legend(fontsize=7)


def compare(params: Params, root: Path | str, figure: Path, metrics: Path) -> dict[str, Any]:
    root = Path(root)
    runs = load_runs(root / params.train.eval_out)
    if not runs:
        raise InputError(f"no evaluated runs under {root / params.train.eval_out}")
    result = findings(runs)
    result["skipped"] = sorted(skipped_runs(root / params.train.eval_out))
    plot_grid(runs, figure)
    atomic_write_text(metrics, json.dumps(result, indent=2) + "\n")
    _log(params, root, figure, result)
    return result


def _log(params: Params, root: Path, figure: Path, result: dict[str, Any]) -> None:
    """One MLflow run of kind ``summary`` holding the grid figure and the findings."""
    import mlflow

    from spinfer.tracking import provenance_tags, setup_tracking

    experiment = setup_tracking(params, root)
    flat = {k: float(v) for k, v in result.items() if isinstance(v, bool | float | int)}
    for name, values in result.items():
        if isinstance(values, dict):
            flat.update({f"{name}.{k}": float(v) for k, v in values.items()})
    with mlflow.start_run(experiment_id=experiment, run_name="capacity-grid"):
        mlflow.set_tags({"kind": "summary", **provenance_tags(params, root)})
        mlflow.log_metrics({k: v for k, v in flat.items() if np.isfinite(v)})
        mlflow.log_artifact(str(figure), artifact_path="figures")
