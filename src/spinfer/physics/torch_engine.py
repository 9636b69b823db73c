"""The torch annealing engine: the numba engine's Hamiltonian and schedule on a batch of lattices.

Many lattices anneal at once, on a GPU when one is present (CPU otherwise), each with its
own couplings, protocol and random stream:

* **Checkerboard Metropolis.** A sweep is two half-sweeps, one per sublattice ((ix + iy)
  even, then odd). Exchange and DMI couple a site to the other sublattice only, so their
  field is exact for every proposal. The dipolar field (near and far) is recomputed by a
  batched FFT before every half-sweep: exact for the other sublattice, one half-sweep stale
  for same-sublattice partners moved in the same half-sweep (the price of updating half the
  lattice at once; the numba engine's ``refresh_every`` and ``near_radius`` do not apply).
  The proposal is the numba engine's (S' = normalize(S + cone v), v uniform on the sphere)
  with its per-lattice adaptive cone.
* **The same schedule.** Temperatures per sweep, the zero-temperature relaxation (Metropolis
  turned to the local field, or the overdamped descent), the minimisation (L-BFGS or
  velocity projection, per lattice: its own memory, step cap and convergence) and its torque
  threshold, and randomized protocols drawn per texture exactly as ``anneal`` draws them.
  Lattices with shorter protocols, or already converged, simply stop moving.
* **Seeds.** The start is the numba engine's infinite-temperature state of the same seed;
  after that, every random number is a counter-based hash of (texture stream, draw, site),
  the stream keyed by ``SeedSequence(seed)`` with a spawn key of its own. A texture
  therefore depends on (couplings, seed, schedule, engine, device kind), never on the other
  lattices of its batch or on how the work was split into batches.
* **Two implementations of the Metropolis half-sweep** (``kernels``): eager torch
  operations, or two fused Triton kernels (``triton_kernels``) that repeat their arithmetic
  operation for operation, so the choice changes the speed, not the textures.

State is float32; reductions that decide control flow (minimiser mixing, convergence) run in
float64; energies for the store come from ``energy.energy_terms`` (float64) afterwards.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spinfer.errors import InputError
from spinfer.physics.anneal import (
    DESCENT_STEP,
    DESCENT_STEPS_PER_SWEEP,
    DESCENT_TORQUE,
    AnnealResult,
    Schedule,
    rng_state,
)
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import MIN_SIZE, Hamiltonian
from spinfer.physics.minimize import LBFGS_FIRST_STEP, LBFGS_MAX_ANGLE, LBFGS_MEMORY, VP_STEP
from spinfer.physics.montecarlo import random_spins

DEVICES = ("auto", "cpu", "cuda")
KERNELS = ("auto", "triton", "torch")
_STREAM_KEY = 0x70C4  # spawn key of the engine's random stream under the texture's seed
_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_TO_UNIT = 2.0**-24
#: Device memory per lattice site while annealing: a generous estimate of the working set
#: (state, fields, FFT buffers, rolled copies, proposal temporaries, stream tables; about
#: 500 bytes counted; the L-BFGS memory adds 5 float64 pairs, 240 bytes, and its float64
#: force and direction ~150), not a measured peak; a GPU run should measure and tighten it.
BYTES_PER_SITE = 1600


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when torch sees one, else CPU), ``cpu`` or ``cuda``."""
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r} for the torch engine (known: {DEVICES})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "the torch engine was asked for CUDA (dataset.device: cuda) but torch sees no "
            "CUDA device; use dataset.device: auto or cpu"
        )
    return torch.device(name)


def _triton_missing(device: torch.device) -> str | None:
    """Why the fused Triton kernels cannot run on ``device`` (None: they can)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return f"the Triton kernels run on CUDA (or under TRITON_INTERPRET=1), not on {device.type}"


def resolve_kernels(name: str, device: torch.device) -> str:
    """The half-sweep's implementation: ``triton`` (fused kernels, ``triton_kernels``) or
    ``torch`` (eager). ``auto`` takes triton where it can run (CUDA with Triton installed).
    Both are the same arithmetic, so they anneal the same textures; triton is the faster."""
    if name not in KERNELS:
        raise InputError(f"unknown kernels {name!r} for the torch engine (known: {KERNELS})")
    if name == "torch":
        return "torch"
    missing = _triton_missing(device)
    if missing is None:
        return "triton"
    if name == "triton":
        raise InputError(f"dataset.kernels: triton was asked for but {missing}; use auto or torch")
    return "torch"


# --- counter-based random numbers -------------------------------------------------------


def _mul32(x, m: int):
    """x * m mod 2**32 for x < 2**32 held in int64 (16-bit halves of m: no overflow)."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x):
    """The lowbias32 integer hash (C. Wellons): a bijection of 32-bit words, good avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def stream_keys(seed: int | np.random.SeedSequence) -> tuple[int, int]:
    """The two 32-bit keys of a texture's engine stream (independent of its start state)."""
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    child = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, _STREAM_KEY))
    k0, k1 = child.generate_state(2, dtype=np.uint32)
    return int(k0), int(k1)


class _Stream:
    """Uniform float32 numbers in [0, 1) per (lattice, draw, site) of one sublattice."""

    def __init__(self, keys: torch.Tensor, sites: Sequence[torch.Tensor]) -> None:
        self.k1 = keys[:, 1:2].contiguous()  # (B, 1)
        # per-lattice site table of each sublattice: mix(site ^ k0)
        self.table = [_mix32(s[None, :] ^ keys[:, 0:1]) for s in sites]

    def uniform(self, draw: int, parity: int, n: int) -> torch.Tensor:
        """The draw-th numbers of the first ``n`` lattices on sublattice ``parity``."""
        counter = _mix32((self.k1[:n] + _mul32(draw + 1, _GOLDEN)) & _M32)
        x = _mix32((self.table[parity][:n] + counter) & _M32)
        return (x >> 8).to(torch.float32) * _TO_UNIT


# --- arithmetic that is the same in every batch ------------------------------------------
# CPU kernels compute the tail of a tensor (and of each thread's chunk) with scalar code, the
# rest with SIMD code; the two agree bit for bit only for correctly rounded operations
# (+ - * / sqrt). Transcendental functions (exp, sin, cos) and float reductions would make a
# texture depend on its position in the batch, so the engine builds them from those. The
# same discipline makes the eager path and the fused Triton kernels (``triton_kernels``) one
# arithmetic: every float32 operation correctly rounded, in a fixed order, and no division by
# a scalar (CUDA multiplies by its reciprocal, the CPU divides).

_INV_LN2 = 1.0 / math.log(2.0)
_LN2_HI, _LN2_LO = 0.693145751953125, 1.428606765330187e-06  # Cody-Waite: k * hi is exact
_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(8))  # |r| <= ln2/2: error < 1e-8
_PI_2 = math.pi / 2.0


def _dot3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over the component axis (1) in a fixed order."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded square root on every device: CUDA's float32 sqrt is; the CPU's is
    not (about a fifth of its results are one unit off), so there it goes through float64."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        return torch.sqrt(x.double()).float()
    return torch.sqrt(x)


def _normalize(v: torch.Tensor) -> torch.Tensor:
    """v / |v| along axis 1 (|v| > 0)."""
    return v / _sqrt(_dot3(v, v)).unsqueeze(1)


def _exp_nonpositive(x: torch.Tensor) -> torch.Tensor:
    """exp(x) for x <= 0 in float32 from + - * only: 2**k exp(r), |r| <= ln2 / 2."""
    x = torch.clamp(x, min=-87.0)
    k = torch.round(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    poly = torch.full_like(r, _EXP_TAYLOR[-1])
    for c in reversed(_EXP_TAYLOR[:-1]):
        poly = poly * r + c
    scale = ((k.to(torch.int32) + 127) << 23).view(torch.float32)  # exactly 2**k
    return poly * scale


def _sin_cos_quarter(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos) of t in [0, pi/2] by Taylor series about pi/4 (error < 2e-8)."""
    d = t - math.pi / 4.0
    d2 = d * d
    # cos d and sin d to order 12 / 13, then rotate by pi/4
    cos_d = torch.full_like(d, 1.0 / math.factorial(12))
    for k in range(10, -1, -2):
        cos_d = cos_d * (-d2) + 1.0 / math.factorial(k)
    sin_d = torch.full_like(d, 1.0 / math.factorial(13))
    for k in range(11, 0, -2):
        sin_d = sin_d * (-d2) + 1.0 / math.factorial(k)
    sin_d = sin_d * d
    h = math.sqrt(0.5)
    return h * (cos_d + sin_d), h * (cos_d - sin_d)


def _circle(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos 2 pi u, sin 2 pi u) for u in [0, 1): quadrant, then a quarter-turn series."""
    q = torch.floor(4.0 * u)
    s, c = _sin_cos_quarter((4.0 * u - q) * _PI_2)
    q = q.to(torch.int64)
    cos = torch.where(q == 0, c, torch.where(q == 1, -s, torch.where(q == 2, -c, s)))
    sin = torch.where(q == 0, s, torch.where(q == 1, c, torch.where(q == 2, -s, -c)))
    return cos, sin


_FIXED = 2.0**32  # fixed-point scale of order-free sums


def _row_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over all but the first axis, in float64, the same whatever the order: terms are
    rounded to multiples of 2**-32 and added as integers (exact for |sum| < 2**31)."""
    fixed = torch.round(x.flatten(1).double() * _FIXED).to(torch.int64)
    return fixed.sum(dim=1).double() / _FIXED


# --- fields and energies ----------------------------------------------------------------


def local_field(spins: torch.Tensor, exchange: torch.Tensor, dmi: torch.Tensor) -> torch.Tensor:
    """Exchange + DMI field of (B, 3, Lx, Ly) spins (``energy.local_field`` without K)."""
    xp, xm = torch.roll(spins, -1, 2), torch.roll(spins, 1, 2)  # S[i+1, j], S[i-1, j]
    yp, ym = torch.roll(spins, -1, 3), torch.roll(spins, 1, 3)
    h = exchange[:, :, None, None] * (((xp + xm) + yp) + ym)
    lam = dmi[:, :, None]
    hx = h[:, 0] + lam * (xm[:, 2] - xp[:, 2])
    hy = h[:, 1] + lam * (ym[:, 2] - yp[:, 2])
    hz = h[:, 2] + lam * ((xp[:, 0] - xm[:, 0]) + (yp[:, 1] - ym[:, 1]))
    return torch.stack((hx, hy, hz), dim=1)


class _Dipolar:
    """The periodic (or block) dipolar kernel's spectrum on the device; field per unit D."""

    def __init__(
        self, shape: tuple[int, int], images: int | None, device: torch.device, fused: bool
    ):
        kernel = dipolar_kernel(shape[0], shape[1], images)
        self.shape, self.fused = shape, fused
        self.padded = kernel.real.shape[1:]
        self.spectrum = torch.from_numpy(np.array(kernel.spectrum32)).to(device)
        self.self_term = [float(v) for v in kernel.self_term]  # xx, yy, xy, zz

    def field(self, spins: torch.Tensor) -> torch.Tensor:
        """h / D of (B, 3, Lx, Ly) spins. On CPU one lattice at a time on one thread: the CPU
        FFT groups rows (of other lattices, or of a thread's share) into SIMD lanes, so its
        round-off would depend on the batch and the thread count (and one lattice at a time
        is faster there, in cache). CUDA transforms the whole batch at once."""
        if spins.device.type != "cpu":
            return self._field(spins)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return torch.cat([self._field(one) for one in spins.split(1)])
        finally:
            torch.set_num_threads(threads)

    def _field(self, spins: torch.Tensor) -> torch.Tensor:
        sk = torch.fft.rfft2(spins, s=self.padded)
        if self.fused:
            from spinfer.physics.triton_kernels import spectrum_product

            h = torch.fft.irfft2(spectrum_product(sk, self.spectrum), s=self.padded)
            return h[:, :, : self.shape[0], : self.shape[1]]
        re, im = sk.real, sk.imag  # complex products written out: SIMD and scalar agree
        gr, gi = self.spectrum.real, self.spectrum.imag

        def apply(a: int, b: int, ca: int, cb: int | None) -> torch.Tensor:
            """sum over (g_a s_ca + g_b s_cb) in real arithmetic."""
            hr = gr[a] * re[:, ca] - gi[a] * im[:, ca]
            hi = gr[a] * im[:, ca] + gi[a] * re[:, ca]
            if cb is not None:
                hr = hr + (gr[b] * re[:, cb] - gi[b] * im[:, cb])
                hi = hi + (gr[b] * im[:, cb] + gi[b] * re[:, cb])
            return torch.complex(hr, hi)

        hk = torch.stack((apply(0, 2, 0, 1), apply(2, 1, 0, 1), apply(3, 3, 2, None)), dim=1)
        h = torch.fft.irfft2(hk, s=self.padded)
        return h[:, :, : self.shape[0], : self.shape[1]]


def delta_energy(
    old: torch.Tensor,
    new: torch.Tensor,
    field: torch.Tensor,
    anisotropy: torch.Tensor,
    dipolar: torch.Tensor,
    self_term: Sequence[float],
) -> torch.Tensor:
    """E(new) - E(old) of moving each spin alone: (B, 3, M) spins and their full field.

    ``field`` holds exchange + DMI + D * dipolar (self images included); the quadratic
    self-image and anisotropy terms are added exactly, as in ``montecarlo._delta_energy``.
    """
    d = new - old
    de = -_dot3(d, field)
    gxx, gyy, gxy, gzz = self_term
    quad = gxx * d[:, 0] ** 2 + gyy * d[:, 1] ** 2 + 2.0 * gxy * d[:, 0] * d[:, 1]
    quad = quad + gzz * d[:, 2] ** 2
    de = de - 0.5 * dipolar * quad
    return de - anisotropy * (new[:, 2] ** 2 - old[:, 2] ** 2)


# --- the batch ---------------------------------------------------------------------------


@dataclass
class _Couplings:
    exchange: torch.Tensor  # (B, 1) float32
    dmi: torch.Tensor
    anisotropy: torch.Tensor
    dipolar: torch.Tensor

    def take(self, n: int) -> _Couplings:
        return _Couplings(self.exchange[:n], self.dmi[:n], self.anisotropy[:n], self.dipolar[:n])

    def index(self, rows: torch.Tensor) -> _Couplings:
        return _Couplings(
            self.exchange[rows], self.dmi[rows], self.anisotropy[rows], self.dipolar[rows]
        )


class _Lattices:
    """B lattices on one device: spins (B, 3, Lx, Ly) float32 and what moves them."""

    def __init__(
        self,
        hams: Sequence[Hamiltonian],
        shape: tuple[int, int],
        seeds: Sequence[int],
        images: int | None,
        device: torch.device,
        kernels: str = "torch",
    ) -> None:
        lx, ly = shape
        self.shape, self.device, self.n_sites = shape, device, lx * ly
        start = np.stack([random_spins(lx, ly, rng_state(int(s))) for s in seeds])
        self.spins = torch.from_numpy(np.moveaxis(start, -1, 1).astype(np.float32)).to(device)

        def column(values) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)[:, None]

        self.couplings = _Couplings(
            column([h.exchange for h in hams]),
            column([h.dmi for h in hams]),
            column([h.anisotropy for h in hams]),
            column([h.dipolar for h in hams]),
        )
        self.kernels = kernels
        self.dipolar = _Dipolar(shape, images, device, fused=kernels == "triton")
        flat = torch.arange(lx * ly, device=device)
        parity = ((flat // ly) + (flat % ly)) % 2
        self.sites = [flat[parity == p] for p in (0, 1)]
        keys = torch.tensor([stream_keys(int(s)) for s in seeds], dtype=torch.int64)
        self.stream = _Stream(keys.to(device), self.sites)
        if kernels == "triton":
            self._build_fused()

    def field(self, spins: torch.Tensor, c: _Couplings, anisotropy: bool) -> torch.Tensor:
        """-dH/dS of (B, 3, Lx, Ly) spins: exchange, DMI, D * dipolar (and 2 K Sz ez)."""
        h = local_field(spins, c.exchange, c.dmi)
        h = h + c.dipolar[:, :, None, None] * self.dipolar.field(spins)
        if anisotropy:
            h[:, 2] += 2.0 * c.anisotropy[:, :, None] * spins[:, 2]
        return h

    def proposals(
        self, n: int, parity: int, beta: torch.Tensor, cone: torch.Tensor, draw: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Metropolis proposals on sublattice ``parity`` of the first ``n`` lattices, each
        judged alone against the current state: (old, new, E(new) - E(old), accepted)."""
        spins = self.spins[:n]
        c = self.couplings.take(n)
        field = self.field(spins, c, anisotropy=False)
        idx = self.sites[parity]
        old, h = spins.flatten(2)[:, :, idx], field.flatten(2)[:, :, idx]
        u1 = self.stream.uniform(3 * draw, parity, n)
        u2 = self.stream.uniform(3 * draw + 1, parity, n)
        u3 = self.stream.uniform(3 * draw + 2, parity, n)
        z = 1.0 - 2.0 * u1
        r = _sqrt(torch.clamp(1.0 - z * z, min=0.0))
        cos, sin = _circle(u2)
        v = torch.stack((r * cos, r * sin, z), dim=1)
        new = old + cone[:, :, None] * v
        norm = _sqrt(_dot3(new, new))
        new = new / torch.clamp(norm, min=1e-30).unsqueeze(1)
        de = delta_energy(old, new, h, c.anisotropy, c.dipolar, self.dipolar.self_term)
        uphill = torch.clamp(-beta * de, max=0.0)
        ok = (de <= 0.0) | (u3 < _exp_nonpositive(uphill))
        return old, new, de, ok & (norm > 0.0)

    def half_sweep(
        self, n: int, parity: int, beta: torch.Tensor, cone: torch.Tensor, draw: int
    ) -> torch.Tensor:
        """Metropolis on sublattice ``parity`` of the first ``n`` lattices; accepted counts."""
        if self.kernels == "triton":
            return self._fused_half_sweep(n, parity, beta, cone, draw)
        old, new, _, ok = self.proposals(n, parity, beta, cone, draw)
        self.spins[:n].flatten(2)[:, :, self.sites[parity]] = torch.where(ok[:, None], new, old)
        return ok.sum(dim=1)

    def _fused_half_sweep(
        self, n: int, parity: int, beta: torch.Tensor, cone: torch.Tensor, draw: int
    ) -> torch.Tensor:
        """``half_sweep`` in two Triton kernels (dipolar spectrum, then the moves)."""
        from spinfer.physics.triton_kernels import metropolis_half_sweep

        spins = self.spins[:n]
        c = self.couplings
        return metropolis_half_sweep(
            spins,
            self.dipolar.field(spins),
            self.sites[parity],
            self.stream.table[parity],
            self.stream.k1,
            (c.exchange, c.dmi, c.anisotropy, c.dipolar),
            beta,
            cone,
            draw,
            tuple(self.dipolar.self_term),
        )

    def _build_fused(self) -> None:
        """Compile the Triton kernels on a scratch copy of one lattice (nothing of the batch
        moves). A host where they do not build (no C compiler, an unsupported GPU) anneals
        with the eager path, with a warning: the textures are the same."""
        saved = self.spins
        try:
            self.spins = saved[:1].clone()
            zero = torch.zeros((1, 1), dtype=torch.float32, device=self.device)
            for parity in (0, 1):
                self._fused_half_sweep(1, parity, zero, zero + 1.0, 0)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # a compiler's or driver's error, of any type
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warnings.warn(
                f"the Triton kernels did not build on {self.device} ({reason}); "
                "annealing with the eager torch path (the same textures, slower)",
                stacklevel=3,
            )
            self.kernels, self.dipolar.fused = "torch", False
        finally:
            self.spins = saved

    def relax_half_sweep(self, rows: torch.Tensor, parity: int) -> torch.Tensor:
        """T = 0 half-sweep of lattices ``rows``: turn each spin to its local field when
        that lowers H; returns each lattice's energy change (float64)."""
        spins = self.spins[rows]
        c = self.couplings.index(rows)
        field = self.field(spins, c, anisotropy=False)
        flat, flat_field = spins.flatten(2), field.flatten(2)
        idx = self.sites[parity]
        old, h = flat[:, :, idx], flat_field[:, :, idx]
        target = h.clone()
        target[:, 2] += 2.0 * c.anisotropy * old[:, 2]
        norm = _sqrt(_dot3(target, target))
        new = target / torch.clamp(norm, min=1e-30).unsqueeze(1)
        de = delta_energy(old, new, h, c.anisotropy, c.dipolar, self.dipolar.self_term)
        ok = (de < 0.0) & (norm > 0.0)
        flat[:, :, idx] = torch.where(ok[:, None, :], new, old)
        self.spins[rows] = spins
        return _row_sum(torch.where(ok, de, 0.0))

    def force(self, spins: torch.Tensor, c: _Couplings) -> torch.Tensor:
        """The torque-carrying force H - (S.H) S of every spin (B, 3, Lx, Ly)."""
        h = self.field(spins, c, anisotropy=True)
        return h - _dot3(spins, h).unsqueeze(1) * spins


def _max_torque2(force: torch.Tensor) -> torch.Tensor:
    """max over sites of |f|^2 per lattice, float64."""
    return _dot3(force, force).flatten(1).amax(dim=1).double()


def _descend(lat: _Lattices, rows: torch.Tensor, steps: int) -> torch.Tensor:
    """Overdamped descent of lattices ``rows`` (``anneal.descend``); steps taken per lattice."""
    spins = lat.spins[rows]
    c = lat.couplings.index(rows)
    taken = torch.full((len(rows),), steps, dtype=torch.int64, device=lat.device)
    active = torch.ones(len(rows), dtype=torch.bool, device=lat.device)
    for n in range(steps):
        f = lat.force(spins, c)
        done = active & (_max_torque2(f) < DESCENT_TORQUE**2)
        taken[done] = n
        active &= ~done
        if not active.any():
            break
        moved = _normalize(spins + DESCENT_STEP * f)
        spins = torch.where(active[:, None, None, None], moved, spins)
    lat.spins[rows] = spins
    return taken


def _relax_metropolis(lat: _Lattices, rows: torch.Tensor, sweeps: int) -> torch.Tensor:
    """Zero-temperature sweeps of lattices ``rows`` until a sweep gains < 1e-10 J per site."""
    done = torch.zeros(len(rows), dtype=torch.int64, device=lat.device)
    active = torch.ones(len(rows), dtype=torch.bool, device=lat.device)
    for _ in range(sweeps):
        live = rows[active]
        gain = lat.relax_half_sweep(live, 0) + lat.relax_half_sweep(live, 1)
        done[active] += 1
        still = gain <= -1e-10 * lat.n_sites
        active[active.clone()] = still
        if not active.any():
            break
    return done


class _Working:
    """A minimiser's per-lattice bookkeeping: steps taken, final max torque and converged
    spins of every lattice, and the working batch, which drops converged lattices once a
    quarter of it has converged, so that a long tail of a few slow lattices costs what
    those lattices cost, not the whole batch. Every operation of the minimisers is per
    lattice, so dropping rows changes no result."""

    def __init__(self, lat: _Lattices, steps: int, torque: float) -> None:
        b, dev = lat.spins.shape[0], lat.device
        self.lat, self.steps, self.torque2 = lat, steps, torque * torque
        self.out = lat.spins.clone()
        self.rows = torch.arange(b, device=dev)  # the working batch's lattices
        self.active = torch.ones(b, dtype=torch.bool, device=dev)  # over the working batch
        self.couplings = lat.couplings
        self.taken = torch.full((b,), steps, dtype=torch.int64, device=dev)
        self.final = torch.zeros(b, dtype=torch.float64, device=dev)
        self.live = b

    def settle(self, n: int, spins: torch.Tensor, force: torch.Tensor) -> bool:
        """Record the lattices converged at step ``n`` (or out of steps); True while any is
        left."""
        fmax = _max_torque2(force)
        done = self.active & ((fmax < self.torque2) | (n == self.steps))
        rows = self.rows[done]
        self.taken[rows], self.final[rows] = n, torch.sqrt(fmax[done])
        self.out[rows] = spins[done]
        self.active &= ~done
        self.live = int(self.active.sum())  # the step's one read back from the device
        return self.live > 0

    def shrink(self) -> torch.Tensor | None:
        """The rows to keep of every (B, ...) state tensor when the working batch shrinks now
        (after ``settle``), else None."""
        if self.live > 3 * len(self.rows) // 4:
            return None
        keep = self.active
        self.rows = self.rows[keep]
        self.couplings = self.lat.couplings.index(self.rows)
        self.active = torch.ones(self.live, dtype=torch.bool, device=self.lat.device)
        return keep

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.lat.spins = self.out
        return self.taken, self.final


def _minimize(
    lat: _Lattices, steps: int, torque: float, dt: float = VP_STEP
) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity projection of every lattice (``minimize.minimize``); (steps, max torque)."""
    work = _Working(lat, steps, torque)
    spins = lat.spins
    velocity = torch.zeros_like(spins)
    for n in range(steps + 1):
        f = lat.force(spins, work.couplings)
        if not work.settle(n, spins, f):
            break
        keep = work.shrink()
        if keep is not None:
            spins, velocity, f = spins[keep], velocity[keep], f[keep]
        vf = _row_sum(_dot3(velocity.double(), f.double()))
        ff = _row_sum(_dot3(f.double(), f.double()))
        keep_v = torch.where((vf > 0) & (ff > 0), vf / torch.clamp(ff, min=1e-300), 0.0)
        v = (keep_v.float()[:, None, None, None] + dt) * f
        mask = work.active[:, None, None, None]
        velocity = torch.where(mask, v, velocity)
        spins = torch.where(mask, _normalize(spins + dt * v), spins)
    return work.finish()


def _dot_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-lattice dot products of (B, ...) tensors in float64, the same whatever the batch or
    the threads: each row is scaled by a power of two to its own largest term and summed as
    integers (exact), so tiny late-minimisation steps keep their precision. The scale stays
    finite (at most 2^960), so an all-zero row sums to 0."""
    t = (a.double() * b.double()).flatten(1)
    largest = t.abs().amax(dim=1).clamp_min(1e-300)
    exponent = torch.floor(torch.log2((2.0**62 / t.shape[1]) / largest)).clamp_max(960.0)
    scale = torch.exp2(exponent)[:, None]
    return torch.round(t * scale).to(torch.int64).sum(dim=1).double() / scale[:, 0]


def _lbfgs(lat: _Lattices, steps: int, torque: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L-BFGS of every lattice (``minimize._lbfgs``, per lattice); (steps, max torque)."""
    work = _Working(lat, steps, torque)
    spins = lat.spins
    b, dev = spins.shape[0], lat.device
    gamma = torch.full((b,), LBFGS_FIRST_STEP, dtype=torch.float64, device=dev)
    memory: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # rho 0: not a pair
    force = lat.force(spins, work.couplings).double()
    for n in range(steps + 1):
        if not work.settle(n, spins, force):
            break
        keep = work.shrink()
        if keep is not None:
            spins, force, gamma = spins[keep], force[keep], gamma[keep]
            memory = [(s[keep], y[keep], r[keep]) for s, y, r in memory]
        active = work.active
        direction = _two_loop_rows(force, memory, gamma)
        direction = direction - _dot3(direction, spins.double()).unsqueeze(1) * spins.double()
        restart = _dot_rows(direction, force) <= 0.0  # not downhill: forget, restart
        if restart.any():
            gamma = torch.where(restart, LBFGS_FIRST_STEP, gamma)
            memory = [(s, y, torch.where(restart, 0.0, rho)) for s, y, rho in memory]
            direction = torch.where(
                restart[:, None, None, None], LBFGS_FIRST_STEP * force, direction
            )
        turn = torch.sqrt(_max_torque2(direction))
        direction = (
            direction
            * torch.clamp(LBFGS_MAX_ANGLE / turn.clamp_min(1e-300), max=1.0)[:, None, None, None]
        )
        moved = _normalize(spins + direction.float())
        moved = torch.where(active[:, None, None, None], moved, spins)
        step = (moved - spins).double()
        spins = moved
        new_force = lat.force(spins, work.couplings).double()
        change = force - new_force  # the gradient's change: g = -f
        curvature = _dot_rows(step, change)
        valid = active & (curvature > 1e-12)
        rho = torch.where(valid, 1.0 / torch.where(valid, curvature, 1.0), 0.0)
        memory.append((step, change, rho))
        if len(memory) > LBFGS_MEMORY:
            memory.pop(0)
        gamma = torch.where(valid, curvature / _dot_rows(change, change).clamp_min(1e-300), gamma)
        force = new_force
    return work.finish()


def _two_loop_rows(force: torch.Tensor, memory: list, gamma: torch.Tensor) -> torch.Tensor:
    """``minimize._two_loop`` per lattice; pairs with rho = 0 are skipped (they add 0)."""
    q = force.clone()
    alphas = []
    for step, change, rho in reversed(memory):
        a = rho * _dot_rows(step, q)
        alphas.append(a)
        q = q - a[:, None, None, None] * change
    q = q * gamma[:, None, None, None]
    for (step, change, rho), a in zip(memory, reversed(alphas), strict=True):
        q = q + (a - rho * _dot_rows(change, q))[:, None, None, None] * step
    return q


def _adapt(cone: torch.Tensor, rate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``anneal._adapt`` per lattice: widen when too many moves pass, narrow when too few."""
    return torch.clamp(torch.where(rate > target, cone * 1.05, cone * 0.95), 0.02, 2.0)


def _anneal_group(
    hams: Sequence[Hamiltonian],
    shape: tuple[int, int],
    schedules: Sequence[Schedule],
    seeds: Sequence[int],
    images: int | None,
    device: torch.device,
    progress: Callable[[int], None] | None,
    kernels: str = "torch",
) -> list[AnnealResult]:
    """Anneal one batch whose lattices are ordered by decreasing sweeps."""
    lat = _Lattices(hams, shape, seeds, images, device, kernels)
    b = len(hams)
    sweeps = [s.sweeps for s in schedules]
    longest = max(sweeps)
    temps = np.full((b, longest), np.inf)
    for i, s in enumerate(schedules):
        temps[i, : s.sweeps] = s.temperatures()
    beta_all = torch.from_numpy(1.0 / temps).to(device=device, dtype=torch.float32)
    cone = torch.tensor([s.cone for s in schedules], dtype=torch.float64, device=device)
    target = torch.tensor(
        [s.target_acceptance for s in schedules], dtype=torch.float64, device=device
    )
    accepted = torch.zeros(b, dtype=torch.int64, device=device)
    for step in range(longest):
        n = sum(1 for s in sweeps if s > step)  # a prefix: the batch is sorted by sweeps
        beta = beta_all[:n, step : step + 1]
        c32 = cone[:n, None].float()
        acc = lat.half_sweep(n, 0, beta, c32, 2 * step)
        acc = acc + lat.half_sweep(n, 1, beta, c32, 2 * step + 1)
        accepted[:n] += acc
        rate = acc.double() / lat.n_sites
        cone[:n] = _adapt(cone[:n], rate, target[:n])
        if progress is not None:
            progress(1)
    relax_done = torch.zeros(b, dtype=torch.int64, device=device)
    for method, run in (("metropolis", _relax_metropolis), ("descent", _descend)):
        rows = [i for i, s in enumerate(schedules) if s.relax == method and s.relax_sweeps_run]
        if not rows:
            continue
        limit = max(schedules[i].relax_sweeps_run for i in rows)
        limit *= DESCENT_STEPS_PER_SWEEP if method == "descent" else 1
        index = torch.tensor(rows, device=device)
        relax_done[index] = run(lat, index, limit)
    lat.spins = _normalize(lat.spins)
    first = schedules[0]
    minimise = _lbfgs if first.minimizer == "lbfgs" else _minimize
    minimized, torque = minimise(lat, first.minimize_steps, first.minimize_torque)
    out = _normalize(lat.spins.double()).cpu().numpy()
    out = np.ascontiguousarray(np.moveaxis(out, 1, -1))
    acc = accepted.cpu().numpy()
    return [
        AnnealResult(
            out[i],
            float(acc[i]) / (lat.n_sites * sweeps[i]) if sweeps[i] else math.nan,
            int(relax_done[i]),
            int(minimized[i]),
            float(torque[i]),
        )
        for i in range(b)
    ]


def batch_fits(batch: int, shape: tuple[int, int], device: torch.device) -> int:
    """The largest batch up to ``batch`` whose working set fits the device's free memory
    (CUDA), with a quarter kept free; CPU batches are taken as asked."""
    if device.type != "cuda":
        return batch
    free, _ = torch.cuda.mem_get_info(device)
    per_lattice = BYTES_PER_SITE * shape[0] * shape[1]
    return max(1, min(batch, int(0.75 * free) // per_lattice))


def anneal_batch(
    hams: Sequence[Hamiltonian],
    shape: tuple[int, int],
    schedule: Schedule,
    seeds: Sequence[int],
    images: int | None = None,
    device: str | torch.device = "auto",
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
    kernels: str = "auto",
) -> list[AnnealResult]:
    """Anneal one texture per (Hamiltonian, seed) on the torch engine; results in input order.

    Parameters
    ----------
    hams, seeds
        Couplings and seed of each texture (same meaning as ``anneal``'s).
    shape, schedule, images
        Lattice size, schedule (each texture draws its protocol from its seed when
        ``schedule.randomize``) and dipolar kernel mode, shared by the whole batch.
    device
        ``auto``, ``cpu``, ``cuda`` or a torch device.
    batch
        Lattices annealed at once (default: all). Textures are grouped by protocol length so
        that short protocols do not wait for long ones; the grouping never changes a texture.
        On CUDA a batch larger than the free memory holds is split, with a warning.
    progress
        Called with 1 after every sweep of a group.
    kernels
        ``auto``, ``triton`` or ``torch`` (``resolve_kernels``): the same textures, at the
        fused kernels' speed where Triton runs.
    """
    lx, ly = shape
    if min(lx, ly) < MIN_SIZE:
        raise InputError(f"lattice must be at least {MIN_SIZE}x{MIN_SIZE}, got {lx}x{ly}")
    if len(hams) != len(seeds):
        raise InputError(f"{len(hams)} Hamiltonians but {len(seeds)} seeds")
    if not hams:
        return []
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    kernels = resolve_kernels(kernels, dev)
    size = len(hams) if batch is None else batch
    if size < 1:
        raise InputError(f"batch must be >= 1, got {size}")
    fits = batch_fits(size, shape, dev)
    if fits < size:
        warnings.warn(
            f"a batch of {size} {lx}x{ly} lattices does not fit the free memory of {dev}; "
            f"annealing {fits} at a time",
            stacklevel=2,
        )
        size = fits
    schedules = [schedule.draw(int(s)) for s in seeds]
    order = sorted(range(len(hams)), key=lambda i: -schedules[i].sweeps)
    results: list[AnnealResult | None] = [None] * len(hams)
    for start in range(0, len(order), size):
        group = order[start : start + size]
        try:
            done = _anneal_group(
                [hams[i] for i in group],
                shape,
                [schedules[i] for i in group],
                [int(seeds[i]) for i in group],
                images,
                dev,
                progress,
                kernels,
            )
        except torch.OutOfMemoryError:
            raise InputError(
                f"a batch of {len(group)} {lx}x{ly} lattices does not fit the memory of {dev}; "
                "lower dataset.batch"
            ) from None
        for i, result in zip(group, done, strict=True):
            results[i] = result
    return results  # type: ignore[return-value]
