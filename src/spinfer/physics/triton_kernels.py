"""Triton kernels of the torch engine's Metropolis half-sweep and dipolar spectrum product.

The eager half-sweep is about a hundred and fifty element-wise torch kernels over the whole
batch (the local field, the counter-based random numbers, the series for sin, cos and exp,
the energy change, the gathers and the scatter), each reading and writing the batch, so on
a GPU memory traffic bounds it. Here one kernel per half-sweep reads each site's four
neighbours, its dipolar field and its stream entry once and writes the accepted spins in
place, and a second kernel forms the dipolar field's spectrum in one pass.

Both repeat the eager path's float32 operations in its order, each correctly rounded (no
fused multiply-add: the launches pass ``enable_fp_fusion=False``; ``div_rn``, ``sqrt_rn``),
and the eager path avoids what CUDA and CPU round differently (division by a scalar), so on
CUDA they give the eager path's textures bit for bit. ``TRITON_INTERPRET=1`` (set before
Triton is imported) runs them on the CPU through numpy, which is how the tests compare them
with the eager path operation for operation.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK_SITES = 256  # sites of one lattice per program
BLOCK_MODES = 256  # Fourier modes of one lattice per program
_NO_FMA = {"enable_fp_fusion": False}

# Constants of the eager path (torch_engine), rounded to float32 where they meet float32.
_INV_LN2 = tl.constexpr(1.0 / math.log(2.0))
_LN2_HI = tl.constexpr(0.693145751953125)
_LN2_LO = tl.constexpr(1.428606765330187e-06)
_RINT = tl.constexpr(12582912.0)  # 1.5 * 2**23: (y + _RINT) - _RINT rounds |y| < 2**22 to even
_TO_UNIT = tl.constexpr(2.0**-24)
_GOLDEN = tl.constexpr(0x9E3779B9)
_PI_2 = tl.constexpr(math.pi / 2.0)
_PI_4 = tl.constexpr(math.pi / 4.0)
_SQRT_HALF = tl.constexpr(math.sqrt(0.5))
# 1 / k!: the exp series uses k <= 7, the sin and cos series k <= 13
_F0, _F1, _F2, _F3 = (tl.constexpr(1.0 / math.factorial(k)) for k in range(4))
_F4, _F5, _F6, _F7 = (tl.constexpr(1.0 / math.factorial(k)) for k in range(4, 8))
_F8, _F9, _F10, _F11 = (tl.constexpr(1.0 / math.factorial(k)) for k in range(8, 12))
_F12, _F13 = (tl.constexpr(1.0 / math.factorial(k)) for k in range(12, 14))


@triton.jit
def _mix32(x):
    """lowbias32 on uint32 words (``torch_engine._mix32``; products wrap mod 2**32)."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def _uniform(table, k1, draw):
    """``_Stream.uniform`` of the ``draw``-th numbers (int64): the site's table word plus
    the draw's counter, hashed."""
    offset = ((draw + 1) * _GOLDEN) & 0xFFFFFFFF
    counter = _mix32(((k1 + offset) & 0xFFFFFFFF).to(tl.uint32))
    x = _mix32(table + counter)
    return (x >> 8).to(tl.float32) * _TO_UNIT


@triton.jit
def _horner(x, c6: tl.constexpr, c5: tl.constexpr, c4: tl.constexpr, c3: tl.constexpr,
            c2: tl.constexpr, c1: tl.constexpr, c0: tl.constexpr):  # fmt: skip
    """c6 x^6 + ... + c0 by Horner's rule, in the eager loops' order."""
    p = c6 * x + c5
    p = p * x + c4
    p = p * x + c3
    p = p * x + c2
    p = p * x + c1
    return p * x + c0


@triton.jit
def _exp_nonpositive(x):
    """``torch_engine._exp_nonpositive``: 2**k exp(r) from + - * only."""
    x = tl.maximum(x, -87.0)
    y = x * _INV_LN2
    k = (y + _RINT) - _RINT
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = _horner(r, _F7, _F6, _F5, _F4, _F3, _F2, _F1) * r + _F0
    scale = ((k.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return p * scale


@triton.jit
def _sin_cos_quarter(t):
    """``torch_engine._sin_cos_quarter``: series about pi/4, then a rotation."""
    d = t - _PI_4
    d2 = d * d
    c = _horner(-d2, _F12, _F10, _F8, _F6, _F4, _F2, _F0)
    s = _horner(-d2, _F13, _F11, _F9, _F7, _F5, _F3, _F1) * d
    return _SQRT_HALF * (c + s), _SQRT_HALF * (c - s)


@triton.jit
def _circle(u):
    """``torch_engine._circle``: (cos 2 pi u, sin 2 pi u)."""
    four = 4.0 * u
    q = tl.floor(four)
    s, c = _sin_cos_quarter((four - q) * _PI_2)
    qi = q.to(tl.int32)
    cos = tl.where(qi == 0, c, tl.where(qi == 1, -s, tl.where(qi == 2, -c, s)))
    sin = tl.where(qi == 0, s, tl.where(qi == 1, c, tl.where(qi == 2, -s, -c)))
    return cos, sin


@triton.jit
def _at(base, c, x, y, sc, sx, sy, mask):
    return tl.load(base + c * sc + x * sx + y * sy, mask=mask, other=0.0)


@triton.jit(do_not_specialize=["draw", "beta_b"])  # one compiled kernel for every sweep
def _metropolis_kernel(
    spins_ptr,
    dip_ptr,
    sites_ptr,
    table_ptr,
    k1_ptr,
    exchange_ptr,
    dmi_ptr,
    anisotropy_ptr,
    dipolar_ptr,
    beta_ptr,
    cone_ptr,
    accepted_ptr,
    s_b,
    s_c,
    s_x,
    s_y,
    f_b,
    f_c,
    f_x,
    f_y,
    table_b,
    beta_b,
    lx,
    ly,
    m,
    draw,
    gxx,
    gyy,
    gxy2,
    gzz,
    BLOCK: tl.constexpr,
):
    """One lattice's ``BLOCK`` sites of a sublattice: ``_Lattices.proposals`` + the update."""
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = j < m
    site = tl.load(sites_ptr + j, mask=live, other=0).to(tl.int32)  # < Lx Ly
    ix = site // ly
    iy = site - ix * ly
    xp = tl.where(ix + 1 == lx, 0, ix + 1)
    xm = tl.where(ix == 0, lx - 1, ix - 1)
    yp = tl.where(iy + 1 == ly, 0, iy + 1)
    ym = tl.where(iy == 0, ly - 1, iy - 1)
    base = spins_ptr + b * s_b
    field = dip_ptr + b * f_b

    # the exchange + DMI field (``local_field``) plus D times the dipolar field
    J = tl.load(exchange_ptr + b)
    lam = tl.load(dmi_ptr + b)
    D = tl.load(dipolar_ptr + b)
    xp0 = _at(base, 0, xp, iy, s_c, s_x, s_y, live)
    xp1 = _at(base, 1, xp, iy, s_c, s_x, s_y, live)
    xp2 = _at(base, 2, xp, iy, s_c, s_x, s_y, live)
    xm0 = _at(base, 0, xm, iy, s_c, s_x, s_y, live)
    xm1 = _at(base, 1, xm, iy, s_c, s_x, s_y, live)
    xm2 = _at(base, 2, xm, iy, s_c, s_x, s_y, live)
    yp0 = _at(base, 0, ix, yp, s_c, s_x, s_y, live)
    yp1 = _at(base, 1, ix, yp, s_c, s_x, s_y, live)
    yp2 = _at(base, 2, ix, yp, s_c, s_x, s_y, live)
    ym0 = _at(base, 0, ix, ym, s_c, s_x, s_y, live)
    ym1 = _at(base, 1, ix, ym, s_c, s_x, s_y, live)
    ym2 = _at(base, 2, ix, ym, s_c, s_x, s_y, live)
    hx = J * (((xp0 + xm0) + yp0) + ym0) + lam * (xm2 - xp2)
    hy = J * (((xp1 + xm1) + yp1) + ym1) + lam * (ym2 - yp2)
    hz = J * (((xp2 + xm2) + yp2) + ym2) + lam * ((xp0 - xm0) + (yp1 - ym1))
    hx = hx + D * _at(field, 0, ix, iy, f_c, f_x, f_y, live)
    hy = hy + D * _at(field, 1, ix, iy, f_c, f_x, f_y, live)
    hz = hz + D * _at(field, 2, ix, iy, f_c, f_x, f_y, live)

    # the proposal: S' = normalize(S + cone v), v uniform on the sphere
    k1 = tl.load(k1_ptr + b)
    word = tl.load(table_ptr + b * table_b + j, mask=live, other=0).to(tl.uint32)
    first = draw.to(tl.int64) * 3
    u1 = _uniform(word, k1, first)
    u2 = _uniform(word, k1, first + 1)
    u3 = _uniform(word, k1, first + 2)
    z = 1.0 - 2.0 * u1
    r = tl.sqrt_rn(tl.maximum(1.0 - z * z, 0.0))
    cos, sin = _circle(u2)
    cone = tl.load(cone_ptr + b)
    o0 = _at(base, 0, ix, iy, s_c, s_x, s_y, live)
    o1 = _at(base, 1, ix, iy, s_c, s_x, s_y, live)
    o2 = _at(base, 2, ix, iy, s_c, s_x, s_y, live)
    n0 = o0 + cone * (r * cos)
    n1 = o1 + cone * (r * sin)
    n2 = o2 + cone * z
    norm = tl.sqrt_rn((n0 * n0 + n1 * n1) + n2 * n2)
    safe = tl.maximum(norm, 1e-30)
    n0 = tl.div_rn(n0, safe)
    n1 = tl.div_rn(n1, safe)
    n2 = tl.div_rn(n2, safe)

    # E(new) - E(old) of the move alone (``delta_energy``) and the Metropolis test
    d0 = n0 - o0
    d1 = n1 - o1
    d2 = n2 - o2
    de = -((d0 * hx + d1 * hy) + d2 * hz)
    quad = (gxx * (d0 * d0) + gyy * (d1 * d1)) + (gxy2 * d0) * d1
    quad = quad + gzz * (d2 * d2)
    de = de - (0.5 * D) * quad
    de = de - tl.load(anisotropy_ptr + b) * (n2 * n2 - o2 * o2)
    beta = tl.load(beta_ptr + b * beta_b)
    uphill = tl.minimum(-beta * de, 0.0)
    ok = ((de <= 0.0) | (u3 < _exp_nonpositive(uphill))) & (norm > 0.0) & live

    here = base + ix * s_x + iy * s_y
    tl.store(here, n0, mask=ok)
    tl.store(here + s_c, n1, mask=ok)
    tl.store(here + 2 * s_c, n2, mask=ok)
    tl.atomic_add(accepted_ptr + b, tl.sum(ok.to(tl.int32), axis=0))


@triton.jit
def _spectrum_kernel(
    sk_ptr,
    g_ptr,
    out_ptr,
    s_b,
    s_c,
    g_c,
    o_b,
    o_c,
    modes,
    BLOCK: tl.constexpr,
):
    """One lattice's ``BLOCK`` modes of ``_Dipolar._field``'s products: h_a = sum g s_c.

    Complex numbers are (real, imaginary) float pairs; modes are contiguous within a
    component (stride 2 floats)."""
    b = tl.program_id(0).to(tl.int64)
    k = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = k < modes
    s = sk_ptr + b * s_b + 2 * k
    r0 = tl.load(s, mask=live, other=0.0)
    i0 = tl.load(s + 1, mask=live, other=0.0)
    r1 = tl.load(s + s_c, mask=live, other=0.0)
    i1 = tl.load(s + s_c + 1, mask=live, other=0.0)
    r2 = tl.load(s + 2 * s_c, mask=live, other=0.0)
    i2 = tl.load(s + 2 * s_c + 1, mask=live, other=0.0)
    g = g_ptr + 2 * k
    xr = tl.load(g, mask=live, other=0.0)  # xx
    xi = tl.load(g + 1, mask=live, other=0.0)
    yr = tl.load(g + g_c, mask=live, other=0.0)  # yy
    yi = tl.load(g + g_c + 1, mask=live, other=0.0)
    cr = tl.load(g + 2 * g_c, mask=live, other=0.0)  # xy
    ci = tl.load(g + 2 * g_c + 1, mask=live, other=0.0)
    zr = tl.load(g + 3 * g_c, mask=live, other=0.0)  # zz
    zi = tl.load(g + 3 * g_c + 1, mask=live, other=0.0)
    # (xx s_x + xy s_y, xy s_x + yy s_y, zz s_z), each product written out as the eager path does
    hxr = (xr * r0 - xi * i0) + (cr * r1 - ci * i1)
    hxi = (xr * i0 + xi * r0) + (cr * i1 + ci * r1)
    hyr = (cr * r0 - ci * i0) + (yr * r1 - yi * i1)
    hyi = (cr * i0 + ci * r0) + (yr * i1 + yi * r1)
    hzr = zr * r2 - zi * i2
    hzi = zr * i2 + zi * r2
    o = out_ptr + b * o_b + 2 * k
    tl.store(o, hxr, mask=live)
    tl.store(o + 1, hxi, mask=live)
    tl.store(o + o_c, hyr, mask=live)
    tl.store(o + o_c + 1, hyi, mask=live)
    tl.store(o + 2 * o_c, hzr, mask=live)
    tl.store(o + 2 * o_c + 1, hzi, mask=live)


def metropolis_half_sweep(
    spins: torch.Tensor,
    dipolar_field: torch.Tensor,
    sites: torch.Tensor,
    table: torch.Tensor,
    k1: torch.Tensor,
    couplings: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    beta: torch.Tensor,
    cone: torch.Tensor,
    draw: int,
    self_term: tuple[float, float, float, float],
) -> torch.Tensor:
    """Metropolis on one sublattice of the (n, 3, Lx, Ly) ``spins`` (updated in place);
    accepted moves per lattice (int64).

    ``dipolar_field`` is the dipolar field per unit D of ``spins``; ``sites`` the sublattice's
    flat site indices, ``table`` (B >= n, len(sites)) and ``k1`` (B, 1) its random stream;
    ``couplings`` (exchange, DMI, K, D), ``beta`` and ``cone`` are (B >= n, 1) columns;
    ``draw`` numbers the half-sweep (its moves take the stream's draws 3 draw .. 3 draw + 2).
    """
    n, _, lx, ly = spins.shape
    m = sites.numel()
    accepted = torch.zeros(n, dtype=torch.int32, device=spins.device)
    exchange, dmi, anisotropy, dipolar = (c.contiguous() for c in couplings)
    gxx, gyy, gxy, gzz = self_term
    grid = (n, triton.cdiv(m, BLOCK_SITES))
    _metropolis_kernel[grid](
        spins,
        dipolar_field,
        sites,
        table,
        k1.contiguous(),
        exchange,
        dmi,
        anisotropy,
        dipolar,
        beta,
        cone.contiguous(),
        accepted,
        *spins.stride(),
        *dipolar_field.stride(),
        table.stride(0),
        beta.stride(0),
        lx,
        ly,
        m,
        draw,
        gxx,
        gyy,
        2.0 * gxy,
        gzz,
        BLOCK=BLOCK_SITES,
        **_NO_FMA,
    )
    return accepted.to(torch.int64)


def spectrum_product(spins_k: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """The dipolar field's spectrum (n, 3, Px, Py') from the spins' (n, 3, Px, Py') and the
    kernel's (4, Px, Py'), as ``_Dipolar._field`` forms it."""
    sk = torch.view_as_real(spins_k.contiguous())
    g = torch.view_as_real(spectrum.contiguous())
    out = torch.empty_like(sk)
    n = sk.shape[0]
    modes = sk.shape[2] * sk.shape[3]
    grid = (n, triton.cdiv(modes, BLOCK_MODES))
    _spectrum_kernel[grid](
        sk,
        g,
        out,
        sk.stride(0),
        sk.stride(1),
        g.stride(0),
        out.stride(0),
        out.stride(1),
        modes,
        BLOCK=BLOCK_MODES,
        **_NO_FMA,
    )
    return torch.view_as_complex(out)
