"""A virtual microscope: spin textures seen the way a SPLEEM-like instrument records them.

Each spin component c (Sx, Sy, Sz) passes through

1. a Gaussian point-spread function of ``psf_sigma`` pixels (periodic);
2. contrast and offset: intensity I_c = N (o_c + g_c S_c), N electrons per pixel;
3. shot noise: Poisson(I_c);
4. quantisation to ``bits`` bits of the grey level I_c / (2 N o_c);

and is read back the way an experimental image is (``calibrate``: per-channel 1st/99th
percentiles to [-1, 1], then every pixel renormalized). ``draw_microscope`` randomizes the
parameters per image over ``MICROSCOPE``; the shipped SPLEEM sample
(spinfer.spleem.sample) is one fixed member of this family, never drawn exactly, so it
stays held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Ranges the training copies draw from (uniform unless said otherwise).
MICROSCOPE = {
    "psf_sigma": (0.0, 1.5),  # pixels
    "offset": (0.35, 0.65),  # o_c, per channel
    "gain": (0.2, 0.5),  # g_c, per channel
    "counts": (30.0, 3000.0),  # N, log-uniform
    "bits": (8, 12, 16),  # one of
}
MIN_NORM = 1e-6


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
        grey = self.record(spins, rng).astype(np.float64)
        vec = np.stack([calibrate(channel) for channel in grey], axis=-1)
        return renormalize(vec)


def calibrate(channel: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    """Grey levels -> [-1, 1] by the lo/hi percentiles of the finite pixels (saturated or dead
    pixels do not set the scale); a channel without contrast reads 0."""
    finite = np.isfinite(channel)
    if not finite.any():
        return np.full_like(channel, np.nan, dtype=np.float64)
    a, b = np.percentile(channel[finite], [lo, hi])
    if b <= a:
        return np.zeros_like(channel, dtype=np.float64)
    return np.clip(2.0 * (channel - a) / (b - a) - 1.0, -1.0, 1.0)


def renormalize(vec: np.ndarray) -> np.ndarray:
    """Unit vectors; a pixel with no signal at all points along +z."""
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    out = np.where(norm > MIN_NORM, vec / np.maximum(norm, MIN_NORM), 0.0)
    out[..., 2] = np.where(norm[..., 0] > MIN_NORM, out[..., 2], 1.0)
    return out


def draw_microscope(rng: np.random.Generator) -> Microscope:
    """One instrument setting drawn from ``MICROSCOPE``."""
    lo, hi = np.log(MICROSCOPE["counts"])
    return Microscope(
        psf_sigma=float(rng.uniform(*MICROSCOPE["psf_sigma"])),
        offset=tuple(float(v) for v in rng.uniform(*MICROSCOPE["offset"], size=3)),
        gain=tuple(float(v) for v in rng.uniform(*MICROSCOPE["gain"], size=3)),
        counts=float(np.exp(rng.uniform(lo, hi))),
        bits=int(rng.choice(MICROSCOPE["bits"])),
    )
