"""Where a run's error on textures it did not make comes from: a shared offset, or scatter.

On out-of-plane textures (mean |Sz| above the dataset's threshold: the ones that hold the
couplings), a run's predictor is shown

* spinfer's own textures, clean: the train, validation and test splits; the noisy training
  copies the run was fitted to (S + aR and virtual-microscope ones apart); the test split's
  S + aR copies at ``--levels``;
* the external set (Spirit's textures, relaxed), clean and through S + aR at the same
  levels (seeded);

and the mean error (bias) and MAE of lambda_N, K_N, D_N are printed per source: an error
that is mostly bias is an offset between what the network learned and what the source
shows, not a lack of resolution. Then spinfer's and Spirit's out-of-plane textures are set
side by side at neighbouring couplings (normalized distance below ``--radius``): mean |Sz|
and domain period (structure-factor peak), which say whether the two simulators relax the
same Hamiltonian into the same kind of state.

With ``--blur`` the clean out-of-plane test textures and Spirit's are also read through a
Gaussian point-spread function of each given width (pixels, periodic, then renormalized;
no gain, offset or noise): a network that saw blurred training images of unknown width
hedges for blur, so it reads a sharp image as a harder magnet and a blurred one as a
softer; the width at which its own textures read without bias in D
(``blur_unbiased_D``) is the blur it assumes (transfer_bias_blur.png draws the curves).

With ``--routes`` Spirit's out-of-plane couplings are also made by spinfer, once per cooling
law of the schedule (``COOLING_LAWS``, each as a fixed protocol, then minimised as
configured), and read by the same network: the bias per route against Spirit's own textures
says how much an estimate depends on how the texture was made (a network reads its own
routes' textures alike; a route it never saw, or another simulator's, may read offset).

    python validation/transfer_bias.py [--model artifacts/models/resnet18-noisy/model.pt]
                                       [--routes] [--blur 0 0.5 1 1.5]

Writes artifacts/validation/transfer_bias.json; last line key=value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from spinfer.config import load_params
from spinfer.data.dataset import open_dataset
from spinfer.data.external import load_external
from spinfer.data.noise import add_noise
from spinfer.models.predictor import load_predictor
from spinfer.physics.anneal import COOLING_LAWS, PROTOCOL, Schedule, anneal
from spinfer.physics.energy import Hamiltonian
from spinfer.physics.observables import sz_period


def errors(predictor, spins: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(N, 3) predicted minus true normalized (lambda, K, D)."""
    x = torch.from_numpy(np.ascontiguousarray(spins.transpose(0, 3, 1, 2))).float()
    return predictor.predict(x)[0] - predictor.scaler.normalize(params)


def summary(err: np.ndarray) -> dict[str, list[float]]:
    return {
        "n": len(err),
        "bias": err.mean(axis=0).tolist(),
        "mae": np.abs(err).mean(axis=0).tolist(),
    }


def training_copies(predictor) -> dict[str, dict]:
    """The run's own noisy training copies, S + aR and virtual-microscope ones apart: what
    it was fitted to."""
    import zarr

    ds = open_dataset("train", "noisy")
    group = zarr.open_group(Path(ds.store) / Path(ds.array_path).parent, mode="r")
    amplitude = group["amplitude"][:]
    if len(amplitude) != len(ds):
        return {}
    oop = ds.out_of_plane()
    out = {}
    for name, kind in (("S + aR", np.isfinite(amplitude)), ("microscope", np.isnan(amplitude))):
        items = np.flatnonzero(oop & kind)
        if len(items):
            spins = np.stack([ds.spins(i) for i in items])
            out[f"spinfer train, {name}"] = summary(errors(predictor, spins, ds.params[items]))
    return out


def blurred(spins: np.ndarray, sigma: float) -> np.ndarray:
    """(N, Lx, Ly, 3) unit spins seen through a periodic Gaussian PSF of ``sigma`` pixels,
    each component apart, then renormalized (a blurred wall is wider, not shorter)."""
    if sigma <= 0:
        return spins.astype(np.float64)
    out = gaussian_filter(spins.astype(np.float64), (0, sigma, sigma, 0), mode="wrap")
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def zero_crossing(x: list[float], y: list[float]) -> float | None:
    """The first x where y, linear between the points, reaches 0; None if it does not."""
    for i in range(len(x)):
        if y[i] == 0:
            return float(x[i])
        if i + 1 < len(x) and y[i] * y[i + 1] < 0:
            return float(x[i] + (x[i + 1] - x[i]) * y[i] / (y[i] - y[i + 1]))
    return None


def blur_sweep(predictor, sources: dict[str, tuple[np.ndarray, np.ndarray]], sigmas) -> dict:
    """Bias and MAE of each source's textures through each PSF width."""
    return {
        f"{name}, blur {sigma:g}": summary(errors(predictor, blurred(spins, sigma), params))
        for name, (spins, params) in sources.items()
        for sigma in sigmas
    }


def plot_blur(rows: dict, names: list[str], sigmas: list[float], path: Path, title: str) -> None:
    """Mean K_N and D_N error against the PSF width, one line per source."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, j, target in ((axes[0], 1, "K"), (axes[1], 2, "D")):
        for name in names:
            bias = [rows[f"{name}, blur {s:g}"]["bias"][j] for s in sigmas]
            ax.plot(sigmas, bias, "o-", label=name)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("Gaussian PSF sigma (pixels)")
        ax.set_title(f"mean error of {target}_N, out-of-plane textures", fontsize=9)
    axes[0].set_ylabel("predicted - true (normalized)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def route_schedule(schedule: Schedule, law: str) -> Schedule:
    """The configured schedule as one fixed protocol of cooling law ``law`` (a quench at the
    randomized draw's share of the sweeps)."""
    sweeps = 0 if law == "instant" else schedule.sweeps
    if law == "quench":
        sweeps = max(1, round(sweeps * PROTOCOL["quench_sweeps_factor"]))
    return dataclasses.replace(schedule, cooling=law, sweeps=sweeps, randomize=False)


def _make(job: tuple[np.ndarray, Schedule, int, int]) -> np.ndarray:
    (lam, k, d), schedule, seed, size = job
    ham = Hamiltonian(dmi=float(lam), anisotropy=float(k), dipolar=float(d))
    return anneal(ham, (size, size), schedule, seed).spins


def routes(predictor, ext_params, schedule: Schedule, size: int, workers: int) -> dict:
    """Spirit's out-of-plane couplings made by each of spinfer's cooling laws, read."""
    laws = [law for law in COOLING_LAWS if law != "instant" or schedule.minimize_steps]
    jobs = [
        (p, route_schedule(schedule, law), 1000 + i, size)
        for law in laws
        for i, p in enumerate(ext_params)
    ]
    with ProcessPoolExecutor(workers) as pool:
        made = np.stack(list(pool.map(_make, jobs)))
    n = len(ext_params)
    return {
        f"spinfer {law}, Spirit's couplings": summary(
            errors(predictor, made[j * n : (j + 1) * n], ext_params)
        )
        for j, law in enumerate(laws)
    }


def side_by_side(ours: dict, ext, scaler, radius: float) -> dict[str, float]:
    """Spirit's out-of-plane textures against spinfer's at neighbouring couplings."""
    rows = []
    for i in np.flatnonzero(ext.out_of_plane):
        near = np.linalg.norm(ours["t"] - scaler.normalize(ext.params[i : i + 1]), axis=1) < radius
        if near.sum() >= 2:
            sz = ext.spins[i][..., 2].astype(np.float64)
            rows.append((np.abs(sz).mean(), ours["abs_sz"][near].mean(),
                         sz_period(sz), np.median(ours["period"][near])))  # fmt: skip
    r = np.array(rows).reshape(-1, 4)
    return {
        "textures": len(r),
        "mean_abs_sz_spirit": float(r[:, 0].mean()) if len(r) else float("nan"),
        "mean_abs_sz_spinfer": float(r[:, 1].mean()) if len(r) else float("nan"),
        "period_ratio_median": float(np.median(r[:, 2] / r[:, 3])) if len(r) else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("artifacts/models/resnet18-noisy/model.pt"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--levels", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--radius", type=float, default=0.12, help="neighbouring couplings")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--routes", action="store_true", help="make Spirit's couplings per route")
    ap.add_argument("--workers", type=int, default=2, help="processes for --routes")
    ap.add_argument(
        "--blur",
        type=float,
        nargs="+",
        default=[],
        metavar="SIGMA",
        help="also read the clean test and Spirit textures through these PSF widths",
    )
    ap.add_argument("--out", type=Path, default=Path("artifacts/validation/transfer_bias.json"))
    args = ap.parse_args()
    for path in (args.model, args.params):
        if not path.is_file():
            print(f"error: {path}: no such file (make run first)", file=sys.stderr)
            return 1
    if any(sigma < 0 for sigma in args.blur):
        print(f"error: --blur: PSF widths must be >= 0, got {args.blur}", file=sys.stderr)
        return 2
    params = load_params(args.params)
    predictor = load_predictor(args.model)
    if params.external.data is None:
        print("error: external.data is null: no external set to compare with", file=sys.stderr)
        return 1
    ext = load_external(params.external.data)
    rows: dict[str, dict] = {}
    ours: dict[str, np.ndarray] = {}
    sources: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # clean textures for --blur
    for split in ("train", "val", "test"):
        ds = open_dataset(split, "clean")
        oop = np.flatnonzero(ds.out_of_plane())
        spins = np.stack([ds.spins(i) for i in oop])
        rows[f"spinfer {split}, clean"] = summary(errors(predictor, spins, ds.params[oop]))
        if split == "test":
            sources["spinfer test"] = (spins, ds.params[oop])
        if split == "train":
            ours = {
                "t": predictor.scaler.normalize(ds.params[oop]),
                "abs_sz": np.abs(spins[..., 2]).mean(axis=(1, 2)),
                "period": np.array([sz_period(s[..., 2]) for s in spins]),
            }
    rows.update(training_copies(predictor))
    ext_spins = ext.spins[ext.out_of_plane].astype(np.float64)
    ext_params = ext.params[ext.out_of_plane]
    rows["Spirit, clean"] = summary(errors(predictor, ext_spins, ext_params))
    sources["Spirit"] = (ext_spins, ext_params)
    for level in args.levels:
        ds = open_dataset("test", level)
        oop = np.flatnonzero(ds.out_of_plane())
        spins = np.stack([ds.spins(i) for i in oop])
        rows[f"spinfer test, Ts {level:g}"] = summary(errors(predictor, spins, ds.params[oop]))
        rng = np.random.default_rng([args.seed, round(level * 1000)])
        noisy = np.stack([add_noise(s, level, rng) for s in ext_spins])
        rows[f"Spirit, Ts {level:g}"] = summary(errors(predictor, noisy, ext_params))
    if args.routes:
        size = ext_spins.shape[1]
        rows.update(routes(predictor, ext_params, params.schedule, size, args.workers))
    sigmas = sorted(set(args.blur))
    rows.update(blur_sweep(predictor, sources, sigmas))
    states = side_by_side(ours, ext, predictor.scaler, args.radius)
    print(f"out-of-plane textures, model {args.model}")
    print(f"{'source':38s} {'n':>4s}  bias lambda / K / D        MAE lambda / K / D")
    for name, row in rows.items():
        bias = " / ".join(f"{v:+.3f}" for v in row["bias"])
        mae = " / ".join(f"{v:.3f}" for v in row["mae"])
        print(f"{name:38s} {row['n']:4d}  {bias}   {mae}")
    print(
        f"neighbouring couplings ({states['textures']} Spirit textures): mean |Sz| "
        f"{states['mean_abs_sz_spirit']:.3f} (Spirit) vs {states['mean_abs_sz_spinfer']:.3f} "
        f"(spinfer), domain period Spirit / spinfer {states['period_ratio_median']:.2f} (median)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"sources": rows, "states": states}
    last = ""
    if sigmas:
        crossing = {  # the PSF width a source reads without bias in D
            name: zero_crossing(sigmas, [rows[f"{name}, blur {s:g}"]["bias"][2] for s in sigmas])
            for name in sources
        }
        doc["blur_unbiased_D"] = crossing
        figure = args.out.parent / "transfer_bias_blur.png"
        plot_blur(
            rows, list(sources), sigmas, figure, f"read through a Gaussian PSF: {args.model}"
        )
        own_sigma = crossing["spinfer test"]
        last = " blur_unbiased_D=" + ("none" if own_sigma is None else f"{own_sigma:.2f}")
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    own, spirit = rows["spinfer test, clean"]["bias"], rows["Spirit, clean"]["bias"]
    print(
        f"own_bias_D={own[2]:.4f} spirit_bias_D={spirit[2]:.4f} "
        f"gap_D={spirit[2] - own[2]:.4f}{last}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
