"""Monte Carlo speed on a 100 x 100 lattice against a straightforward exact-update baseline.

Measures, in one run: spin updates per second (one core, and two textures on two cores),
ms per sweep (FFT refresh of the far dipolar field included), seconds per annealed texture
with the default schedule of params.yaml, and the same per sweep for the baseline that
updates the whole dipolar field after every accepted move. Targets on 2 cores:
>= 15 M updates/s, >= 50x the baseline per sweep, <= 1 s per texture.

    python benchmarks/mc_speed.py
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from spinfer.config import load_params
from spinfer.physics.anneal import Schedule, anneal, rng_state
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian
from spinfer.physics.montecarlo import exact_metropolis_sweep, metropolis_sweep, random_spins

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


def main() -> None:
    schedule = load_params("params.yaml").schedule
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
    print(
        f"updates_per_s={two_cores:.3e} updates_per_s_one_core={one_core:.3e} "
        f"ms_per_sweep={t_fast * 1e3:.3f} baseline_ms_per_sweep={t_exact * 1e3:.1f} "
        f"speedup_vs_exact={speedup:.0f} s_per_texture={s_texture_2:.2f} "
        f"s_per_texture_one_core={s_texture_1:.2f}"
    )


if __name__ == "__main__":
    main()
