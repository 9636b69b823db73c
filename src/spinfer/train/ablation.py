"""Ablation of the symmetry: the same model and data with and without augmentation, each
evaluated with and without test-time averaging, over several seeds.

Four conditions: ``plain`` (no augmentation, no averaging), ``tta``, ``augment`` and
``augment+tta``. Each seed trains two models (without and with ``train.augment``; when the
config augments nothing, every operation) and evaluates each twice (without and with
averaging over every point operation). For every condition against ``plain`` and every Ts
the report gives the difference of the mean MAE (over lambda, K, D) averaged over seeds,
and whether it is beyond seed-to-seed spread: |difference| > 2 standard errors of a
difference of two means (sqrt(s_a^2 / n + s_b^2 / n), s the std over seeds), roughly a 95%
two-sample criterion.

Everything goes to MLflow in the experiment ``<tracking.experiment>-ablation`` (not the
registry's): one parent run with the per-Ts metrics, the summary table and a figure, the
training runs nested under it. Runs and the summary live under ``<out>/<model>-<data>/``;
trainings resume, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spinfer.config import OPERATIONS, Params
from spinfer.errors import ConfigError
from spinfer.io import atomic_write_text
from spinfer.render import save_figure

CONDITIONS = ("plain", "tta", "augment", "augment+tta")
MIN_SEEDS = 3


def _variant(params: Params, out: Path, seed: int, augment: bool) -> Params:
    ops = params.train.augment_ops or OPERATIONS
    name = f"{'augment' if augment else 'plain'}-s{seed}"
    train = dataclasses.replace(
        params.train,
        augment=tuple(ops) if augment else False,
        tta=False,
        ensemble=None,
        out=str(out / "models" / name),
        eval_out=str(out / "eval" / name),
    )
    tracking = dataclasses.replace(
        params.tracking, experiment=f"{params.tracking.experiment}-ablation"
    )
    base = dataclasses.replace(params.base, seed=seed)
    return dataclasses.replace(params, base=base, train=train, tracking=tracking)


def summarize(levels: list[float], mae: dict[str, np.ndarray]) -> dict[str, Any]:
    """``mae[condition]``: (seeds, levels, 3). Differences of the mean MAE against
    ``plain`` per Ts, their seed spread and whether they are beyond it."""
    mean_mae = {c: m.mean(axis=2) for c, m in mae.items()}  # (seeds, levels)
    n = next(iter(mean_mae.values())).shape[0]
    base = mean_mae["plain"]
    out: dict[str, Any] = {"levels": levels, "seeds": n, "conditions": {}}
    for cond, m in mean_mae.items():
        entry: dict[str, Any] = {
            "mae_mean": m.mean(axis=0).tolist(),
            "mae_seed_std": m.std(axis=0, ddof=1).tolist(),
            "mae_per_parameter": mae[cond].mean(axis=0).tolist(),
        }
        if cond != "plain":
            diff = m.mean(axis=0) - base.mean(axis=0)
            se = np.sqrt(m.var(axis=0, ddof=1) / n + base.var(axis=0, ddof=1) / n)
            overall = m.mean(axis=1) - base.mean(axis=1)  # per seed pair, over Ts
            overall_se = np.sqrt((m.mean(axis=1).var(ddof=1) + base.mean(axis=1).var(ddof=1)) / n)
            entry.update(
                diff_vs_plain=diff.tolist(),
                diff_se=se.tolist(),
                beyond_spread=(np.abs(diff) > 2 * se).tolist(),
                diff_mean_over_ts=float(overall.mean()),
                diff_mean_over_ts_se=float(overall_se),
                beyond_spread_over_ts=bool(abs(overall.mean()) > 2 * overall_se),
            )
        out["conditions"][cond] = entry
    return out


def plot_ablation(summary: dict[str, Any], path: Path, title: str) -> Path:
    """Left: mean MAE vs Ts per condition with a +-1 seed-std band; right: difference
    against ``plain`` with +-2 standard errors."""
    levels = np.array(summary["levels"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for k, (cond, entry) in enumerate(summary["conditions"].items()):
        mean, std = np.array(entry["mae_mean"]), np.array(entry["mae_seed_std"])
        left.plot(levels, mean, "o-", ms=3, color=f"C{k}", label=cond)
        left.fill_between(levels, mean - std, mean + std, color=f"C{k}", alpha=0.15)
        if cond != "plain":
            diff, se = np.array(entry["diff_vs_plain"]), np.array(entry["diff_se"])
            right.errorbar(levels + 0.008 * k, diff, yerr=2 * se, fmt="o-", ms=3, capsize=3,
                           color=f"C{k}", label=cond)  # fmt: skip
    left.set_xlabel("test noise Ts")
    left.set_ylabel("mean MAE (normalized, over λ, K, D)")
    left.legend(fontsize=7)
    left.set_title(f"{summary['seeds']} seeds; band = ±1 std over seeds")
    right.axhline(0, color="k", lw=0.8)
    right.set_xlabel("test noise Ts")
    right.set_ylabel("MAE difference vs plain")
    right.set_title("difference ± 2 standard errors (below 0 = better)")
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def ablate(
    params: Params,
    root: Path | str,
    model: str = "cnn",
    data: str = "noisy",
    seeds: int = MIN_SEEDS,
    out: Path | str = "artifacts/ablation",
) -> dict[str, Any]:
    """Run (or resume) the ablation; returns the summary (also written to summary.json)."""
    import mlflow

    from spinfer.tracking import provenance_tags, setup_tracking
    from spinfer.train.bundle import build_predictor
    from spinfer.train.evaluate import evaluate_run
    from spinfer.train.loop import train_run
    from spinfer.train.runs import check_run

    check_run(model, data)
    if seeds < MIN_SEEDS:
        raise ConfigError(f"an ablation needs at least {MIN_SEEDS} seeds, got {seeds}")
    root = Path(root)
    folder = Path(out) / f"{model}-{data}"
    where = root / folder
    where.mkdir(parents=True, exist_ok=True)
    first = _variant(params, folder, params.base.seed, False)
    experiment = setup_tracking(first, root)
    parent = _parent_run(where, experiment, model, data, seeds, params, root, provenance_tags)
    tta_ops = tuple(o for o in OPERATIONS if o != "translate")
    mae: dict[str, list[np.ndarray]] = {c: [] for c in CONDITIONS}
    levels: list[float] = []
    for s in range(seeds):
        for augment in (False, True):
            p = _variant(params, folder, params.base.seed + s, augment)
            tags = {"mlflow.parentRunId": parent, "kind": "ablation", "augment": str(augment)}
            result = train_run(p, model, data, root, tags=tags)
            for tta in (False, True):
                pt = dataclasses.replace(
                    p, train=dataclasses.replace(p.train, tta=tta_ops if tta else False)
                )
                ev = evaluate_run(pt, model, data, root, build_predictor(pt, model, data, root))
                cond = ("augment" if augment else "plain") + ("+tta" if tta else "")
                cond = "tta" if cond == "plain+tta" else cond
                mae[cond].append(ev.mae)
                levels = ev.levels
                setup_tracking(p, root)
                with mlflow.start_run(run_id=result.run_id):
                    for i in range(len(ev.levels)):
                        mlflow.log_metric(
                            f"ablation_mae_{cond.replace('+', '_')}",
                            float(ev.mae[i].mean()),
                            step=i,
                        )
    summary = summarize(levels, {c: np.array(v) for c, v in mae.items()})
    summary.update(model=model, data=data, augment=list(params.train.augment_ops or OPERATIONS),
                   tta=list(tta_ops))  # fmt: skip
    atomic_write_text(where / "summary.json", json.dumps(summary, indent=2) + "\n")
    figure = plot_ablation(summary, where / "ablation.png", f"Symmetry ablation: {model}-{data}")
    _log_summary(parent, summary, figure, where / "summary.json")
    return summary


def _parent_run(where, experiment, model, data, seeds, params, root, provenance_tags) -> str:
    import mlflow

    from spinfer.tracking import recorded_run

    def create() -> str:
        with mlflow.start_run(
            experiment_id=experiment, run_name=f"ablation-{model}-{data}"
        ) as run:
            mlflow.set_tags({"kind": "ablation-summary", "architecture": model,
                             "training_data": data, **provenance_tags(params, root)})  # fmt: skip
            mlflow.log_params({"model": model, "data": data, "seeds": seeds,
                               "base_seed": params.base.seed})  # fmt: skip
        return run.info.run_id

    return recorded_run(where / "run.json", create)


def _log_summary(run_id: str, summary: dict[str, Any], figure: Path, table: Path) -> None:
    import mlflow

    with mlflow.start_run(run_id=run_id):
        for cond, entry in summary["conditions"].items():
            key = cond.replace("+", "_")
            for i, _ in enumerate(summary["levels"]):
                values = {
                    f"mae_{key}": entry["mae_mean"][i],
                    f"mae_std_{key}": entry["mae_seed_std"][i],
                }
                if "diff_vs_plain" in entry:
                    values[f"diff_{key}"] = entry["diff_vs_plain"][i]
                    values[f"diff_se_{key}"] = entry["diff_se"][i]
                mlflow.log_metrics(values, step=i)
            if "diff_mean_over_ts" in entry:
                mlflow.log_metrics({
                    f"diff_over_ts_{key}": entry["diff_mean_over_ts"],
                    f"diff_over_ts_se_{key}": entry["diff_mean_over_ts_se"],
                    f"beyond_spread_{key}": float(entry["beyond_spread_over_ts"]),
                })  # fmt: skip
        mlflow.log_artifact(str(figure), artifact_path="figures")
        mlflow.log_artifact(str(table))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """One line per condition: mean MAE over Ts and the difference against plain."""
    lines = []
    for cond, entry in summary["conditions"].items():
        line = f"{cond:12s} mean MAE over Ts {np.mean(entry['mae_mean']):.4f}"
        if "diff_mean_over_ts" in entry:
            verdict = "beyond" if entry["beyond_spread_over_ts"] else "within"
            line += (
                f"; vs plain {entry['diff_mean_over_ts']:+.4f} ± "
                f"{2 * entry['diff_mean_over_ts_se']:.4f} (2 SE): {verdict} seed spread; "
                f"Ts beyond spread: {sum(entry['beyond_spread'])}/{len(entry['beyond_spread'])}"
            )
        lines.append(line)
    return lines
