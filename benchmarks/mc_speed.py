"""Monte Carlo speed of both engines on 100 x 100 lattices, against an exact-update baseline.

numba engine: spin updates per second (one core, and two textures on two cores), ms per
sweep (FFT refresh of the far dipolar field included), seconds per annealed texture with the
default schedule of params.yaml, and the same per sweep for the baseline that updates the
whole dipolar field after every accepted move. Targets on 2 cores: >= 15 M updates/s,
>= 50x the baseline per sweep, <= 1 s per texture.

torch engine (batched checkerboard): updates per second and seconds per texture on the CPU
cores, and on the GPU when torch sees one, there with the fused Triton half-sweep and with
the eager torch one (the baseline, measured in the same run: same textures, the ratio is
the fusion's gain). On the GPU it also anneals ``--gpu-textures`` (default 2,000) textures
with the paper profile's schedule in one batch and extrapolates the paper's 80,000; targets
on one H100/H200: >= 5e9 updates/s (stretch 1e10), 80,000 textures in <= 10 minutes. Last
line: key=value pairs.

    python benchmarks/mc_speed.py [--cpu-batch 16] [--gpu-textures 2000] [--gpu-only]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from spinfer.config import load_params
from spinfer.physics.anneal import Schedule, anneal, rng_state
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian
from spinfer.physics.montecarlo import exact_metropolis_sweep, metropolis_sweep, random_spins
from spinfer.physics.torch_engine import _Lattices, anneal_batch, resolve_kernels

L = 100
D = 0.1
HAM = Hamiltonian(dmi=0.15, anisotropy=1.1 * 6.7752 * D, dipolar=D)


def fast_sweeps(n: int, schedule: Schedule, beta: float = 2.0) -> float:
    """Seconds per sweep: one Metropolis sweep plus the FFT refreshes, as in ``anneal``."""
    kernel = dipolar_kernel(L, L)
    state = rng_state(1)
    spins = random_spins(L, L, state)
    near = kernel.stencil(schedule.near_radius)
    near_field = np.zeros_like(spins)
    args = (HAM.exchange, HAM.dmi, HAM.anisotropy, HAM.dipolar, beta, 0.5, state)
    far = kernel.field(spins.astype(np.float32))
    metropolis_sweep(spins, far, near_field, near, *args)  # compile / warm up
    start = time.perf_counter()
    for step in range(n):
        if step % schedule.refresh_every == 0:
            far = kernel.field(spins.astype(np.float32))
            near_field[:] = 0.0
        metropolis_sweep(spins, far, near_field, near, *args)
    return (time.perf_counter() - start) / n


def exact_sweeps(n: int, beta: float = 2.0) -> float:
    kernel = dipolar_kernel(L, L)
    state = rng_state(1)
    spins = random_spins(L, L, state)
    field = kernel.field(spins)
    full = np.ascontiguousarray(kernel.real)
    args = (HAM.exchange, HAM.dmi, HAM.anisotropy, HAM.dipolar, beta, 0.5, state)
    small = random_spins(8, 8, state)
    exact_metropolis_sweep(
        small,
        dipolar_kernel(8, 8).field(small),
        np.ascontiguousarray(dipolar_kernel(8, 8).real),
        *args,
    )
    start = time.perf_counter()
    for _ in range(n):
        exact_metropolis_sweep(spins, field, full, *args)
    return (time.perf_counter() - start) / n


def torch_sweeps(device: torch.device, batch: int, n: int, kernels: str = "torch") -> float:
    """Spin updates per second of the torch engine's sweep on ``batch`` lattices."""
    lat = _Lattices([HAM] * batch, (L, L), list(range(batch)), None, device, kernels)
    if lat.kernels != kernels:
        return float("nan")  # the fused kernels did not build here (warned)
    beta = torch.full((batch, 1), 2.0, device=device)
    cone = torch.full((batch, 1), 0.5, device=device)

    def sweep(k: int) -> None:
        lat.half_sweep(batch, 0, beta, cone, 2 * k)
        lat.half_sweep(batch, 1, beta, cone, 2 * k + 1)

    sweep(0)  # warm up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for k in range(n):
        sweep(k + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * n * L * L / (time.perf_counter() - start)


def torch_textures(device: torch.device, count: int, schedule: Schedule) -> float:
    """Seconds per 100 x 100 texture annealed by the torch engine, ``count`` in one batch."""
    hams = [HAM] * count
    anneal_batch(hams[:1], (L, L), Schedule(sweeps=2, relax_sweeps=1), [0], device=device)
    start = time.perf_counter()
    anneal_batch(hams, (L, L), schedule, list(range(count)), device=device)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-batch", type=int, default=16, help="torch lattices on the CPU")
    parser.add_argument("--gpu-textures", type=int, default=2000, help="paper-schedule batch")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU half")
    args = parser.parse_args()
    params = load_params("params.yaml")
    schedule = params.schedule
    keys: dict[str, object] = {}
    if not args.gpu_only:
        keys |= numba_engine(schedule)
        cpu = torch.device("cpu")
        cpu_rate = torch_sweeps(cpu, args.cpu_batch, 5)
        cpu_texture = torch_textures(cpu, args.cpu_batch, schedule)
        print(
            f"torch engine, CPU ({torch.get_num_threads()} threads, batch {args.cpu_batch}): "
            f"{cpu_rate / 1e6:.1f} M updates/s, {cpu_texture:.2f} s/texture (default schedule)"
        )
        keys["torch_cpu_updates_per_s"] = f"{cpu_rate:.3e}"
        keys["torch_cpu_s_per_texture"] = f"{cpu_texture:.2f}"
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        paper = load_params("params.yaml", ["profile=paper"]).schedule
        kernels = resolve_kernels("auto", gpu)
        batches = (256, 1024, 2048, 4096, 8192)
        eager = {b: torch_sweeps(gpu, b, 20) for b in batches[:4]}
        if kernels == "torch":  # no Triton here: the eager figures are all there is
            rates = eager
        else:
            rates = {b: torch_sweeps(gpu, b, 20, kernels) for b in batches}
        best = max(rates, key=lambda b: np.nan_to_num(rates[b]))
        for b, r in rates.items():
            print(
                f"torch engine, {torch.cuda.get_device_name()}: batch {b}: {r:.3e} updates/s "
                f"({kernels}); eager {eager.get(b, float('nan')):.3e}"
            )
        best_eager = max(eager.values())
        print(f"{kernels} / eager, best batch each: {rates[best] / best_eager:.1f}x")
        per_texture = torch_textures(gpu, args.gpu_textures, paper)
        paper_minutes = 80_000 * per_texture / 60
        print(
            f"{args.gpu_textures} paper-schedule textures: {per_texture * 1e3:.1f} ms each -> "
            f"80,000 in {paper_minutes:.1f} min (target <= 10)"
        )
        keys |= {
            "torch_gpu_updates_per_s": f"{rates[best]:.3e}",
            "torch_gpu_kernels": kernels,
            "torch_gpu_best_batch": best,
            "torch_gpu_eager_updates_per_s": f"{best_eager:.3e}",
            "fused_over_eager": f"{rates[best] / best_eager:.2f}",
            "torch_gpu_ms_per_paper_texture": f"{per_texture * 1e3:.2f}",
            "paper_80k_minutes": f"{paper_minutes:.1f}",
        }
    else:
        print("no CUDA device: the GPU half is not measured")
        keys["torch_gpu_updates_per_s"] = "unmeasured"
    print(" ".join(f"{k}={v}" for k, v in keys.items()))


def numba_engine(schedule: Schedule) -> dict[str, str]:
    """The numba engine's figures (printed), as key=value strings."""
    anneal(HAM, (16, 16), schedule, 0)  # compile every kernel once
    t_fast = fast_sweeps(300, schedule)
    t_exact = exact_sweeps(3)
    one_core = L * L / t_fast
    start = time.perf_counter()
    anneal(HAM, (L, L), schedule, 1)
    s_texture_1 = time.perf_counter() - start
    n_tex = 4
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # kernels release the GIL: two textures, two cores
        list(pool.map(lambda s: anneal(HAM, (L, L), schedule, s), range(n_tex)))
    wall = time.perf_counter() - start
    sweeps_per_tex = schedule.sweeps + schedule.relax_sweeps
    s_texture_2 = wall / n_tex
    two_cores = n_tex * sweeps_per_tex * L * L / wall
    speedup = t_exact / t_fast
    print(
        f"lattice {L}x{L}, schedule {schedule.sweeps}+{schedule.relax_sweeps} sweeps, "
        f"far field refreshed every {schedule.refresh_every}, near radius {schedule.near_radius}"
    )
    print(f"fast sweep (FFT refresh incl.): {t_fast * 1e3:.3f} ms  -> {one_core / 1e6:.1f} M/s")
    print(f"exact-update baseline sweep:    {t_exact * 1e3:.1f} ms")
    print(f"texture, one core: {s_texture_1:.2f} s; two cores: {s_texture_2:.2f} s/texture")
    return {
        "updates_per_s": f"{two_cores:.3e}",
        "updates_per_s_one_core": f"{one_core:.3e}",
        "ms_per_sweep": f"{t_fast * 1e3:.3f}",
        "baseline_ms_per_sweep": f"{t_exact * 1e3:.1f}",
        "speedup_vs_exact": f"{speedup:.0f}",
        "s_per_texture": f"{s_texture_2:.2f}",
        "s_per_texture_one_core": f"{s_texture_1:.2f}",
    }


if __name__ == "__main__":
    main()
