"""Undo an instrument's declared blur: Wiener deconvolution of the raw grey-level channels.

A point-spread function (PSF) widens the domain walls an instrument records, and a wider
wall reads as a softer magnet: K and D come out low (validation/reader_bias.py measures it).
A set that declares its instrument's PSF (``psf_shape``, ``psf_width``: meta.yaml,
``spleem.psf_*``, ``--psf-shape``/``--psf-width``) has every channel deconvolved before it is
calibrated. Blur is linear in the grey levels and keeps a uniform level, so a channel's
gain and offset commute with it; where the deconvolved channels ring too much at the walls
for their own unit-length fit, the reader calibrates them with the recorded channels' offsets
and gains (spinfer.spleem.ingest).

Shapes, width ``w`` in pixels, and their optical transfer functions (OTF) at spatial
frequency f (cycles per pixel):

* ``gaussian``: exp(-r^2 / 2w^2), w the standard deviation; OTF exp(-2 pi^2 w^2 f^2);
* ``lorentzian``: the 2-D Cauchy kernel w / (2 pi (r^2 + w^2)^(3/2)), w its half-width
  parameter (FWHM 1.53 w), heavy tails as electron optics give; OTF exp(-2 pi w f).

Wiener filter: G H (1 + nsr) / (H^2 + nsr), unit gain at f = 0 (a uniform level and the mean
grey level stay as they were), one filter for the three channels: they are components of
one vector field, and filtered unequally a wall's Sz would sharpen more than its in-plane
part and the renormalized vectors would turn. nsr is the median over the channels of noise
variance / signal variance, the noise measured from the image itself (the median absolute
response of a Laplacian mask, which domain walls hardly move), never below ``NSR_FLOOR``.
Each image is mirrored to twice its size before the FFT, so that a non-periodic image does
not ring at its edges; pixels that are not finite are filled with the channel median for the
transform and stay NaN.
"""

from __future__ import annotations

import numpy as np

from spinfer.errors import InputError

PSF_SHAPES = ("gaussian", "lorentzian")
NSR_FLOOR = 1e-3
#: Laplacian mask whose response to white noise of std s has std 6 s (Immerkaer 1996).
_LAPLACE = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def check_psf(shape: str, width: float, where: str = "psf") -> None:
    if shape not in PSF_SHAPES:
        raise InputError(f"{where}: unknown PSF shape '{shape}' (known: {', '.join(PSF_SHAPES)})")
    if not (isinstance(width, int | float) and np.isfinite(width) and width >= 0):
        raise InputError(f"{where}: PSF width must be a number of pixels >= 0, got {width!r}")


def otf(size: tuple[int, int], shape: str, width: float) -> np.ndarray:
    """The PSF's transfer function on an FFT grid of ``size`` (real, symmetric, H(0) = 1)."""
    check_psf(shape, width)
    fy = np.fft.fftfreq(size[0])[:, None]
    fx = np.fft.fftfreq(size[1])[None, :]
    f2 = fx**2 + fy**2
    if shape == "gaussian":
        return np.exp(-2.0 * np.pi**2 * width**2 * f2)
    return np.exp(-2.0 * np.pi * width * np.sqrt(f2))


def noise_sigma(channel: np.ndarray) -> float:
    """Standard deviation of a channel's pixel noise, robust to edges (median absolute
    Laplacian response / 0.6745 / 6); finite pixels only."""
    from scipy.ndimage import convolve

    c = np.asarray(channel, dtype=np.float64)
    response = convolve(np.where(np.isfinite(c), c, np.nanmedian(c)), _LAPLACE, mode="mirror")
    inner = response[1:-1, 1:-1][np.isfinite(c[1:-1, 1:-1])]
    return float(np.median(np.abs(inner - np.median(inner))) / 0.6745 / 6.0)


def noise_to_signal(channel: np.ndarray) -> float:
    """A channel's noise variance over its signal variance (inf without contrast)."""
    c = np.asarray(channel, dtype=np.float64)
    finite = c[np.isfinite(c)]
    if finite.size == 0:
        return float("inf")
    noise2 = noise_sigma(c) ** 2
    signal2 = float(finite.var()) - noise2
    return noise2 / signal2 if signal2 > 0 else float("inf")


def wiener(channel: np.ndarray, shape: str, width: float, nsr: float) -> np.ndarray:
    """One channel deconvolved by the PSF with noise-to-signal ratio ``nsr`` (at least
    ``NSR_FLOOR``)."""
    c = np.asarray(channel, dtype=np.float64)
    finite = np.isfinite(c)
    if width == 0 or not finite.any():
        return c.copy()
    filled = np.where(finite, c, np.median(c[finite]))
    nsr = max(float(nsr), NSR_FLOOR)
    rows, cols = c.shape
    mirrored = np.pad(filled, ((0, rows), (0, cols)), mode="symmetric")
    h = otf(mirrored.shape, shape, width)
    gain = h * (1.0 + nsr) / (h**2 + nsr)
    out = np.real(np.fft.ifft2(np.fft.fft2(mirrored) * gain))[:rows, :cols]
    return np.where(finite, out, np.nan)


def deconvolve_channels(channels: np.ndarray, shape: str, width: float) -> np.ndarray:
    """(3, rows, cols) grey levels -> the same, deconvolved by the PSF with one Wiener filter
    (the channels' median nsr)."""
    check_psf(shape, width)
    grey = np.asarray(channels, dtype=np.float64)
    if width == 0:
        return grey.copy()
    nsr = float(np.median([noise_to_signal(c) for c in grey]))
    nsr = nsr if np.isfinite(nsr) else NSR_FLOOR
    return np.stack([wiener(c, shape, width, nsr) for c in grey])
