"""Evaluation of a trained run, as in Kwon et al. Fig. 2 and Fig. 3.

* MAE of lambda, K and D against the test noise level Ts (normalized units, as in the
  paper, and physical units), beside the mean predictor's MAE (chance);
* heatmaps of the error over (K_N, D_N) at lambda near 0 and near +3D;
* PCA of the test error vectors (d_lambda, dK, 2 dD) in physical units: the paper finds the
  dominant axis along dK = 2 dD with Kshape = 2D, i.e. the network learns the effective
  anisotropy K - Kshape; here the ratio dK/dD of that axis is set beside kshape_factor;
* calibration of the predicted uncertainty (spinfer.models.predictor): at every Ts the
  empirical coverage of the 68% and 95% intervals, their mean width, and a reliability
  figure (observed against nominal coverage), after variance scaling fitted on the
  validation set of the run's training data.

The run's predictor is what training left in ``train.out/<run>/model.pt``
(spinfer.train.bundle); the test copies are the test-noise store (``noise.test_out``), which
no training reads. Everything is written to ``train.eval_out/<run>/`` (metrics.json for
``dvc metrics``, mae_vs_ts.json for ``dvc plots``, PNGs) and added to the run's MLflow
record: the ``HEADLINE`` metrics, MAE against Ts as step metrics, the rest as files.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from spinfer.config import Params
from spinfer.data.dataset import noise_levels, open_dataset
from spinfer.data.targets import TARGET_NAMES, TargetScaler
from spinfer.io import atomic_write_text
from spinfer.models.predictor import Predictor, coverage
from spinfer.physics.observables import OUT_OF_PLANE, mean_abs_sz
from spinfer.render import save_figure
from spinfer.train.bundle import load_run_predictor, tracked_run
from spinfer.train.runs import data_paths, run_paths

LEVELS = (0.68, 0.95)  # intervals whose coverage is checked (target: within 5 points)
#: the metrics a run shows in the MLflow UI (the registry ranks by ``mae_mean``); the rest of
#: metrics.json is logged as the file evaluation/metrics.json
HEADLINE = (
    "mae_mean", "mae_mean_ts0",
    "mae_lambda_ts0", "mae_K_ts0", "mae_D_ts0",
    "mae_over_baseline_lambda_ts0", "mae_over_baseline_K_ts0", "mae_over_baseline_D_ts0",
    "coverage68_max_deviation", "coverage95_max_deviation",
    "pca_dK_over_dD", "pca_explained_0",
)  # fmt: skip
RELIABILITY = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95, 0.99)
TOLERANCE = 0.05


@dataclass(frozen=True)
class Evaluation:
    levels: list[float]
    mae: np.ndarray  # (levels, 3) normalized
    mae_phys: np.ndarray  # (levels, 3) physical units
    baseline: np.ndarray  # (3,) normalized MAE of the mean predictor
    baseline_phys: np.ndarray
    pca_components: np.ndarray  # (3, 3) rows = axes in (d_lambda, dK, 2 dD)
    pca_explained: np.ndarray  # (3,)
    dk_over_dd: float
    kshape_factor: float
    truth: np.ndarray  # (N, 3) physical, Ts = 0
    pred: np.ndarray  # (N, 3) physical, Ts = 0
    scaler: TargetScaler
    mean_pred: np.ndarray  # (3,) normalized mean predictor (train-set mean)
    out_of_plane: np.ndarray  # (N,) bool: mean |Sz| > 1/2 at Ts = 0
    # calibration (NaN where the model gives no uncertainty)
    observed: np.ndarray  # (levels, len(RELIABILITY), 3) coverage at each nominal level
    width: np.ndarray  # (levels, len(LEVELS), 3) mean interval width, normalized units
    scale: np.ndarray  # (3,) raw sigma -> calibrated std
    uncertainty: bool

    @property
    def n_test(self) -> int:
        return len(self.truth)

    def coverage(self, level: float) -> np.ndarray:
        """(levels, 3) observed coverage of the central ``level`` interval."""
        return self.observed[:, RELIABILITY.index(level)]

    def calibration_metrics(self) -> dict[str, float]:
        if not self.uncertainty:
            return {}
        m: dict[str, float] = {}
        worst = 0.0
        for k, level in enumerate(LEVELS):
            pct = round(100 * level)
            cov = self.coverage(level)
            dev = float(np.abs(cov - level).max())
            worst = max(worst, dev)
            m[f"coverage{pct}_max_deviation"] = dev
            # the binomial standard error of one coverage on n test textures: deviations
            # beyond 2 of them are more than sampling noise
            se = float(np.sqrt(level * (1 - level) / self.n_test))
            m[f"coverage{pct}_standard_error"] = se
            m[f"coverage{pct}_beyond_2se"] = float((np.abs(cov - level) > 2 * se).sum())
            m[f"coverage{pct}_mean"] = float(cov.mean())
            m[f"interval{pct}_width_mean"] = float(self.width[:, k].mean())
            for j, name in enumerate(TARGET_NAMES):
                m[f"coverage{pct}_{name}_ts0"] = float(cov[0, j])
                m[f"coverage{pct}_{name}_ts_max"] = float(cov[-1, j])
                m[f"interval{pct}_width_{name}_ts0"] = float(self.width[0, k, j])
        for j, name in enumerate(TARGET_NAMES):
            m[f"calibration_scale_{name}"] = float(self.scale[j])
        m["calibrated_within_5pts"] = float(worst <= TOLERANCE + 1e-12)
        return m

    def metrics(self) -> dict[str, float]:
        m: dict[str, float] = {}
        for j, name in enumerate(TARGET_NAMES):
            m[f"mae_{name}_ts0"] = float(self.mae[0, j])
            m[f"mae_{name}_ts_max"] = float(self.mae[-1, j])
            m[f"mae_{name}_phys_ts0"] = float(self.mae_phys[0, j])
            m[f"baseline_mae_{name}"] = float(self.baseline[j])
            m[f"mae_over_baseline_{name}_ts0"] = float(self.mae[0, j] / self.baseline[j])
        m["mae_mean"] = float(self.mae.mean())
        m["mae_mean_ts0"] = float(self.mae[0].mean())
        m["mae_increase_ts0_to_max"] = float(self.mae[-1].mean() - self.mae[0].mean())
        for i in range(3):
            m[f"pca_explained_{i}"] = float(self.pca_explained[i])
            for j, axis in enumerate(("dlambda", "dK", "2dD")):
                m[f"pca_component_{i}_{axis}"] = float(self.pca_components[i, j])
        m.update(self.class_metrics())
        m.update(self.calibration_metrics())
        m["pca_dK_over_dD"] = self.dk_over_dd
        m["kshape_factor"] = self.kshape_factor
        return m

    def class_metrics(self) -> dict[str, float]:
        """MAE at Ts = 0 and its ratio to chance, for out-of-plane and in-plane textures apart.

        In-plane states (K below about Kshape) carry little trace of the parameters, so the
        two classes show where the error comes from.
        """
        truth_n = self.scaler.normalize(self.truth)
        err = np.abs(self.scaler.normalize(self.pred) - truth_n)
        chance = np.abs(self.mean_pred - truth_n)
        m: dict[str, float] = {"n_out_of_plane": float(self.out_of_plane.sum())}
        m["n_in_plane"] = float((~self.out_of_plane).sum())
        for cls, mask in (("out_of_plane", self.out_of_plane), ("in_plane", ~self.out_of_plane)):
            if not mask.any():
                continue
            for j, name in enumerate(TARGET_NAMES):
                mae, base = float(err[mask, j].mean()), float(chance[mask, j].mean())
                m[f"mae_{name}_ts0_{cls}"] = mae
                m[f"mae_over_baseline_{name}_ts0_{cls}"] = mae / base if base > 0 else float("nan")
        return m

    def table(self) -> dict[str, list[float]]:
        table: dict[str, list[float]] = {"ts": self.levels}
        for j, name in enumerate(TARGET_NAMES):
            table[f"mae_{name}"] = self.mae[:, j].tolist()
            table[f"mae_{name}_phys"] = self.mae_phys[:, j].tolist()
            table[f"baseline_{name}"] = [float(self.baseline[j])] * len(self.levels)
            if self.uncertainty:
                for k, level in enumerate(LEVELS):
                    pct = round(100 * level)
                    table[f"coverage{pct}_{name}"] = self.coverage(level)[:, j].tolist()
                    table[f"width{pct}_{name}"] = self.width[:, k, j].tolist()
        return table


def error_pca(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """PCA of (d_lambda, dK, 2 dD); returns components, explained ratios, dK/dD of axis 0."""
    from sklearn.decomposition import PCA

    err = pred - truth
    vectors = np.column_stack([err[:, 0], err[:, 1], 2.0 * err[:, 2]])
    pca = PCA(n_components=3).fit(vectors)
    comps = pca.components_.copy()
    comps *= np.where(comps[:, 1:2] < 0, -1.0, 1.0)  # sign convention: dK >= 0
    c = comps[0]
    ratio = float(2.0 * c[1] / c[2]) if abs(c[2]) > 1e-12 else float("inf")
    return comps, pca.explained_variance_ratio_, ratio


def evaluate_run(
    params: Params,
    model_name: str,
    data: str,
    root: Path | str = ".",
    predictor: Predictor | None = None,
    progress: bool | None = None,
) -> Evaluation:
    """Test-set evaluation of the run's predictor at every noise level (read from the run's
    ``model.pt`` unless given)."""
    root = Path(root)
    paths = run_paths(params, model_name, data, root)
    if predictor is None:
        predictor = load_run_predictor(paths)
    scaler = predictor.scaler
    stores = data_paths(params, root)
    levels = noise_levels(stores["test_noise"])
    train = open_dataset("train", "clean", **stores)
    mean_pred = scaler.normalize(train.params).mean(axis=0)
    mae, mae_phys, observed, width = [], [], [], []
    truth_ts0 = pred_ts0 = None
    show = sys.stderr.isatty() if progress is None else progress
    for level in tqdm(levels, desc=f"evaluate {paths.name}", unit="Ts", disable=not show):
        ds = open_dataset("test", level, **stores)
        pred_n, std_n = predictor.predict_dataset(ds)
        true_n = scaler.normalize(ds.params)
        mae.append(np.abs(pred_n - true_n).mean(axis=0))
        mae_phys.append(np.abs(scaler.denormalize(pred_n) - ds.params).mean(axis=0))
        observed.append(
            [coverage(pred_n, predictor.half_width(std_n, p), true_n) for p in RELIABILITY]
        )
        width.append([2 * predictor.half_width(std_n, p).mean(axis=0) for p in LEVELS])
        if truth_ts0 is None:
            truth_ts0, pred_ts0 = ds.params, scaler.denormalize(pred_n)
            out_of_plane = out_of_plane_images(ds)
            baseline = np.abs(mean_pred - true_n).mean(axis=0)
            baseline_phys = np.abs(scaler.denormalize(mean_pred[None]) - ds.params).mean(axis=0)
    comps, explained, ratio = error_pca(truth_ts0, pred_ts0)
    return Evaluation(
        levels=list(levels),
        mae=np.array(mae),
        mae_phys=np.array(mae_phys),
        baseline=baseline,
        baseline_phys=baseline_phys,
        pca_components=comps,
        pca_explained=explained,
        dk_over_dd=ratio,
        kshape_factor=_kshape(stores["textures"]),
        truth=truth_ts0,
        pred=pred_ts0,
        scaler=scaler,
        mean_pred=mean_pred,
        out_of_plane=out_of_plane,
        observed=np.array(observed),
        width=np.array(width),
        scale=predictor.scale,
        uncertainty=predictor.has_uncertainty,
    )


def out_of_plane_images(ds) -> np.ndarray:
    """Which images of a dataset ((3, L, L) tensors) are out of plane (mean |Sz| above
    OUT_OF_PLANE): from the texture store's column when the dataset carries it, else from
    the images themselves."""
    if ds.mean_abs_sz is not None:
        return ds.out_of_plane()
    sz = [mean_abs_sz(np.moveaxis(ds[i][0].numpy(), 0, -1)) for i in range(len(ds))]
    return np.array(sz) > OUT_OF_PLANE


def _kshape(textures: Path) -> float:
    from spinfer.data.store import open_store, store_meta

    return float(store_meta(open_store(textures))["kshape_factor"])


def plot_mae_vs_ts(curves: dict[str, Evaluation], path: Path, title: str) -> Path:
    """The paper's Fig. 2 layout: one panel per parameter, MAE against Ts, chance dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=110, sharey=False)
    for j, name in enumerate(TARGET_NAMES):
        ax = axes[j]
        for k, (label, ev) in enumerate(curves.items()):
            style = "-" if label.endswith("noisy") else "--"
            ax.plot(ev.levels, ev.mae[:, j], style, marker="o", ms=3, color=f"C{k}", label=label)
        first = next(iter(curves.values()))
        ax.axhline(first.baseline[j], color="grey", ls=":", label="mean predictor")
        ax.set_xlabel("test noise Ts")
        ax.set_ylabel(f"MAE of {name}_N")
        ax.set_title(name)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _lambda_subset(ev: Evaluation, target_ratio: float, window: float = 0.6) -> np.ndarray:
    """Test textures with lambda/D within ``window`` of ``target_ratio`` (else the closest)."""
    dist = np.abs(ev.truth[:, 0] / ev.truth[:, 2] - target_ratio)
    mask = dist <= window + 1e-9
    return mask if mask.any() else dist <= dist.min() + 1e-9


def plot_heatmaps(ev: Evaluation, path: Path, bins: int = 6) -> Path:
    """Mean |error| (normalized, summed over lambda, K, D) over (K_N, D_N) bins (Fig. 3)."""
    truth_n = ev.scaler.normalize(ev.truth)
    err = np.abs(ev.scaler.normalize(ev.pred) - truth_n).sum(axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
    edges = np.linspace(0, 1, bins + 1)
    for ax, (target, label) in zip(axes, ((0.0, "λ ≈ 0"), (3.0, "λ ≈ +3D")), strict=True):
        mask = _lambda_subset(ev, target)
        grid = np.full((bins, bins), np.nan)
        if mask.any():
            ki = np.clip(np.digitize(truth_n[mask, 1], edges) - 1, 0, bins - 1)
            di = np.clip(np.digitize(truth_n[mask, 2], edges) - 1, 0, bins - 1)
            sums, counts = np.zeros((bins, bins)), np.zeros((bins, bins))
            np.add.at(sums, (di, ki), err[mask])
            np.add.at(counts, (di, ki), 1)
            with np.errstate(invalid="ignore"):
                grid = sums / counts
        im = ax.imshow(grid, origin="lower", extent=(0, 1, 0, 1), cmap="magma", vmin=0)
        ax.set_xlabel("K_N")
        ax.set_ylabel("D_N")
        ax.set_title(f"{label} ({int(mask.sum())} test textures)")
        fig.colorbar(im, ax=ax, label="mean |error|, summed over λ_N, K_N, D_N")
    fig.suptitle("Error over (K_N, D_N) at fixed λ (Ts = 0)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pca(ev: Evaluation, path: Path) -> Path:
    err = ev.pred - ev.truth
    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=110)
    ax.scatter(2 * err[:, 2], err[:, 1], s=8, alpha=0.5)
    c = ev.pca_components[0]
    span = np.abs(np.concatenate([2 * err[:, 2], err[:, 1]])).max() or 1.0
    t = np.linspace(-span, span, 2)
    if abs(c[2]) > 1e-12:
        ax.plot(t, t * c[1] / c[2], "C3", label=f"PCA axis 0: dK/dD = {ev.dk_over_dd:.2f}")
    ax.plot(t, t * ev.kshape_factor / 2, "k:", label=f"dK/dD = Kshape/D = {ev.kshape_factor:.2f}")
    ax.set_xlabel("2 dD")
    ax.set_ylabel("dK")
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.legend(fontsize=7)
    ax.set_title(f"Test errors; axis 0 explains {100 * ev.pca_explained[0]:.0f}%")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_calibration(ev: Evaluation, path: Path, title: str) -> Path:
    """Top: reliability (observed against nominal coverage, one line per Ts); bottom: the
    68% and 95% coverage against Ts with the +-5 point band."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), dpi=110)
    cmap = plt.get_cmap("viridis")
    nominal = np.array(RELIABILITY)
    for j, name in enumerate(TARGET_NAMES):
        ax = axes[0, j]
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        for i, ts in enumerate(ev.levels):
            color = cmap(i / max(len(ev.levels) - 1, 1))
            ax.plot(nominal, ev.observed[i, :, j], color=color, lw=1.2, label=f"Ts={ts:g}")
        ax.set_xlabel("nominal coverage")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"{name}: reliability")
        ax = axes[1, j]
        for level, color in zip(LEVELS, ("C0", "C3"), strict=True):
            ax.axhspan(level - TOLERANCE, level + TOLERANCE, color=color, alpha=0.12)
            ax.axhline(level, color=color, ls=":", lw=1)
            ax.plot(
                ev.levels,
                ev.coverage(level)[:, j],
                "o-",
                ms=3,
                color=color,
                label=f"{round(100 * level)}% interval",
            )
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("test noise Ts")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"{name}: coverage vs Ts")
    axes[0, 0].legend(fontsize=6, ncol=2)
    axes[1, 0].legend(fontsize=7)
    scale = ", ".join(f"{n} {s:.2f}" for n, s in zip(TARGET_NAMES, ev.scale, strict=True))
    fig.suptitle(f"{title} (intervals recalibrated on validation; std = {scale} raw sigma)")
    fig.tight_layout()
    return save_figure(fig, path)


def write_outputs(ev: Evaluation, out: Path, name: str) -> dict[str, Path]:
    """metrics.json, mae_vs_ts.json and the figures of one run."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = ev.metrics()
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    rows = [
        {"ts": ts, **{f"mae_{n}": float(ev.mae[i, j]) for j, n in enumerate(TARGET_NAMES)}}
        for i, ts in enumerate(ev.levels)
    ]
    if ev.uncertainty:
        for i, row in enumerate(rows):
            for level in LEVELS:
                cov = ev.coverage(level)[i]
                row.update(
                    {
                        f"coverage{round(100 * level)}_{n}": float(cov[j])
                        for j, n in enumerate(TARGET_NAMES)
                    }
                )
    atomic_write_text(out / "mae_vs_ts.json", json.dumps(rows, indent=1) + "\n")
    figures = out / "figures"
    extra = {}
    if ev.uncertainty:
        extra["calibration_png"] = plot_calibration(
            ev, figures / "calibration.png", f"{name}: calibration"
        )
    return {
        **extra,
        "metrics": out / "metrics.json",
        "curve": out / "mae_vs_ts.json",
        "mae_png": plot_mae_vs_ts({name: ev}, figures / "mae_vs_ts.png", f"{name}: MAE vs Ts"),
        "heatmaps_png": plot_heatmaps(ev, figures / "error_heatmaps.png"),
        "pca_png": plot_pca(ev, figures / "error_pca.png"),
    }


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics of ``HEADLINE`` present in ``metrics`` (a point head has no coverage)."""
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def ts_step(ts: float) -> int:
    """MLflow step of test noise level Ts: Ts in hundredths (0 .. 100), not an index."""
    return round(100 * ts)


def log_evaluation(run_id: str, ev: Evaluation, files: dict[str, Path]) -> None:
    """Into the run: the headline metrics, MAE against Ts as step metrics (step =
    ``ts_step``, with ``test_ts`` beside them for the chart view's metric x-axis), every
    other number as tables and files, and the figures."""
    import mlflow

    with mlflow.start_run(run_id=run_id):
        for i, ts in enumerate(ev.levels):
            values = {f"test_mae_{n}": float(ev.mae[i, j]) for j, n in enumerate(TARGET_NAMES)}
            values["test_mae_mean"] = float(ev.mae[i].mean())
            values["test_ts"] = float(ts)
            mlflow.log_metrics(values, step=ts_step(ts))
        metrics = ev.metrics()
        mlflow.log_metrics(headline(metrics))
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        mlflow.log_table(ev.table(), artifact_file="evaluation/mae_vs_ts.json")
        pca = {
            "axis": [0, 1, 2],
            "explained_variance_ratio": ev.pca_explained.tolist(),
            "d_lambda": ev.pca_components[:, 0].tolist(),
            "dK": ev.pca_components[:, 1].tolist(),
            "2dD": ev.pca_components[:, 2].tolist(),
        }
        mlflow.log_table(pca, artifact_file="evaluation/error_pca.json")
        for key in ("mae_png", "heatmaps_png", "pca_png", "calibration_png"):
            if key in files:
                mlflow.log_artifact(str(files[key]), artifact_path="figures")


def evaluate_and_log(
    params: Params,
    model_name: str,
    data: str,
    root: Path | str,
    run_id: str | None = None,
    progress: bool | None = None,
) -> Evaluation:
    """Evaluate the run's predictor on the test copies, write the DVC metrics, curve and
    figures, and add them to its MLflow run (``run_id``, by default the one that trained it;
    none recorded: nothing is logged)."""
    from spinfer.tracking import setup_tracking

    root = Path(root)
    paths = run_paths(params, model_name, data, root)
    ev = evaluate_run(params, model_name, data, root, progress=progress)
    files = write_outputs(ev, paths.eval_out, paths.name)
    if run_id is not None:
        setup_tracking(params, root)
    else:
        run_id = tracked_run(params, root, paths)
    if run_id is not None:
        log_evaluation(run_id, ev, files)
    return ev


def summary_line(name: str, ev: Evaluation) -> str:
    parts = [
        f"{n} {ev.mae[0, j]:.3f} (chance {ev.baseline[j]:.3f})" for j, n in enumerate(TARGET_NAMES)
    ]
    cal = ev.calibration_metrics()
    return (
        f"{name}: test MAE at Ts=0: "
        + ", ".join(parts)
        + f"; mean MAE Ts=0 -> {ev.levels[-1]:g}: "
        + f"{ev.mae[0].mean():.3f} -> {ev.mae[-1].mean():.3f}"
        + (
            f"; coverage of the 68%/95% intervals off nominal by at most "
            f"{100 * cal['coverage68_max_deviation']:.0f}/"
            f"{100 * cal['coverage95_max_deviation']:.0f} points"
            if ev.uncertainty
            else ""
        )
    )
