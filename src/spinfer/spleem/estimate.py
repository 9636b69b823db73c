"""Estimate (lambda, K, D) from experimental images through a registered model.

Per image set: ingest (channels, else colour wheel) -> panels of the model's size on a
grid -> the model's estimate per panel -> aggregate (mean, standard deviation across
panels) in model units and in meV (spinfer.spleem.units) -> domain-wall tanh fits, domain
period and out-of-plane fraction -> closed loop: a texture re-simulated at the estimate,
measured the same way -> the known truth when the set has a truth.json (the shipped
sample). Everything goes to ``spleem.out`` (tables, JSON, figures) and to one MLflow run
in the experiment ``spleem.experiment``; the tables and summary.json are written before the
figures and the MLflow run, so a failure there never loses the estimate.

A set folder may hold ``meta.yaml`` with the keys of ``META_KEYS``: how its images are
oriented (``orientation``: xy-up, xy-down, transposed), the sign of its Sz channel
(``sz_sign``: 1 or -1) and its instrument's point-spread function (``psf_shape``: gaussian
or lorentzian, ``psf_width`` in pixels, 0 for none; the channels are deconvolved by it,
spinfer.spleem.deconvolve); they override ``spleem.orientation``, ``sz_sign``, ``psf_shape``,
``psf_width`` (the options of the same names). Each set reports its walls' Neel fraction and
chirality; a set whose walls are mostly Bloch gets a warning that names the orientation
option, since interfacial DMI makes Neel walls.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spinfer.config import Params
from spinfer.data.targets import TARGET_NAMES
from spinfer.errors import InputError
from spinfer.io import atomic_write_text
from spinfer.physics.observables import sz_period
from spinfer.spleem.deconvolve import check_psf
from spinfer.spleem.ingest import SpinMap, check_orientation, from_channels, from_wheel, panels
from spinfer.spleem.units import Film, to_physical
from spinfer.spleem.walls import WallCharacter, WallFit, fit_walls, wall_character

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".npy")
META_KEYS = ("orientation", "sz_sign", "psf_shape", "psf_width")
BLOCH_WARNING = 0.5  # warn when the walls' Neel fraction is below this


@dataclass
class SetResult:
    name: str
    source: str  # channels or wheel
    shape: tuple[int, int]
    trusted: float  # fraction of trusted pixels
    table: list[dict[str, float]]  # one row per panel
    mean: dict[str, float]
    std: dict[str, float]  # spread across panels
    walls: dict[str, float]
    uncertainty: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed_loop: dict[str, dict[str, float]] = field(default_factory=dict)
    truth: dict[str, float] | None = None
    spin_map: SpinMap | None = None
    wall_fit: WallFit | None = None
    resimulated: np.ndarray | None = None
    reading: dict[str, Any] = field(default_factory=dict)  # META_KEYS
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        keep = ("name", "source", "shape", "trusted", "mean", "std", "uncertainty", "walls",
                "closed_loop", "reading", "warnings")  # fmt: skip
        out = {k: v for k, v in asdict(self).items() if k in keep}
        out["panels"] = len(self.table)
        if self.truth is not None:
            out["truth"] = self.truth
        return out


def film(params: Params) -> Film:
    s = params.spleem
    return Film(s.d_co, s.d_ni, s.mu_co, s.mu_ni, s.lattice_a)


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def discover(data: Path) -> list[Path]:
    """Set folders under ``data``: those holding sx/sy/sz images or a wheel image."""
    if not data.is_dir():
        raise InputError(f"{data}: no such folder (run `dvc pull data.dvc` or add images)")
    sets = [
        f for f in sorted(data.iterdir())
        if f.is_dir() and (all(_find(f, c) for c in ("sx", "sy", "sz")) or _find(f, "wheel"))
    ]  # fmt: skip
    if not sets:
        raise InputError(f"{data}: no image sets (folders with sx/sy/sz or wheel images)")
    return sorted(sets, key=_series_key)


def _series_key(folder: Path) -> tuple[float, str]:
    """Sets with a truth.json in the order of the series (lambda/D falling), then by name."""
    truth = folder / "truth.json"
    if truth.is_file():
        try:
            return (-float(json.loads(truth.read_text())["lambda_over_D"]), folder.name)
        except (ValueError, KeyError, TypeError):
            pass
    return (float("inf"), folder.name)


def read_meta(folder: Path, params: Params) -> dict[str, Any]:
    """How the set's images are read: the ``spleem`` section's META_KEYS, overridden by the
    set's meta.yaml; raises InputError for unknown keys or values."""
    import yaml

    reading: dict[str, Any] = {key: getattr(params.spleem, key) for key in META_KEYS}
    path = folder / "meta.yaml"
    if not path.is_file():
        return reading
    try:
        meta = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise InputError(f"{path}: invalid YAML") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a mapping of {', '.join(META_KEYS)}")
    unknown = sorted(set(map(str, meta)) - set(META_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(META_KEYS)})")
    reading.update(meta)
    check_orientation(reading["orientation"], reading["sz_sign"], where=str(path))
    check_psf(reading["psf_shape"], reading["psf_width"], where=str(path))
    return reading


def read_set(
    folder: Path, params: Params, prefer: str = "channels", min_size: int = 100
) -> tuple[SpinMap, str, dict[str, Any]]:
    """The set's unit-vector map from its channel images (or its colour-wheel image), in
    spinfer's lattice order, and how it was read."""
    channels = [_find(folder, c) for c in ("sx", "sy", "sz")]
    wheel = _find(folder, "wheel")
    reading = read_meta(folder, params)
    opts = {"min_norm": params.spleem.min_norm, "min_size": min_size, **reading}
    if (prefer == "channels" or wheel is None) and all(channels):
        return from_channels(*channels, **opts), "channels", reading
    if wheel is None:
        raise InputError(f"{folder}: no wheel image")
    return from_wheel(wheel, **opts), "wheel", reading


def bloch_warning(name: str, character: WallCharacter) -> str | None:
    """A warning when a set's walls are mostly Bloch (see module docstring)."""
    if not character.neel_fraction < BLOCH_WARNING:
        return None
    return (
        f"{name}: the domain walls are mostly Bloch (Neel fraction "
        f"{character.neel_fraction:.2f}); interfacial DMI makes Neel walls, so unless the DMI "
        "is weak the image axes are read wrongly: check --orientation (or orientation in the "
        "set's meta.yaml; x right along the columns, y up along the rows is the default)"
    )


class Estimator:
    """A registered model (pyfunc), its panel size and batch limit."""

    def __init__(self, model_uri: str) -> None:
        from spinfer.serve.predict import load_pyfunc

        self.model = load_pyfunc(model_uri)
        wrapped = self.model.unwrap_python_model()
        self.size = int(wrapped.size)
        self.max_batch = int(wrapped.max_batch)
        self.uri = model_uri

    def predict(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P, 3) physical (lambda, K, D) of (P, L, L, 3) panels and their standard
        deviations (NaN from a model without uncertainty)."""
        out, std = [], []
        for i in range(0, len(tiles), self.max_batch):
            frame = self.model.predict(np.ascontiguousarray(tiles[i : i + self.max_batch]))
            out.append(frame[list(TARGET_NAMES)].to_numpy())
            cols = [f"{n}_std" for n in TARGET_NAMES]
            std.append(
                frame[cols].to_numpy() if set(cols) <= set(frame.columns)
                else np.full((len(frame), 3), np.nan)
            )  # fmt: skip
        return np.concatenate(out), np.concatenate(std)


def combine_uncertainty(pred: np.ndarray, sigma: np.ndarray) -> dict[str, dict[str, Any]]:
    """The set's uncertainty per parameter, treating its predictive distribution as the
    mixture of its panels': total^2 = mean(panel sigma^2) + variance of the panel means.

    ``panel_sigma`` (rms of the model's per-panel standard deviations) is what one panel's
    estimate cannot resolve; ``spread`` (std of the panel means) is how much the film's
    regions disagree (the same spread as ``std``). Panels overlap and share the model, so
    neither shrinks with their number. ``dominant`` names the larger of the two.
    """
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(TARGET_NAMES):
        spread = float(pred[:, j].std(ddof=1 if len(pred) > 1 else 0))
        panel = float(np.sqrt(np.mean(sigma[:, j] ** 2)))
        total = float(np.sqrt(panel**2 + spread**2)) if np.isfinite(panel) else spread
        dominant = "spread" if not np.isfinite(panel) or spread >= panel else "panel"
        out[name] = {"panel_sigma": panel, "spread": spread, "total": total, "dominant": dominant}
    return out


def texture_stats(sz: np.ndarray, mask: np.ndarray | None, periodic: bool) -> tuple[dict, WallFit]:
    fit = fit_walls(sz, mask, periodic=periodic)
    stats = {
        "w_px": fit.w_median,
        "w_iqr_px": float(np.subtract(*np.percentile(fit.w, [75, 25])))
        if len(fit.w)
        else float("nan"),
        "profiles": float(len(fit.w)),
        "period_px": sz_period(sz, mask),
        "mean_abs_sz": float(np.abs(sz[mask] if mask is not None else sz).mean()),
    }
    return stats, fit


def resimulate(params: Params, estimate: dict[str, float], shape: tuple[int, int], seed: int):
    """A texture annealed at the estimated parameters (clipped into the model's validity)."""
    from spinfer.physics.anneal import Schedule, anneal
    from spinfer.physics.energy import Hamiltonian

    d = float(np.clip(estimate["D"], 1e-3, None))
    ham = Hamiltonian(dmi=float(estimate["lambda"]), anisotropy=float(estimate["K"]), dipolar=d)
    return anneal(ham, shape, Schedule(**asdict(params.schedule)), seed).spins


def estimate_set(
    folder: Path, params: Params, est: Estimator, prefer: str = "channels"
) -> SetResult:
    s = params.spleem
    spin_map, source, reading = read_set(folder, params, prefer, min_size=est.size)
    tiles, corners = panels(spin_map, est.size, s.stride, s.min_trusted)
    pred, sigma = est.predict(tiles)
    phys = to_physical(pred[:, 0], pred[:, 1], pred[:, 2], film(params))
    table = []
    for (x, y), row, sd, j, lam, k in zip(
        corners, pred, sigma, phys["J_meV"], phys["lambda_meV"], phys["K_meV"], strict=True
    ):
        table.append({"x": x, "y": y, **dict(zip(TARGET_NAMES, map(float, row), strict=True)),
                      **{f"{n}_std": float(v) for n, v in zip(TARGET_NAMES, sd, strict=True)},
                      "J_meV": float(j), "lambda_meV": float(lam), "K_meV": float(k)})  # fmt: skip
    keys = [*TARGET_NAMES, "J_meV", "lambda_meV", "K_meV"]
    values = np.array([[r[k] for k in keys] for r in table])
    mean = dict(zip(keys, map(float, values.mean(axis=0)), strict=True))
    std = dict(
        zip(keys, map(float, values.std(axis=0, ddof=1 if len(values) > 1 else 0)), strict=True)
    )
    sz = spin_map.spins[..., 2]
    walls, fit = texture_stats(sz, spin_map.mask, periodic=False)
    walls["width_nm"] = float(np.pi * walls["w_px"] * s.pixel_nm)
    character = wall_character(spin_map.spins, spin_map.mask)
    walls["neel_fraction"], walls["chirality"] = character.neel_fraction, character.chirality
    result = SetResult(
        folder.name, source, spin_map.mask.shape, float(spin_map.mask.mean()), table, mean, std,
        walls, combine_uncertainty(pred, sigma), spin_map=spin_map, wall_fit=fit,
        reading=reading,
    )  # fmt: skip
    warning = bloch_warning(folder.name, character)
    if warning:
        result.warnings.append(warning)
    truth_file = folder / "truth.json"
    if truth_file.is_file():
        truth = json.loads(truth_file.read_text())
        result.truth = {k: float(truth[k]) for k in TARGET_NAMES}
    if s.resimulate:
        seed = np.random.SeedSequence([s.sample_seed, 7919, len(folder.name)])
        texture = resimulate(params, mean, spin_map.mask.shape, seed)
        sim_stats, _ = texture_stats(texture[..., 2], None, periodic=True)
        result.resimulated = texture
        result.closed_loop = {
            k: {"image": float(walls[k]), "resimulated": float(sim_stats[k])}
            for k in ("w_px", "period_px", "mean_abs_sz")
        }
    return result


def estimate_all(
    params: Params, root: Path, data: Path | None = None, model: str | None = None,
    prefer: str = "channels", log: bool = True,
) -> list[SetResult]:  # fmt: skip
    """Every set under ``data`` (default ``spleem.data``); writes outputs and logs to MLflow."""
    from spinfer.tracking import setup_tracking

    setup_tracking(params, root)  # the registry lives in the tracking store
    data = Path(data) if data is not None else root / params.spleem.data
    folders = discover(data)
    est = Estimator(model or params.spleem.model)
    results = [estimate_set(f, params, est, prefer) for f in folders]
    out = root / params.spleem.out
    write_outputs(results, params, out, est.uri)
    if log:
        log_run(params, root, results, out, est.uri)
    return results


def metric_key(text: str) -> str:
    """``text`` as an MLflow metric name: characters MLflow refuses become '_'."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def metrics_of(results: list[SetResult]) -> dict[str, dict[str, float]]:
    """Flat per-set numbers for `dvc metrics show`: estimates, spread, truth, walls."""
    out: dict[str, dict[str, float]] = {}
    for r in results:
        m = {f"{k}_mean": v for k, v in r.mean.items()}
        m.update({f"{k}_std": v for k, v in r.std.items()})
        for k, u in r.uncertainty.items():
            m[f"{k}_sigma_panel"], m[f"{k}_sigma_total"] = u["panel_sigma"], u["total"]
        m.update({f"{k}_true": v for k, v in (r.truth or {}).items()})
        m.update({k: v for k, v in r.walls.items()})
        m.update({f"{k}_resimulated": v["resimulated"] for k, v in r.closed_loop.items()})
        m["panels"] = float(len(r.table))
        out[r.name] = {k: float(v) for k, v in m.items() if np.isfinite(v)}
    return out


def write_outputs(results: list[SetResult], params: Params, out: Path, model: str) -> None:
    """Per-panel CSVs and summary.json first (the estimate), then the figures."""
    from spinfer.spleem.report import plot_figure, plot_series

    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        rows = r.table
        header = list(rows[0])
        lines = [",".join(header), *(",".join(f"{row[h]:.6g}" for h in header) for row in rows)]
        atomic_write_text(out / f"{r.name}_panels.csv", "\n".join(lines) + "\n")
    summary = {
        "model": model,
        "D_L_meV": film(params).dipolar_mev(),
        "pixel_nm": params.spleem.pixel_nm,
        "sets": {r.name: r.summary() for r in results},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_figure(results, params, out / "spleem_fig4.png")
    plot_series(results, out / "series.png")


def log_run(params: Params, root: Path, results: list[SetResult], out: Path, model: str) -> None:
    import dataclasses

    import mlflow

    from spinfer.tracking import provenance_tags, setup_tracking

    tracking = dataclasses.replace(params.tracking, experiment=params.spleem.experiment)
    experiment = setup_tracking(dataclasses.replace(params, tracking=tracking), root)
    with mlflow.start_run(experiment_id=experiment, run_name="spleem-estimate"):
        mlflow.set_tags({"kind": "spleem", "model_uri": model, **provenance_tags(params, root)})
        mlflow.log_params({f"spleem.{k}": v for k, v in dataclasses.asdict(params.spleem).items()})
        for r in results:
            key = metric_key(r.name)
            metrics = {f"{key}.{k}_mean": v for k, v in r.mean.items()}
            metrics.update({f"{key}.{k}_std": v for k, v in r.std.items()})
            for k, u in r.uncertainty.items():
                if np.isfinite(u["panel_sigma"]):
                    metrics[f"{key}.{k}_sigma_panel"] = u["panel_sigma"]
                metrics[f"{key}.{k}_sigma_total"] = u["total"]
            metrics.update({f"{key}.{k}": v for k, v in r.walls.items() if np.isfinite(v)})
            if r.truth:
                metrics.update({f"{key}.{k}_true": v for k, v in r.truth.items()})
            mlflow.log_metrics(metrics)
            mlflow.log_table(
                {k: [row[k] for row in r.table] for k in r.table[0]},
                artifact_file=f"tables/{key}_panels.json",
            )
        for png in ("spleem_fig4.png", "series.png"):
            mlflow.log_artifact(str(out / png), artifact_path="figures")
        mlflow.log_artifact(str(out / "summary.json"))
