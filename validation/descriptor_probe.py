"""How much of (lambda, K, D) a learned model reads from bond statistics, on seen and new sets.

A learned baseline beside the networks: scikit-learn's gradient boosting on the 13
descriptors of ``spinfer.data.descriptors`` (exchange, DMI and anisotropy energy densities
and <|Sz|> at block scales 1, 2, 4; the dipolar energy density). ``noisy`` is trained like
the noisy networks but sees every train/val texture at ``--draws`` fresh amplitudes
a ~ U[noise.amplitude]; ``clean`` on the annealed textures. Three protocols:

* ``paper``: all train/val textures; scored on the test split. The paper's 14/4/2 split
  (the default's 3/1/1) puts textures of every parameter set in train and test, so this
  scores interpolation at parameters seen in training.
* ``seen`` / ``held_out``: half the parameter sets (seeded) train it; scored on the test
  textures of those sets, and of the other half (parameters never seen). Same training
  size, so the gap is what recognising a seen parameter set is worth. The held-out score
  is also taken after training on the first 1/8, 1/4, 1/2 and all of the half: a learning
  curve in parameter sets.

MAE of normalized couplings over the mean predictor's, per test level Ts, and at Ts = 0
per texture kind (out-of-plane: mean |Sz| > 1/2; in-plane with |lambda| < D or >= D),
beside the networks' curves from ``artifacts/eval/<run>/mae_vs_ts.json`` (`make run`
first). Writes ``--out``/descriptor_probe.json and .png. Last line: key=value.

    python validation/descriptor_probe.py [--params params.yaml] [--draws 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from torque_balance import network_curves  # validation/ is the script's folder

from spinfer.config import load_params
from spinfer.data.dataset import noise_levels, open_dataset
from spinfer.data.descriptors import bond_descriptors
from spinfer.data.noise import add_noise
from spinfer.physics.inverse import COUPLINGS
from spinfer.train.runs import data_paths

TRAINING = ("noisy", "clean")
PROTOCOLS = ("paper", "seen", "held_out")


def _texts(ds) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Spins, normalized targets and physical parameters of a dataset, in order."""
    spins = [np.asarray(ds.spins(i), dtype=np.float64) for i in range(len(ds))]
    return spins, ds.scaler.normalize(ds.params), np.asarray(ds.params)


def _set_ids(params: np.ndarray) -> np.ndarray:
    """One id per parameter set (the grid's values, rounded against float noise)."""
    keys = [tuple(np.round(p, 9)) for p in params]
    index = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([index[k] for k in keys])


def training_features(spins, targets, ids, draws, bounds, rng) -> dict[str, tuple]:
    """(X, y, set id) for the noisy (``draws`` amplitudes each) and clean training."""
    noisy = [
        (bond_descriptors(add_noise(s, rng.uniform(*bounds), rng)), t, i)
        for s, t, i in zip(spins, targets, ids, strict=True)
        for _ in range(draws)
    ]
    clean = [(bond_descriptors(s), t, i) for s, t, i in zip(spins, targets, ids, strict=True)]
    return {
        name: tuple(np.array(col) for col in zip(*rows, strict=True))
        for name, rows in (("noisy", noisy), ("clean", clean))
    }


def fit(x: np.ndarray, y: np.ndarray, seed: int) -> list[HistGradientBoostingRegressor]:
    """One regressor per coupling (deterministic: no early stopping, fixed seed)."""
    return [
        HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.05, early_stopping=False, random_state=seed
        ).fit(x, y[:, k])
        for k in range(y.shape[1])
    ]


def ratios(models, x, truth, chance) -> dict[str, float]:
    pred = np.column_stack([m.predict(x) for m in models])
    mae = np.abs(np.clip(pred, 0.0, 1.0) - truth).mean(axis=0)
    return dict(zip(COUPLINGS, (mae / chance).round(4).tolist(), strict=True))


def sets_curve(noisy, half, x, truth, masks, chance, seed) -> list[dict]:
    """Held-out MAE / chance against the number of parameter sets trained on (the first
    n of the half; the held-out half fixed): is more sets what K and D need?"""
    xs, ys, sid = noisy
    rows = []
    for n in sorted({max(len(half) // k, 1) for k in (8, 4, 2, 1)}):
        m = np.isin(sid, half[:n])
        held = masks["held_out"]
        rows.append(
            {"sets": int(n), **ratios(fit(xs[m], ys[m], seed), x[held], truth[held], chance)}
        )
    return rows


def texture_kinds(spins, params) -> dict[str, np.ndarray]:
    oop = np.array([np.abs(s[..., 2]).mean() > 0.5 for s in spins])
    weak_dmi = np.abs(params[:, 0]) < params[:, 2]
    return {
        "out_of_plane": oop,
        "in_plane_small_lambda": ~oop & weak_dmi,
        "in_plane_large_lambda": ~oop & ~weak_dmi,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--draws", type=int, default=8, help="noise draws per training texture")
    ap.add_argument("--runs", nargs="*", default=["resnet18-noisy", "cnn-noisy", "resnet18-clean"])
    ap.add_argument("--out", default="artifacts/validation")
    args = ap.parse_args()
    params = load_params(args.params)
    root = Path(args.params).resolve().parent
    paths = data_paths(params, root)
    seed = params.base.seed
    rng = np.random.default_rng([seed, 0xDE5C])

    spins, targets, phys = [], [], []
    for split in ("train", "val"):
        s, t, p = _texts(open_dataset(split, "clean", **paths))
        spins += s
        targets.append(t)
        phys.append(p)
    targets, phys = np.concatenate(targets), np.concatenate(phys)
    test = open_dataset("test", "clean", **paths)
    test_params = np.asarray(test.params)
    ids = _set_ids(np.concatenate([phys, test_params]))
    train_ids, test_ids = ids[: len(phys)], ids[len(phys) :]
    sets = np.unique(ids)
    order = rng.permutation(sets)  # the half, in the order the learning curve adds them
    half = order[: len(sets) // 2]
    feats = training_features(spins, targets, train_ids, args.draws, params.noise.amplitude, rng)
    chance = np.abs(test.scaler.normalize(test_params) - targets.mean(axis=0)).mean(axis=0)

    models = {}
    for name, (x, y, sid) in feats.items():
        models[(name, "paper")] = fit(x, y, seed)
        seen = np.isin(sid, half)
        models[(name, "half")] = fit(x[seen], y[seen], seed)
    print(f"descriptor probe: {len(spins)} training textures x {args.draws} noise draws, "
          f"{len(sets)} parameter sets ({len(half)} in the half)")  # fmt: skip

    levels = noise_levels(paths["test_noise"])
    result = {"draws": args.draws, "sets": len(sets), "half_sets": len(half),
              "levels": [], "kinds_ts0": {}}  # fmt: skip
    masks = {"paper": np.ones(len(test_ids), bool), "seen": np.isin(test_ids, half),
             "held_out": ~np.isin(test_ids, half)}  # fmt: skip
    for level in levels:
        t_spins, truth, t_phys = _texts(open_dataset("test", level, **paths))
        x = np.array([bond_descriptors(s) for s in t_spins])
        row = {"ts": float(level)}
        for name in TRAINING:
            for protocol in PROTOCOLS:
                m = masks[protocol]
                fitted = models[(name, "paper" if protocol == "paper" else "half")]
                row[f"{name}/{protocol}"] = ratios(fitted, x[m], truth[m], chance)
        result["levels"].append(row)
        print(f"Ts={float(level):.1f}: noisy-trained MAE / chance, lambda / K / D: "
              + "; ".join(f"{p} " + " / ".join(f"{v:.2f}" for v in row[f"noisy/{p}"].values())
                          for p in PROTOCOLS))  # fmt: skip
        if float(level) == 0.0:
            for kind, km in texture_kinds(t_spins, t_phys).items():
                entry = {"textures": int(km.sum())}
                for protocol in ("paper", "held_out"):
                    m = km & masks[protocol]
                    if m.any():
                        fitted = models[("noisy", "paper" if protocol == "paper" else "half")]
                        entry[protocol] = ratios(fitted, x[m], truth[m], chance)
                result["kinds_ts0"][kind] = entry
            result["sets_curve_ts0"] = sets_curve(
                feats["noisy"], half, x, truth, masks, chance, seed
            )

    result["networks"] = {
        run: [{"ts": r["ts"], **{c: round(r[c] / chance[k], 4) for k, c in enumerate(COUPLINGS)}}
              for r in curve]
        for run, curve in network_curves(root / params.train.eval_out, args.runs).items()
    }  # fmt: skip
    out = root / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "descriptor_probe.json").write_text(json.dumps(result, indent=2) + "\n")
    _figure(result, out / "descriptor_probe.png")
    for r in result["sets_curve_ts0"]:
        print(f"held-out sets, trained on {r['sets']} sets: MAE / chance "
              + " / ".join(f"{r[c]:.2f}" for c in COUPLINGS))  # fmt: skip
    ts0 = result["levels"][0]
    print(" ".join(f"{p}_{c}={ts0[f'noisy/{p}'][c]:.3f}" for p in PROTOCOLS for c in COUPLINGS))


def _figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), sharey=True)
    ts = [r["ts"] for r in result["levels"]]
    styles = {"paper": "-o", "seen": "--", "held_out": ":s"}
    for ax, c in zip(axes[:3], COUPLINGS, strict=True):
        for protocol, style in styles.items():
            ax.plot(ts, [r[f"noisy/{protocol}"][c] for r in result["levels"]], style, ms=3,
                    color="k", label=f"descriptors + GBM, noisy-trained, {protocol}")  # fmt: skip
        for run, curve in result["networks"].items():
            ax.plot([r["ts"] for r in curve], [r[c] for r in curve], "-", label=run)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(c)
        ax.set_xlabel("Ts")
    curve = result["sets_curve_ts0"]
    for c in COUPLINGS:
        axes[3].plot([r["sets"] for r in curve], [r[c] for r in curve], "-o", ms=3, label=c)
    axes[3].set_xscale("log")
    axes[3].axhline(1.0, color="grey", lw=0.8)
    axes[3].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[3].set_title("held-out sets, Ts = 0, noisy-trained")
    axes[3].set_xlabel("parameter sets trained on")
    axes[3].legend(fontsize=7)
    axes[0].set_ylabel("MAE / mean predictor's")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
