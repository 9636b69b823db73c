"""The torch engine on a GPU: determinism, agreement with numba, and generation at scale.

What the CPU tests cannot show, in one short run on a CUDA host (prints, then key=value):

0. **Fused kernels.** The same textures with the fused Triton half-sweep and with the eager
   torch one: identical, as the CPU tests show through Triton's interpreter? Reports the
   largest difference (the rest of the check runs what ``auto`` picks: the fused kernels).
1. **Determinism on CUDA.** The same textures annealed twice, alone and inside batches of
   different sizes and orders: identical? (On the CPU the engine is bit-identical whatever
   the batch; on CUDA the batched FFT may round differently per batch size. A generated
   store fixes its batches by shard either way.) Reports the largest difference.
2. **Agreement.** Energies per spin of the CUDA textures against the numba engine's on the
   same couplings and seeds (100 x 100, default schedule): median and worst relative gap.
3. **Scale.** ``--textures`` default-schedule textures (randomized protocols, minimisation
   included) in one call, as `spinfer data generate` anneals a gpu-profile shard: seconds
   per texture, and the gpu profile's textures extrapolated.

    python validation/gpu_engine_check.py [--textures 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from spinfer.config import load_params
from spinfer.data.grid import parameter_grid, resolve_kshape_factor
from spinfer.physics.anneal import anneal
from spinfer.physics.energy import Hamiltonian, energy_terms
from spinfer.physics.torch_engine import anneal_batch, resolve_kernels

L = 100


def couplings(n: int, seed: int = 0) -> list[Hamiltonian]:
    params = load_params("params.yaml")
    grid = parameter_grid(params.ranges, resolve_kshape_factor(params.physics))
    rows = grid[np.random.default_rng(seed).choice(len(grid), n, replace=False)]
    return [Hamiltonian(dmi=float(a), anisotropy=float(b), dipolar=float(c)) for a, b, c in rows]


def _numba(task):
    ham, schedule, seed = task
    return anneal(ham, (L, L), schedule, seed).spins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", type=int, default=1000)
    parser.add_argument("--agree", type=int, default=16, help="textures compared with numba")
    parser.add_argument("--workers", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("artifacts/validation"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device (this check is for GPU hosts)")
    schedule = load_params("params.yaml").schedule
    device = torch.cuda.get_device_name()
    keys: dict[str, object] = {"device": device.replace(" ", "_")}

    # 0. the fused kernels against the eager path, on CUDA
    hams = couplings(12, seed=1)
    seeds = list(range(100, 112))
    short = dataclasses.replace(schedule, sweeps=100, minimize_steps=200)
    kernels = resolve_kernels("auto", torch.device("cuda"))
    eager = anneal_batch(hams, (L, L), short, seeds, device="cuda", kernels="torch")
    fused = anneal_batch(hams, (L, L), short, seeds, device="cuda", kernels=kernels)
    diff_fused = max(
        float(np.abs(a.spins - b.spins).max()) for a, b in zip(eager, fused, strict=True)
    )
    print(f"{kernels} kernels vs eager torch on {device}: {diff_fused:.2e} (0: bit-identical)")
    keys |= {"kernels": kernels, "diff_fused_vs_eager": diff_fused}

    # 1. determinism: 6 textures alone, in one batch, in a shuffled batch with others
    alone = [anneal_batch([h], (L, L), short, [s], device="cuda")[0].spins for h, s in
             zip(hams[:6], seeds[:6], strict=True)]  # fmt: skip
    batch = anneal_batch(hams, (L, L), short, seeds, device="cuda")
    order = list(reversed(range(12)))
    shuffled = anneal_batch([hams[i] for i in order], (L, L), short, [seeds[i] for i in order],
                            device="cuda", batch=5)  # fmt: skip
    again = anneal_batch(hams, (L, L), short, seeds, device="cuda")
    diff_batch = max(float(np.abs(a - b.spins).max()) for a, b in zip(alone, batch, strict=False))
    diff_order = max(
        float(np.abs(batch[i].spins - shuffled[order.index(i)].spins).max()) for i in range(12)
    )
    diff_rerun = max(
        float(np.abs(a.spins - b.spins).max()) for a, b in zip(batch, again, strict=True)
    )
    print(f"determinism on {device}: rerun {diff_rerun:.2e}, alone vs batch {diff_batch:.2e}, "
          f"one batch vs batches of 5 reversed {diff_order:.2e} (0: bit-identical)")  # fmt: skip
    keys |= {
        "diff_rerun": diff_rerun,
        "diff_alone_vs_batch": diff_batch,
        "diff_batching": diff_order,
    }

    # 2. agreement with numba on the default schedule
    hams = couplings(args.agree, seed=2)
    seeds = list(range(200, 200 + args.agree))
    cuda = anneal_batch(hams, (L, L), schedule, seeds, device="cuda")
    with ProcessPoolExecutor(args.workers) as pool:
        numba = list(
            pool.map(_numba, [(h, schedule, s) for h, s in zip(hams, seeds, strict=True)])
        )
    gaps = [
        abs(energy_terms(c.spins, h).total / energy_terms(n, h).total - 1)
        for c, n, h in zip(cuda, numba, hams, strict=True)
    ]
    print(f"energy per spin, torch on CUDA vs numba ({args.agree} textures): median gap "
          f"{np.median(gaps):.2e}, worst {max(gaps):.2e}")  # fmt: skip
    keys |= {"energy_gap_median": float(np.median(gaps)), "energy_gap_max": float(max(gaps))}

    # 3. scale: a gpu-profile shard's worth
    hams = couplings(args.textures, seed=3)
    torch.cuda.synchronize()
    start = time.perf_counter()
    anneal_batch(hams, (L, L), schedule, list(range(args.textures)), device="cuda")
    torch.cuda.synchronize()
    per = (time.perf_counter() - start) / args.textures
    gpu = load_params("params.yaml", ["profile=gpu"]).dataset
    total = gpu.sets * gpu.per_set
    print(f"{args.textures} default-schedule textures: {per * 1e3:.1f} ms each -> the gpu "
          f"profile's {total:,} in {total * per / 60:.1f} min")  # fmt: skip
    keys |= {
        "ms_per_texture": round(per * 1e3, 2),
        "gpu_profile_minutes": round(total * per / 60, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_engine_check.json").write_text(json.dumps(keys, indent=2) + "\n")
    print(" ".join(f"{k}={v}" for k, v in keys.items()))


if __name__ == "__main__":
    main()
