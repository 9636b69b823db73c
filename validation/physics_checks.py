"""Physics checks of the annealed textures, with figures.

1. Out-of-plane fraction (mean |Sz| > 0.5) against K / Kshape, for the kernel's computed
   Kshape and for the paper's literal Kshape = 2D: the boundary sits at K = Kshape only with
   the computed value.
2. Domain period (structure-factor peak) against D and against |lambda|: it shrinks as
   either grows.
3. Neel chirality of the walls at lambda = +3D, 0, -3D: opposite signs at +-3D (reference
   convention: lambda > 0 favours S turning from +z towards +u along +u), ~0 at 0.

    python validation/physics_checks.py --out artifacts/validation [--seeds 3]

Prints a Markdown table (pasted into docs/physics.md) and writes PNG figures.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spinfer.config import KSHAPE_NAMES, load_params
from spinfer.physics.anneal import anneal
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian
from spinfer.physics.observables import domain_period, mean_abs_sz, neel_chirality
from spinfer.render import save_contact_sheet


def run_many(jobs, schedule, size):
    """Anneal (ham, seed) jobs on two threads (the kernels release the GIL)."""

    def one(job):
        ham, seed = job
        return anneal(ham, (size, size), schedule, seed).spins

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, jobs))


def main() -> None:
    ap = argparse.ArgumentParser(description="physics checks")
    ap.add_argument("--out", type=Path, default=Path("artifacts/validation"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    p = load_params(args.params)
    size, sched = p.physics.size, p.schedule
    computed = dipolar_kernel(size, size).kshape()
    rng = np.random.default_rng(0)
    results: dict = {"kshape_computed": computed}

    # 1. out-of-plane fraction against K / Kshape, both conventions
    ratios = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.2]
    table = {}
    conventions = (
        ("computed", computed),
        ("continuum_2pi", KSHAPE_NAMES["continuum"]),
        ("paper_2D", 2.0),
    )
    for name, factor in conventions:
        fractions = []
        for kr in ratios:
            jobs = []
            for s in range(args.seeds * 2):
                d = rng.uniform(0.05, 0.13)
                lam = rng.uniform(-3, 3) * d
                jobs.append((Hamiltonian(lam, kr * factor * d, d), s))
            textures = run_many(jobs, sched, size)
            fractions.append(float(np.mean([mean_abs_sz(t) > 0.5 for t in textures])))
        table[name] = fractions
    results["out_of_plane"] = {"k_over_kshape": ratios, **table}
    print(f"\n| K / Kshape | {' | '.join(f'{r:g}' for r in ratios)} |")
    print(f"|---|{'---|' * len(ratios)}")
    print(
        f"| Kshape = {computed:.3f} D (computed) | "
        f"{' | '.join(f'{f:.0%}' for f in table['computed'])} |"
    )
    print(
        f"| Kshape = 2 pi D (continuum) | "
        f"{' | '.join(f'{f:.0%}' for f in table['continuum_2pi'])} |"
    )
    print(
        f"| Kshape = 2 D (paper, literal) | "
        f"{' | '.join(f'{f:.0%}' for f in table['paper_2D'])} |\n"
    )

    # 2. domain period against D (lambda = 0) and |lambda| (D = 0.09), K = 1.1 Kshape
    ds = [0.05, 0.07, 0.09, 0.11, 0.13]
    jobs = [(Hamiltonian(0.0, 1.1 * computed * d, d), s) for d in ds for s in range(args.seeds)]
    tex = run_many(jobs, sched, size)
    per_d = [
        float(np.mean([domain_period(t) for t in tex[i * args.seeds : (i + 1) * args.seeds]]))
        for i in range(len(ds))
    ]
    lams = [0.0, 1.0, 2.0, 3.0]
    d0 = 0.09
    jobs = [
        (Hamiltonian(r * d0, 1.1 * computed * d0, d0), s) for r in lams for s in range(args.seeds)
    ]
    tex_l = run_many(jobs, sched, size)
    per_l = [
        float(np.mean([domain_period(t) for t in tex_l[i * args.seeds : (i + 1) * args.seeds]]))
        for i in range(len(lams))
    ]
    results["period_vs_D"] = dict(zip(map(str, ds), per_d, strict=True))
    results["period_vs_lambda_over_D"] = dict(zip(map(str, lams), per_l, strict=True))
    print(
        "period vs D (lambda=0):",
        ", ".join(f"D={d}: {v:.1f}" for d, v in zip(ds, per_d, strict=True)),
    )
    print(
        "period vs lambda/D (D=0.09):",
        ", ".join(f"{r:+.0f}D: {v:.1f}" for r, v in zip(lams, per_l, strict=True)),
    )

    # 3. chirality at lambda = +3D, 0, -3D
    chi = {}
    examples = []
    for r in (3.0, 0.0, -3.0):
        jobs = [(Hamiltonian(r * d0, 1.1 * computed * d0, d0), s) for s in range(args.seeds)]
        tex_c = run_many(jobs, sched, size)
        chi[str(r)] = float(np.mean([neel_chirality(t) for t in tex_c]))
        examples.append((tex_c[0], f"λ={r:+.0f}D  χ={neel_chirality(tex_c[0]):+.2f}"))
    results["neel_chirality"] = chi
    print("Neel chirality:", ", ".join(f"{k}D: {v:+.2f}" for k, v in chi.items()))

    # figures
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    labels = (
        ("computed", f"Kshape={computed:.2f}D"),
        ("continuum_2pi", "Kshape=2πD"),
        ("paper_2D", "Kshape=2D"),
    )
    for name, label in labels:
        axes[0].plot(ratios, table[name], "o-", label=label)
    axes[0].axvline(1.0, color="grey", ls=":")
    axes[0].set(xlabel="K / Kshape", ylabel="out-of-plane fraction", title="in-plane vs out")
    axes[0].legend()
    axes[1].plot(ds, per_d, "o-")
    axes[1].set(
        xlabel="D (λ=0, K=1.1 Kshape)",
        ylabel="domain period (sites)",
        title="period shrinks with D",
    )
    axes[2].plot(lams, per_l, "o-")
    axes[2].set(
        xlabel="|λ| / D (D=0.09)", ylabel="domain period (sites)", title="period shrinks with |λ|"
    )
    fig.tight_layout()
    fig.savefig(args.out / "physics_checks.png")
    plt.close(fig)
    save_contact_sheet(
        [t for t, _ in examples],
        [s for _, s in examples],
        args.out / "chirality_examples.png",
        cols=3,
    )
    (args.out / "physics_checks.json").write_text(json.dumps(results, indent=1))
    ok = (
        table["computed"][0] == 0.0
        and table["computed"][-1] >= 0.5
        and max(table["paper_2D"]) == 0.0
        and per_d[0] > per_d[-1]
        and per_l[0] > per_l[-1]
        and chi["3.0"] > 0.5 > -0.5 > chi["-3.0"]
        and abs(chi["0.0"]) < 0.3
    )
    print(f"verdict={'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"seconds={time.perf_counter() - t0:.1f}")
