"""How much of (lambda, K, D) the textures hold: the torque-balance inverse on the test set.

spinfer.physics.inverse fits the couplings that make each test texture torque-free, with
no training. On the clean (relaxed) textures this measures what is identifiable from a
texture at rest; at each noise level Ts it shows how fast that physics breaks down, beside
the networks' MAE from ``artifacts/eval/<run>/mae_vs_ts.json`` (run `make run` first).
MAE of normalized couplings (estimates clipped to the training ranges) over the
mean predictor's, for all, out-of-plane (mean |Sz| > 1/2) and in-plane textures; the
median weakest direction dK/dD beside Kshape/D. Writes ``--out``/torque_balance.json and
torque_balance.png. Last line: key=value.

    python validation/torque_balance.py [--params params.yaml] [--every 1] [--runs RUN ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spinfer.config import load_params
from spinfer.data.dataset import noise_levels, open_dataset
from spinfer.data.grid import resolve_kshape_factor
from spinfer.physics.inverse import COUPLINGS, torque_balance
from spinfer.train.runs import data_paths


def score(ds, every: int) -> dict:
    """Ratios to chance for one test variant, and the weakest directions."""
    rows = range(0, len(ds), every)
    fits = [torque_balance(ds.spins(i)) for i in rows]
    truth = ds.scaler.normalize(ds.params[list(rows)])
    est = np.clip(ds.scaler.normalize(np.array([f.params for f in fits])), 0.0, 1.0)
    chance = np.abs(truth - truth.mean(axis=0)).mean(axis=0)
    oop = np.array([np.abs(ds.spins(i)[..., 2]).mean() > 0.5 for i in rows])
    out = {"textures": len(fits), "n_out_of_plane": int(oop.sum())}
    for label, mask in (("all", np.ones_like(oop)), ("out_of_plane", oop), ("in_plane", ~oop)):
        if mask.any():
            mae = np.abs(est[mask] - truth[mask]).mean(axis=0)
            out[label] = dict(zip(COUPLINGS, (mae / chance).round(4).tolist(), strict=True))
    weak = np.array([f.weakest for f in fits])
    dk_dd = weak[:, 1] / np.where(np.abs(weak[:, 2]) > 1e-9, weak[:, 2], np.nan)
    out["weakest_dK_over_dD_median"] = float(np.nanmedian(dk_dd))
    out["mae"] = dict(zip(COUPLINGS, np.abs(est - truth).mean(axis=0).tolist(), strict=True))
    return out


def network_curves(eval_out: Path, runs: list[str]) -> dict[str, list[dict]]:
    """MAE per coupling against Ts of each evaluated run (``<eval_out>/<run>/mae_vs_ts.json``);
    runs not evaluated yet are left out."""
    curves = {}
    for run in runs:
        path = eval_out / run / "mae_vs_ts.json"
        if path.is_file():
            rows = json.loads(path.read_text())
            curves[run] = [{"ts": r["ts"], **{c: r[f"mae_{c}"] for c in COUPLINGS}} for r in rows]
    return curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--every", type=int, default=1, help="use every n-th test texture")
    ap.add_argument("--runs", nargs="*", default=["resnet18-noisy", "cnn-noisy"])
    ap.add_argument("--out", default="artifacts/validation")
    args = ap.parse_args()
    params = load_params(args.params)
    root = Path(args.params).resolve().parent
    paths = data_paths(params, root)
    kshape_over_d = resolve_kshape_factor(params.physics)
    clean = score(open_dataset("test", "clean", **paths), args.every)
    result = {"kshape_over_D": kshape_over_d, "clean": clean}
    print(f"clean: {clean['textures']} textures ({clean['n_out_of_plane']} out-of-plane)")
    for label in ("all", "out_of_plane", "in_plane"):
        if label in clean:
            ratios = " / ".join(f"{v:.3f}" for v in clean[label].values())
            print(f"  MAE / chance, lambda / K / D, {label}: {ratios}")
    print(
        f"  weakest direction dK/dD (median) {clean['weakest_dK_over_dD_median']:.2f}, "
        f"Kshape/D {kshape_over_d:.2f}"
    )
    levels = noise_levels(paths["test_noise"])
    result["levels"] = []
    for level in levels:
        r = score(open_dataset("test", level, **paths), args.every)
        result["levels"].append({"ts": float(level), **r})
        ratios = " / ".join(f"{v:.3f}" for v in r["all"].values())
        print(f"Ts={float(level):.1f}: MAE / chance {ratios}")
    result["networks"] = network_curves(root / params.train.eval_out, args.runs)
    out = root / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "torque_balance.json").write_text(json.dumps(result, indent=2) + "\n")
    _figure(result, out / "torque_balance.png")
    ts1 = result["levels"][1]["all"] if len(result["levels"]) > 1 else {}
    print(
        "clean_lambda={lambda:.3f} clean_K={K:.3f} clean_D={D:.3f} ".format(**clean["all"])
        + f"dK_dD={clean['weakest_dK_over_dD_median']:.2f} kshape_over_D={kshape_over_d:.2f} "
        + " ".join(f"ts0.1_{k}={v:.3f}" for k, v in ts1.items())
    )


def _figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    ts = [r["ts"] for r in result["levels"]]
    for ax, name in zip(axes, COUPLINGS, strict=True):
        ax.plot(ts, [r["mae"][name] for r in result["levels"]], "k-o", ms=3,
                label="torque balance (no training)")  # fmt: skip
        clean = result["clean"]["mae"][name]
        ax.axhline(clean, color="k", ls=":", lw=1, label="torque balance, clean")
        for run, curve in result["networks"].items():
            ax.plot([r["ts"] for r in curve], [r[name] for r in curve], "-", label=run)
        ax.set_title(name)
        ax.set_xlabel("Ts")
    axes[0].set_ylabel("MAE (normalized)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
