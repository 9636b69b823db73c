"""Simulated annealing: cool a random state through the ordering temperature to ~0.

The schedule deliberately stops short of the ground state (as in Kwon et al. 2020): the
textures are the metastable stripes and labyrinths that a finite cooling rate leaves.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spinfer.errors import InputError
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import MIN_SIZE, Hamiltonian, local_field
from spinfer.physics.minimize import MINIMIZERS, minimize
from spinfer.physics.montecarlo import (
    exact_metropolis_sweep,
    metropolis_sweep,
    random_spins,
    relaxation_sweep,
)

COOLING_LAWS = ("linear", "geometric", "quench", "instant")
RELAX_METHODS = ("metropolis", "descent")

#: How a randomized schedule draws each texture's protocol (``Schedule.draw``): experimental
#: textures are made by physics, not by one Monte Carlo schedule, so training textures cover
#: a decade of cooling lengths, several start temperatures and cooling shapes, quenches and
#: two relaxations. Factors multiply the configured ``sweeps`` and ``t_start``. (The
#: ``instant`` law, the minimiser alone on the random start, is not drawn: at the external
#: set's couplings its textures read like the Monte Carlo routes' once minimised,
#: ``validation/transfer_bias.py --routes``.)
PROTOCOL = {
    "sweeps_factor": (0.3, 3.0),  # log-uniform: a decade of cooling lengths
    "t_start_factor": (0.8, 1.35),  # uniform
    "cooling": {"linear": 0.4, "geometric": 0.3, "quench": 0.3},
    "quench_sweeps_factor": 0.1,  # a quench holds t_end for a tenth of the drawn sweeps
    "relax": {"metropolis": 0.5, "descent": 0.5},
}
_PROTOCOL_KEY = 0x9207
DESCENT_STEP = 0.1  # overdamped descent: S <- normalize(S + step * (H - (S.H) S))
DESCENT_STEPS_PER_SWEEP = 4  # descent steps allowed per relaxation sweep (similar cost)
DESCENT_TORQUE = 1e-4  # stop once max |S x H| is below this (units of J)


@dataclass(frozen=True)
class Schedule:
    """Annealing schedule in units of J (k_B = 1).

    ``sweeps`` Metropolis sweeps from ``t_start`` (above the ordering temperature) to
    ``t_end`` (``cooling``: linear, geometric, or quench: the whole time at ``t_end``, a
    quench from the random start; or instant: no sweeps, the random start goes straight to
    the minimiser); then up to ``relax_sweeps`` zero-temperature sweeps
    (``relax``: metropolis, each spin turned to its local field when that lowers H; or
    descent, an overdamped LLG-like descent of the torque without precession, all spins at
    once). The dipolar far field is refreshed by FFT every ``refresh_every`` sweeps; within
    ``near_radius`` sites it is exact after every move. The proposal cone adapts towards
    ``target_acceptance``. With ``randomize`` every texture draws its own protocol from its
    seed (``draw``, distribution ``PROTOCOL``). Last, up to ``minimize_steps`` steps of
    minimisation (``minimizer``: lbfgs or vp, velocity projection; ``physics.minimize``)
    take the texture towards a torque-free state, stopping once max |S x H| <
    ``minimize_torque``: the relaxed state that experiments and other simulators show
    (0 = leave the texture as annealed).
    """

    t_start: float = 1.5
    t_end: float = 0.02
    sweeps: int = 1000
    relax_sweeps: int = 200
    cooling: str = "linear"
    refresh_every: int = 2
    near_radius: int = 1
    cone: float = 0.6
    target_acceptance: float = 0.4
    relax: str = "metropolis"
    randomize: bool = False
    minimize_steps: int = 0
    minimize_torque: float = 1e-3
    minimizer: str = "vp"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.t_start) and math.isfinite(self.t_end)):
            raise InputError("schedule temperatures must be finite")
        if not 0 < self.t_end <= self.t_start:
            raise InputError(
                f"schedule needs 0 < t_end <= t_start, got t_start={self.t_start}, "
                f"t_end={self.t_end}"
            )
        if self.cooling not in COOLING_LAWS:
            raise InputError(f"cooling must be one of {COOLING_LAWS}, got {self.cooling!r}")
        if self.sweeps < (0 if self.instant else 1) or self.relax_sweeps < 0:
            raise InputError("schedule needs sweeps >= 1 and relax_sweeps >= 0")
        if self.refresh_every < 1 or self.near_radius < 0:
            raise InputError("schedule needs refresh_every >= 1 and near_radius >= 0")
        if not 0 < self.cone <= 2.0 or not 0 < self.target_acceptance < 1:
            raise InputError("schedule needs 0 < cone <= 2 and 0 < target_acceptance < 1")
        if self.relax not in RELAX_METHODS:
            raise InputError(f"relax must be one of {RELAX_METHODS}, got {self.relax!r}")
        if self.minimize_steps < 0 or not self.minimize_torque > 0:
            raise InputError("schedule needs minimize_steps >= 0 and minimize_torque > 0")
        if self.minimizer not in MINIMIZERS:
            raise InputError(f"minimizer must be one of {MINIMIZERS}, got {self.minimizer!r}")
        if self.instant and self.minimize_steps < 1:
            raise InputError(
                "cooling 'instant' needs minimize_steps >= 1: the minimiser is all it runs"
            )

    @property
    def instant(self) -> bool:
        """No Monte Carlo at all: the random start is relaxed by the minimiser alone."""
        return self.cooling == "instant"

    @property
    def relax_sweeps_run(self) -> int:
        """Relaxation sweeps that run: none after an instant quench (the minimiser only)."""
        return 0 if self.instant else self.relax_sweeps

    def temperatures(self) -> np.ndarray:
        """Temperature of each annealing sweep (none for an instant quench)."""
        if self.instant:
            return np.empty(0)
        if self.cooling == "geometric":
            return np.geomspace(self.t_start, self.t_end, self.sweeps)
        if self.cooling == "quench":
            return np.full(self.sweeps, self.t_end)
        return np.linspace(self.t_start, self.t_end, self.sweeps)

    def draw(self, seed: int | np.random.SeedSequence) -> Schedule:
        """The protocol of the texture annealed with ``seed``: this schedule itself, or with
        ``randomize`` one drawn from ``PROTOCOL`` by a stream of its own (the annealing's
        random numbers stay those of ``seed``)."""
        if not self.randomize:
            return self
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        stream = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, _PROTOCOL_KEY))
        rng = np.random.default_rng(stream)
        lo, hi = np.log(PROTOCOL["sweeps_factor"])
        sweeps = self.sweeps * float(np.exp(rng.uniform(lo, hi)))
        t_start = self.t_start * float(rng.uniform(*PROTOCOL["t_start_factor"]))
        laws, weights = zip(*PROTOCOL["cooling"].items(), strict=True)
        cooling = str(rng.choice(laws, p=weights))
        if cooling == "quench":
            sweeps *= PROTOCOL["quench_sweeps_factor"]
        methods, weights = zip(*PROTOCOL["relax"].items(), strict=True)
        relax = str(rng.choice(methods, p=weights))
        return dataclasses.replace(
            self,
            sweeps=max(1, round(sweeps)),
            t_start=max(t_start, self.t_end),
            cooling=cooling,
            relax=relax,
            randomize=False,
        )


@dataclass(frozen=True)
class AnnealResult:
    spins: np.ndarray  # (Lx, Ly, 3) float64 unit vectors
    acceptance: float  # mean acceptance over the annealing sweeps (NaN: none, an instant quench)
    relax_sweeps_done: int
    minimize_steps_done: int = 0
    max_torque: float = math.nan  # max |S x H_eff| of the final texture (units of J)


def rng_state(seed: int | np.random.SeedSequence) -> np.ndarray:
    """xoshiro256+ state (4 x uint64) from a seed or SeedSequence; never all zero."""
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    state = seq.generate_state(4, dtype=np.uint64)
    if not state.any():  # pragma: no cover - probability 2**-256
        state[0] = 1
    return state


def _adapt(cone: float, rate: float, target: float) -> float:
    """Widen the cone when too many moves pass, narrow it when too few (bounded)."""
    cone *= 1.05 if rate > target else 0.95
    return min(max(cone, 0.02), 2.0)


def anneal(
    ham: Hamiltonian,
    shape: tuple[int, int],
    schedule: Schedule,
    seed: int | np.random.SeedSequence,
    images: int | None = None,
    exact: bool = False,
    progress: Callable[[int], None] | None = None,
) -> AnnealResult:
    """Cool a random state to ``t_end``, then relax at T = 0; (Lx, Ly, 3) unit spins.

    Parameters
    ----------
    ham, shape, schedule
        Couplings, lattice size (Lx, Ly) and schedule.
    seed
        Same (ham, shape, schedule, seed) -> bit-identical texture, on any thread or worker.
    images
        Dipolar kernel mode (None = fully periodic).
    exact
        Update the whole dipolar field after every accepted move (O(N) each; for the bias
        check and the speed baseline only; periodic kernel only).
    progress
        Called with the number of sweeps done since the last call.
    """
    lx, ly = shape
    if min(lx, ly) < MIN_SIZE:
        raise InputError(f"lattice must be at least {MIN_SIZE}x{MIN_SIZE}, got {lx}x{ly}")
    schedule = schedule.draw(seed)
    state = rng_state(seed)
    spins = random_spins(lx, ly, state)
    kernel = dipolar_kernel(lx, ly, images)
    if exact and images is not None:
        raise InputError("the exact-update variant supports the periodic kernel only")
    near = kernel.stencil(schedule.near_radius)
    near_field = np.zeros_like(spins)
    far = np.zeros(spins.shape, dtype=np.float32)
    j, lam, k, d = ham.exchange, ham.dmi, ham.anisotropy, ham.dipolar
    cone = schedule.cone
    n_sites = lx * ly
    accepted_total = 0
    temps = schedule.temperatures()
    if exact:
        far = kernel.field(spins)
        full = np.ascontiguousarray(kernel.real)
    for step, temp in enumerate(temps):
        beta = 1.0 / temp
        if exact:
            acc = exact_metropolis_sweep(spins, far, full, j, lam, k, d, beta, cone, state)
        else:
            if d and step % schedule.refresh_every == 0:
                far = kernel.field(spins.astype(np.float32))
                near_field[:] = 0.0
            acc = metropolis_sweep(spins, far, near_field, near, j, lam, k, d, beta, cone, state)
        accepted_total += acc
        cone = _adapt(cone, acc / n_sites, schedule.target_acceptance)
        if progress is not None:
            progress(1)
    done = 0
    relax_sweeps = schedule.relax_sweeps_run
    if schedule.relax == "descent":
        done = descend(spins, ham, kernel, relax_sweeps * DESCENT_STEPS_PER_SWEEP)
    for _ in range(relax_sweeps if schedule.relax == "metropolis" else 0):
        if d:
            far = kernel.field(spins.astype(np.float32))
        near_field[:] = 0.0
        gain = relaxation_sweep(spins, far, near_field, near, j, lam, k, d)
        done += 1
        if gain > -1e-10 * n_sites:
            break
    _renormalize(spins)
    minimized, max_torque = minimize(
        spins,
        ham,
        kernel,
        schedule.minimize_steps,
        schedule.minimize_torque,
        method=schedule.minimizer,
    )
    acceptance = accepted_total / (n_sites * len(temps)) if len(temps) else math.nan
    return AnnealResult(spins, acceptance, done, minimized, max_torque)


def descend(
    spins: np.ndarray,
    ham: Hamiltonian,
    kernel,
    steps: int,
    step: float = DESCENT_STEP,
    torque: float = DESCENT_TORQUE,
) -> int:
    """Overdamped (LLG without precession) descent in place: every spin moves along the
    component of its effective field perpendicular to it, S <- normalize(S + step (H -
    (S.H) S)), until max |S x H| < ``torque`` or ``steps`` steps; returns the steps taken."""
    field = np.empty_like(spins)
    for n in range(steps):
        local_field(spins, ham.exchange, ham.dmi, ham.anisotropy, field)
        if ham.dipolar:
            field += ham.dipolar * kernel.field(spins)
        perp = field - np.sum(field * spins, axis=-1, keepdims=True) * spins
        if np.sqrt(np.max(np.sum(perp * perp, axis=-1))) < torque:
            return n
        spins += step * perp
        spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    return steps


def _renormalize(spins: np.ndarray) -> None:
    """Remove round-off drift from |S| = 1 accumulated over many moves."""
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
