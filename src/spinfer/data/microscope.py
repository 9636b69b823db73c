"""A virtual microscope: spin textures seen the way a SPLEEM-like instrument records them.

Each spin component c (Sx, Sy, Sz) passes through

1. a Gaussian point-spread function of ``psf_sigma`` pixels (periodic);
2. contrast and offset: intensity I_c = N (o_c + g_c S_c), N electrons per pixel;
3. shot noise: Poisson(I_c);
4. quantisation to ``bits`` bits of the grey level I_c / (2 N o_c);

and is read back the way an experimental image is (``calibrate_channels``: the three channels
calibrated jointly so that every pixel's vector has unit length as nearly as the image
allows, per-channel percentiles where that does not determine the scale; then every pixel
renormalized). ``draw_microscope`` randomizes the parameters per image over ``MICROSCOPE``;
the shipped SPLEEM sample (spinfer.spleem.sample) is one fixed member of this family, never
drawn exactly, so it stays held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Ranges the training copies draw from (uniform unless said otherwise).
MICROSCOPE = {
    "psf_sigma": (0.0, 1.5),  # pixels (the default of noise.psf_sigma, which sets it)
    "offset": (0.35, 0.65),  # o_c, per channel
    "gain": (0.2, 0.5),  # g_c, per channel
    "counts": (30.0, 3000.0),  # N, log-uniform
    "bits": (8, 12, 16),  # one of
}
MIN_NORM = 1e-6
#: The unit-length fit is trusted when its smallest singular value lies this far below the
#: next one (a single quadric through the pixels) ...
FIT_SEPARATION = 0.97
#: ... and the median squared length it gives the pixels lies within this band of 1.
FIT_LENGTH2 = (0.7, 1.3)


@dataclass(frozen=True)
class Microscope:
    """One instrument setting."""

    psf_sigma: float
    offset: tuple[float, float, float]
    gain: tuple[float, float, float]
    counts: float
    bits: int

    def record(self, spins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(Lx, Ly, 3) unit spins -> (3, Lx, Ly) integer grey levels of the three channels."""
        from scipy.ndimage import gaussian_filter

        top = 2**self.bits - 1
        out = np.empty((3, *spins.shape[:2]), dtype=np.int64)
        for c in range(3):
            signal = spins[..., c].astype(np.float64)
            if self.psf_sigma > 0:
                signal = gaussian_filter(signal, self.psf_sigma, mode="wrap")
            intensity = self.counts * (self.offset[c] + self.gain[c] * signal)
            detected = rng.poisson(np.clip(intensity, 0.0, None))
            grey = detected / (2.0 * self.counts * self.offset[c])
            out[c] = np.clip(np.rint(grey * top), 0, top)
        return out

    def view(self, spins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(Lx, Ly, 3) unit spins as the instrument sees them, read back to unit vectors."""
        return renormalize(calibrate_channels(self.record(spins, rng)))


def calibrate(
    channel: np.ndarray, lo: float = 1.0, hi: float = 99.0, reference: np.ndarray | None = None
) -> np.ndarray:
    """Grey levels -> [-1, 1] by the lo/hi percentiles of the finite pixels (saturated or dead
    pixels do not set the scale) of ``reference`` (default: the channel itself); a channel
    without contrast reads 0."""
    ref = channel if reference is None else reference
    finite = np.isfinite(ref)
    if not finite.any():
        return np.full_like(channel, np.nan, dtype=np.float64)
    a, b = np.percentile(ref[finite], [lo, hi])
    if b <= a:
        return np.zeros_like(channel, dtype=np.float64)
    return np.clip(2.0 * (channel - a) / (b - a) - 1.0, -1.0, 1.0)


def unit_length_fit(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(3, ...) grey levels -> per-channel offset o_c and gain g_c with
    sum_c ((I_c - o_c) / g_c)^2 = 1 at every pixel as nearly as it holds, or None when the
    pixels do not determine them.

    The constraint is an axis-aligned quadric in the grey levels, linear in its seven
    coefficients (1/g_c^2, -2 o_c/g_c^2 and a constant): the fit is the smallest right
    singular vector of [I_c^2, I_c, 1] (channels centred and scaled by their 1st/99th
    percentiles; pixels far outside those, dead or saturated, left out). Unlike per-channel
    percentiles it leaves the in-plane channels of an out-of-plane texture at their true
    scale, which peaks only inside the walls. None for a uniform image, a channel without
    contrast or a fit that is not one clear quadric (see FIT_SEPARATION, FIT_LENGTH2).
    """
    x = channels.reshape(len(channels), -1).astype(np.float64)
    keep = np.isfinite(x).all(axis=0)
    if keep.sum() < 10 * x.shape[0]:
        return None
    lo, hi = np.percentile(x[:, keep], [1.0, 99.0], axis=1)
    span = hi - lo
    if (span <= 0).any():
        return None
    keep &= ((x >= (lo - span)[:, None]) & (x <= (hi + span)[:, None])).all(axis=0)
    centre = 0.5 * (lo + hi)
    z = (x[:, keep] - centre[:, None]) / span[:, None]
    design = np.concatenate([z**2, z, np.ones((1, z.shape[1]))]).T
    _, sing, vt = np.linalg.svd(design, full_matrices=False)
    if sing[-1] > FIT_SEPARATION * sing[-2]:
        return None
    coef = vt[-1] * np.sign(vt[-1][:3].sum())
    a, b, const = coef[:3], coef[3:6], coef[6]
    if (a <= 0).any():
        return None
    o = -b / (2.0 * a)
    kappa = float((a * o**2).sum() - const)  # sum_c a_c (z_c - o_c)^2 = kappa
    if kappa <= 0:
        return None
    gain = np.sqrt(kappa / a)
    length2 = float(np.median((((z - o[:, None]) / gain[:, None]) ** 2).sum(axis=0)))
    if not FIT_LENGTH2[0] <= length2 <= FIT_LENGTH2[1]:
        return None
    return centre + o * span, gain * span


def calibrate_channels(channels: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """(3, ...) grey levels of Sx, Sy, Sz -> (..., 3) calibrated vectors in [-1, 1]: by the
    unit-length fit when it holds, by each channel's percentiles (``calibrate``) otherwise.
    ``fallback``: other grey levels of the same image whose fit (else percentiles) sets the
    offsets and gains where the channels' own fit does not hold (the recorded channels of
    deconvolved ones, which may ring at the walls: spinfer.spleem.deconvolve)."""
    grey = np.asarray(channels, dtype=np.float64)
    ref, fit = grey, unit_length_fit(grey)
    if fit is None and fallback is not None:
        ref = np.asarray(fallback, dtype=np.float64)
        fit = unit_length_fit(ref)
    if fit is None:
        return np.stack([calibrate(c, reference=r) for c, r in zip(grey, ref, strict=True)], -1)
    offset, gain = (v.reshape(-1, *([1] * (grey.ndim - 1))) for v in fit)
    vec = np.clip((grey - offset) / gain, -1.0, 1.0)
    return np.moveaxis(np.where(np.isfinite(grey), vec, np.nan), 0, -1)


def renormalize(vec: np.ndarray) -> np.ndarray:
    """Unit vectors; a pixel with no signal at all points along +z."""
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    out = np.where(norm > MIN_NORM, vec / np.maximum(norm, MIN_NORM), 0.0)
    out[..., 2] = np.where(norm[..., 0] > MIN_NORM, out[..., 2], 1.0)
    return out


def draw_microscope(
    rng: np.random.Generator, psf_sigma: tuple[float, float] = MICROSCOPE["psf_sigma"]
) -> Microscope:
    """One instrument setting drawn from ``MICROSCOPE``, its PSF width from ``psf_sigma``
    (pixels; ``noise.psf_sigma``: widen it for an instrument that blurs more)."""
    lo, hi = np.log(MICROSCOPE["counts"])
    return Microscope(
        psf_sigma=float(rng.uniform(*psf_sigma)),
        offset=tuple(float(v) for v in rng.uniform(*MICROSCOPE["offset"], size=3)),
        gain=tuple(float(v) for v in rng.uniform(*MICROSCOPE["gain"], size=3)),
        counts=float(np.exp(rng.uniform(lo, hi))),
        bits=int(rng.choice(MICROSCOPE["bits"])),
    )
