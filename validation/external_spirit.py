"""An external test set made by an independent simulator: Spirit (stochastic LLG, then relaxation).

No spinfer code makes these textures. Spirit 2.2 (``pip install spirit``) anneals each one by
stochastic Landau-Lifshitz-Gilbert dynamics with its own FFT dipolar solver, cooling linearly
from above the ordering temperature to T = 0, then relaxes it to a torque-free state with its
LBFGS (OSO) minimiser. Textures whose estimates come out right here were not recognised by
the quirks of spinfer's Metropolis annealer.

Conventions mapped onto spinfer's (checked at start-up on the shared reference configurations
of ``tests/data``, which carry energies per term; the run stops if any term disagrees):

- lattice: Spirit ``sc`` with 100 x 100 x 1 basis cells, lattice constant 1 A, periodic in x
  and y; Spirit's spin index is ``ix + L * iy``, spinfer's array is ``[ix, iy, c]``;
- exchange: Spirit ``jij = J = 1`` (meV stands for J; temperatures in K are T_J / k_B);
- DMI: Spirit's inverse-Neel chirality (``dm_chirality -2``) with ``dij = lambda``;
- anisotropy: ``anisotropy_magnitude = K`` along z;
- dipolar: Spirit's prefactor is mu_0 mu_B^2 mu_s^2 / (4 pi a^3); with a = 1 A the moment
  ``mu_s = sqrt(D / (mu_0 mu_B^2 / 4 pi))`` gives spinfer's D; the lattice sum runs over
  ``--images`` periodic copies each way (spinfer's default is the fully periodic sum; the
  difference is far below the parameters' spacing).

Parameters (lambda, K, D) fill the paper's ranges by a seeded Latin hypercube over D in
[0.05, 0.13], lambda / D in [-3, 3] and K / Kshape in [0.15, 1.13] (Kshape from spinfer's
periodic kernel), half of K / Kshape below 0.85 and half above, so that both the in-plane
and the out-of-plane phase are well represented (fully relaxed, most textures below about
0.85 are uniform in-plane states, which hold little of lambda). The protocol of each
texture is drawn too: start temperature U[1.0, 2.0] J, cooling length log-uniform over
[1,000, 4,000] LLG steps of 0.02 ps, Gilbert damping U[0.1, 0.5], a seeded random start, then
relaxation to max torque |S x H_eff| below ``--torque`` (in J). Each texture records its
parameters, seeds, protocol and the max torque evaluated with spinfer's own Hamiltonian.

Writes ``--out`` (default data/external/spirit.npz: spins (n, L, L, 3) float32 in spinfer's
order, params (n, 3) as lambda, K, D in units of J) and a JSON beside it with every record and
the convention check. Unfinished work waits in ``<out>.partial/`` and is resumed. The shipped set
is tracked by data.dvc; remake it with

    python validation/external_spirit.py --n 64 --workers 2     # ~20 min on 2 cores

then ``dvc add data && dvc push data.dvc`` (the in-repo remote; a bare ``dvc push``
would also copy every pipeline output into it). Last line: key=value.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from spinfer.physics.energy import Hamiltonian, energy_terms
from spinfer.physics.observables import max_torque

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data"
KSHAPE_RANGE = (0.15, 1.13)
PHASE_SPLIT = 0.85  # K / Kshape: half the textures below, half above
DIPOLAR_RANGE = (0.05, 0.13)
DMI_OVER_DIPOLAR_RANGE = (-3.0, 3.0)
T_START_RANGE = (1.0, 2.0)
COOL_STEPS_RANGE = (1000, 4000)
DAMPING_RANGE = (0.1, 0.5)
DT_PS = 0.02
TEMPERATURE_STAGES = 40
SPIRIT_TERMS = {"Exchange": "exchange", "DMI": "dmi", "DDI": "dipolar", "Anisotropy": "anisotropy"}


def dipolar_prefactor() -> float:
    """Spirit's mu_0 mu_B^2 / (4 pi) in meV A^3 / mu_B^2: D per mu_s^2 at a = 1 A."""
    from spirit import constants

    return constants.mu_0 * constants.mu_B**2 / (4 * math.pi) * 1e30


def spirit_config(size: int, ham: Hamiltonian, images: int, damping: float, seed: int) -> str:
    """A Spirit input file for spinfer's Hamiltonian on a size x size periodic square lattice."""
    mu_s = math.sqrt(ham.dipolar / dipolar_prefactor()) if ham.dipolar > 0 else 1.0
    ddi = "fft" if ham.dipolar > 0 else "none"
    return f"""
hamiltonian heisenberg_neighbours
boundary_conditions 1 1 0
bravais_lattice sc
n_basis_cells {size} {size} 1
lattice_constant 1.0
mu_s {mu_s!r}
n_shells_exchange 1
jij {ham.exchange!r}
n_shells_dmi 1
dij {ham.dmi!r}
dm_chirality -2
anisotropy_magnitude {ham.anisotropy!r}
anisotropy_normal 0 0 1
ddi_method {ddi}
ddi_n_periodic_images {images} {images} 0
ddi_pb_zero_padding 1
log_to_console 0
log_to_file 0
llg_output_any 0
llg_damping {damping!r}
llg_dt {DT_PS!r}
llg_seed {seed}
"""


class SpiritLattice:
    """One Spirit state for a Hamiltonian; spins move in and out in spinfer's array order."""

    def __init__(self, size: int, ham: Hamiltonian, images: int, damping=0.3, seed=1):
        from spirit import state

        self.size = size
        self._dir = tempfile.TemporaryDirectory(prefix="spirit-")
        cfg = Path(self._dir.name) / "input.cfg"
        cfg.write_text(spirit_config(size, ham, images, damping, seed))
        cwd = os.getcwd()
        os.chdir(self._dir.name)  # Spirit writes its log files beside the working directory
        try:
            self._state = state.State(str(cfg), quiet=True)
            self.p = self._state.__enter__()
        finally:
            os.chdir(cwd)

    def close(self) -> None:
        self._state.__exit__(None, None, None)
        self._dir.cleanup()

    def set_spins(self, spins: np.ndarray) -> None:
        from spirit import system

        view = system.get_spin_directions(self.p)
        view[:] = spins.transpose(1, 0, 2).reshape(-1, 3)
        system.update_data(self.p)

    def spins(self) -> np.ndarray:
        from spirit import system

        flat = np.array(system.get_spin_directions(self.p), dtype=np.float64)
        out = flat.reshape(self.size, self.size, 3).transpose(1, 0, 2)
        return out / np.linalg.norm(out, axis=-1, keepdims=True)

    def energies(self) -> dict[str, float]:
        from spirit import system

        system.update_data(self.p)
        raw = system.get_energy_contributions(self.p, divide_by_nspins=False)
        terms = {name: 0.0 for name in SPIRIT_TERMS.values()}
        for key, value in raw.items():
            terms[SPIRIT_TERMS[key]] = float(value)
        return terms


def check_conventions(images: int = 4) -> list[dict]:
    """Spirit's per-term energies on the shared reference configurations against the reference
    (same lattice sum, M = 4) and against spinfer's own terms; raises if a term disagrees."""
    ref = json.loads((REFERENCE / "energies.json").read_text())
    spins = np.load(REFERENCE / "spins.npz")
    rows = []
    for case in ref["cases"]:
        ham = Hamiltonian(dmi=case["lam"], anisotropy=case["K"], dipolar=case["D"])
        s = spins[case["name"]]
        lattice = SpiritLattice(s.shape[0], ham, images)
        try:
            lattice.set_spins(s)
            got = lattice.energies()
        finally:
            lattice.close()
        mine = energy_terms(s, ham, images=images).as_dict()
        expected = {v: case["energy_images_M4"][k] for k, v in SPIRIT_TERMS.items()}
        for term, value in expected.items():
            scale = max(abs(value), 1.0)
            # Spirit reports single-precision sums: 1e-5 of a term's size (or of 1 J)
            for label, other in (("reference", value), ("spinfer", mine[term])):
                if abs(got[term] - other) > 1e-5 * max(scale, abs(other)):
                    raise SystemExit(
                        f"error: convention check failed: {case['name']} {term}: "
                        f"Spirit {got[term]:.6f} vs {label} {other:.6f}"
                    )
        rows.append({"case": case["name"], "spirit": got, "reference": expected})
    return rows


def _latin(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """n stratified draws over [lo, hi] in random order (one column of a Latin hypercube)."""
    return lo + (rng.permutation(n) + rng.random(n)) / n * (hi - lo)


def draw_parameters(n: int, kshape: float, seed: int) -> np.ndarray:
    """(n, 3) rows (lambda, K, D): a seeded Latin hypercube over the paper's ranges, with
    K / Kshape drawn half below and half above ``PHASE_SPLIT`` so that both phases are
    well represented (relaxed textures below it are mostly uniform in-plane states)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE57]))
    dip = _latin(rng, n, *DIPOLAR_RANGE)
    r = _latin(rng, n, *DMI_OVER_DIPOLAR_RANGE)
    low = n // 2
    k = np.concatenate(
        [
            _latin(rng, low, KSHAPE_RANGE[0], PHASE_SPLIT),
            _latin(rng, n - low, PHASE_SPLIT, KSHAPE_RANGE[1]),
        ]
    )
    return np.stack([r * dip, k * kshape * dip, dip], axis=1)


def draw_protocol(seed: int, index: int) -> dict:
    """The annealing protocol of one texture, from its own seed stream."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B1, index]))
    lo, hi = np.log(COOL_STEPS_RANGE[0]), np.log(COOL_STEPS_RANGE[1])
    return {
        "method": "stochastic LLG (Spirit, Depondt), linear cooling to T=0, then LBFGS-OSO",
        "t_start": float(rng.uniform(*T_START_RANGE)),
        "cool_steps": int(np.rint(np.exp(rng.uniform(lo, hi)))),
        "damping": float(rng.uniform(*DAMPING_RANGE)),
        "dt_ps": DT_PS,
        "llg_seed": int(rng.integers(1, 2**31 - 1)),
        "start_seed": int(rng.integers(0, 2**31 - 1)),
    }


def anneal_one(task: tuple) -> dict:
    """Anneal and relax one texture in Spirit; returns its spins and its record."""
    from spirit import constants, simulation
    from spirit.parameters import llg

    index, size, params, proto, images, torque_tol, relax_steps = task
    ham = Hamiltonian(dmi=float(params[0]), anisotropy=float(params[1]), dipolar=float(params[2]))
    start = np.random.default_rng(proto["start_seed"]).normal(size=(size, size, 3))
    start /= np.linalg.norm(start, axis=-1, keepdims=True)
    t0 = time.perf_counter()
    lattice = SpiritLattice(size, ham, images, proto["damping"], proto["llg_seed"])
    try:
        lattice.set_spins(start)
        per_stage = max(1, proto["cool_steps"] // TEMPERATURE_STAGES)
        for temp in np.linspace(proto["t_start"], 0.0, TEMPERATURE_STAGES):
            llg.set_temperature(lattice.p, float(temp) / constants.k_B)
            simulation.start(
                lattice.p, simulation.METHOD_LLG, simulation.SOLVER_DEPONDT, n_iterations=per_stage
            )
        llg.set_temperature(lattice.p, 0.0)
        torque = math.inf
        rounds = 0
        while torque > torque_tol and rounds < 10:
            simulation.start(
                lattice.p,
                simulation.METHOD_LLG,
                simulation.SOLVER_LBFGS_OSO,
                n_iterations=relax_steps,
            )
            spins = lattice.spins()
            torque = max_torque(spins, ham)
            rounds += 1
        energies = lattice.energies()
    finally:
        lattice.close()
    return {
        "index": index,
        "spins": spins.astype(np.float32),
        "record": {
            "index": index,
            "dmi": ham.dmi,
            "anisotropy": ham.anisotropy,
            "dipolar": ham.dipolar,
            "protocol": proto,
            "relax_rounds": rounds,
            "max_torque": torque,
            "mean_abs_sz": float(np.abs(spins[..., 2]).mean()),
            "energy_per_spin_spirit": {k: v / size**2 for k, v in energies.items()},
            "seconds": round(time.perf_counter() - t0, 2),
        },
    }


def save_partial(folder: Path, result: dict) -> None:
    """One finished texture, written atomically so a killed run never leaves half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"texture_{result['index']:05d}.npz"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, spins=result["spins"], record=np.array(json.dumps(result["record"])))
    os.replace(tmp, path)


def load_partial(path: Path) -> dict:
    with np.load(path) as z:
        return {"spins": z["spins"], "record": json.loads(str(z["record"]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/external/spirit.npz"))
    ap.add_argument("--n", type=int, default=64, help="textures (>= 1)")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--images", type=int, default=8, help="Spirit's periodic dipolar images")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--torque", type=float, default=1e-4, help="relaxed when max torque < this")
    ap.add_argument("--relax-steps", type=int, default=4000, help="LBFGS steps per round")
    ap.add_argument("--cool-scale", type=float, default=1.0, help="scales every cooling length")
    args = ap.parse_args(argv)
    if args.n < 1 or args.size < 4 or args.workers < 1:
        print("error: --n, --workers must be >= 1 and --size >= 4", file=sys.stderr)
        return 2
    try:
        import spirit
    except ImportError:
        print("error: Spirit is not installed: pip install spirit==2.2.0", file=sys.stderr)
        return 1

    checks = check_conventions()
    print(f"conventions: {len(checks)} reference configurations agree term by term")
    from spinfer.physics.dipolar import dipolar_kernel

    kshape = dipolar_kernel(args.size, args.size).kshape()
    params = draw_parameters(args.n, kshape, args.seed)
    protocols = [draw_protocol(args.seed, i) for i in range(args.n)]
    for p in protocols:
        p["cool_steps"] = max(1, int(np.rint(p["cool_steps"] * args.cool_scale)))
    partial = args.out.with_name(args.out.name + ".partial")
    done = {int(p.stem.split("_")[1]) for p in partial.glob("texture_*.npz")}
    for i in sorted(done):
        rec = load_partial(partial / f"texture_{i:05d}.npz")["record"]
        drawn = [rec["dmi"], rec["anisotropy"], rec["dipolar"]]
        if i >= args.n or not np.allclose(drawn, params[i], rtol=0, atol=1e-12):
            print(
                f"error: {partial} holds texture {i} of other settings (seed, size or n); "
                "remove it or use the same settings",
                file=sys.stderr,
            )
            return 1
    tasks = [
        (i, args.size, params[i], protocols[i], args.images, args.torque, args.relax_steps)
        for i in range(args.n)
        if i not in done
    ]
    print(f"{len(done)} textures done earlier, {len(tasks)} to anneal", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for k, result in enumerate(pool.map(anneal_one, tasks), 1):
            save_partial(partial, result)
            r = result["record"]
            print(
                f"[{k}/{len(tasks)}] #{r['index']} lambda={r['dmi']:+.3f} K={r['anisotropy']:.3f} "
                f"D={r['dipolar']:.3f} <|Sz|>={r['mean_abs_sz']:.2f} "
                f"torque={r['max_torque']:.1e} {r['seconds']:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    results = [load_partial(partial / f"texture_{i:05d}.npz") for i in range(args.n)]
    spins = np.stack([r["spins"] for r in results])
    records = [r["record"] for r in results]
    meta = {
        "simulator": f"Spirit {spirit.__version__}",
        "size": args.size,
        "dipolar_images": args.images,
        "seed": args.seed,
        "kshape_over_dipolar": kshape,
        "ranges": {
            "dipolar": DIPOLAR_RANGE,
            "dmi_over_dipolar": DMI_OVER_DIPOLAR_RANGE,
            "anisotropy_over_kshape": KSHAPE_RANGE,
        },
        "protocol_distribution": {
            "t_start": T_START_RANGE,
            "cool_steps_loguniform": COOL_STEPS_RANGE,
            "cool_scale": args.cool_scale,
            "damping": DAMPING_RANGE,
            "dt_ps": DT_PS,
            "temperature_stages": TEMPERATURE_STAGES,
            "relax": f"LBFGS-OSO until max torque < {args.torque} J",
        },
        "columns": ["dmi", "anisotropy", "dipolar"],
        "convention_check": checks,
        "textures": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, spins=spins, params=params.astype(np.float64), meta=np.array(json.dumps(meta))
        )
    os.replace(tmp, args.out)
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(partial)
    oop = int(sum(r["mean_abs_sz"] > 0.5 for r in records))
    worst = max(r["max_torque"] for r in records)
    print(
        f"textures={len(records)} out_of_plane={oop} in_plane={len(records) - oop} "
        f"max_torque={worst:.2e} seconds={time.perf_counter() - t0:.0f} out={args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
