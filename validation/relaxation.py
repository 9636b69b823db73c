"""Are our textures relaxed like another simulator's? spinfer's annealer against the Spirit set.

For every out-of-plane texture of the external set (``external.data``: Spirit, stochastic LLG
then LBFGS to max torque 3e-4 J), anneal the same couplings with the configured schedule,
once as annealed (``minimize_steps = 0``) and once as the pipeline makes them (annealed,
then minimised by ``physics.minimize``), and compare what a network sees: the domain period,
the share of sites in walls (|Sz| < 1/2, ~ wall width / period) and the mean |Sz|; and the
final max torque. The torque-balance inverse (``physics.inverse``), which needs textures at
rest, is fitted on all three. Medians of ours / Spirit near 1 mean the two simulators agree
on the textures the couplings make, whatever the route there.

Writes ``--out``/relaxation.json and relaxation.png. Last line: key=value.

    python validation/relaxation.py [--params params.yaml] [--n 22] [--workers 2] [--data NPZ]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from spinfer.config import load_params
from spinfer.data.external import load_external
from spinfer.physics.anneal import Schedule, anneal
from spinfer.physics.energy import Hamiltonian
from spinfer.physics.inverse import torque_balance
from spinfer.physics.observables import domain_period, mean_abs_sz, wall_fraction

OBSERVABLES = ("period", "wall_fraction", "mean_abs_sz")
ROUTES = ("annealed", "minimized")


def observe(spins: np.ndarray) -> dict[str, float]:
    """What the comparison reads from one texture, and its torque-balance couplings."""
    s = np.asarray(spins, dtype=np.float64)
    return {
        "period": domain_period(s),
        "wall_fraction": wall_fraction(s),
        "mean_abs_sz": mean_abs_sz(s),
        "torque_balance": torque_balance(s).params.tolist(),
    }


def ours(args: tuple[np.ndarray, dict, int, int]) -> dict[str, dict]:
    """One external texture's couplings annealed both ways (same seed, same protocol)."""
    (lam, k, d), schedule, seed, size = args
    ham = Hamiltonian(dmi=float(lam), anisotropy=float(k), dipolar=float(d))
    full = Schedule(**schedule)
    out = {}
    routes = (dataclasses.replace(full, minimize_steps=0), full)
    for route, sched in zip(ROUTES, routes, strict=True):
        result = anneal(ham, (size, size), sched, seed)
        out[route] = {**observe(result.spins), "max_torque": result.max_torque}
    return out


def summarise(rows: list[dict]) -> dict:
    """Median of ours / Spirit per observable and route; torque-balance error per coupling."""
    summary = {}
    for route in ROUTES:
        for name in OBSERVABLES:
            ratio = [r[route][name] / r["spirit"][name] for r in rows if r["spirit"][name] > 0]
            summary[f"{route}_{name}_ratio"] = float(np.median(ratio)) if ratio else float("nan")
        summary[f"{route}_max_torque_median"] = float(
            np.median([r[route]["max_torque"] for r in rows])
        )
    for route in ("spirit", *ROUTES):
        err = np.array([np.subtract(r[route]["torque_balance"], r["params"]) for r in rows])
        scale = np.abs([r["params"] for r in rows]).mean(axis=0)
        for i, name in enumerate(("lambda", "K", "D")):
            summary[f"{route}_torque_balance_rel_mae_{name}"] = float(
                np.abs(err[:, i]).mean() / scale[i]
            )
    return summary


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, name in zip(axes, OBSERVABLES, strict=True):
        ref = np.array([r["spirit"][name] for r in rows])
        for route, colour in zip(ROUTES, ("tab:orange", "tab:blue"), strict=True):
            ax.scatter(ref, [r[route][name] for r in rows], s=14, c=colour, label=route)
        lim = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(xlabel=f"Spirit {name}", ylabel=f"spinfer {name}", title=name)
    axes[0].legend()
    fig.suptitle("Same couplings, two simulators: out-of-plane textures of the external set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--n", type=int, default=None, help="first n out-of-plane textures")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", default=None, help="external set (default: external.data)")
    ap.add_argument("--out", default="artifacts/validation")
    args = ap.parse_args()
    params = load_params(args.params)
    ext = load_external(args.data or params.external.data or "data/external/spirit.npz")
    index = np.flatnonzero(ext.out_of_plane)[: args.n]
    schedule = dataclasses.asdict(params.schedule)
    size = ext.spins.shape[1]
    jobs = [(ext.params[i], schedule, int(i), size) for i in index]
    with ProcessPoolExecutor(args.workers) as pool:
        made = list(pool.map(ours, jobs))
    rows = [
        {"index": int(i), "params": ext.params[i].tolist(), "spirit": observe(ext.spins[i]), **m}
        for i, m in zip(index, made, strict=True)
    ]
    summary = {"textures": len(rows), "schedule": schedule, **summarise(rows)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "relaxation.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    plot(rows, out / "relaxation.png")
    for key in sorted(k for k in summary if k.endswith("_ratio")):
        print(f"{key:34s} {summary[key]:.3f}")
    print(
        " ".join(
            f"{k}={summary[k]:.3g}"
            for k in (
                "annealed_wall_fraction_ratio",
                "minimized_wall_fraction_ratio",
                "annealed_period_ratio",
                "minimized_period_ratio",
            )
        )
    )


if __name__ == "__main__":
    main()
