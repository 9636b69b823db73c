"""The shipped experimental-like sample: simulated textures seen through a SPLEEM-like
forward model, at known parameters (no public SPLEEM images can be fetched here).

For each lambda/D in ``spleem.sample_dmi_over_dipolar`` (like the paper's Ir-thickness
series, DMI from positive to negative at fixed K and D) a texture is annealed on a
``sample_size`` lattice, one site per pixel, with the dataset's schedule. The forward
model, per spin component c (Sx, Sy, Sz):

1. blur by a Gaussian point-spread function of ``sample_psf_sigma`` pixels;
2. contrast and offset: intensity I_c = N (o_c + g_c S_c) with N = ``sample_counts``
   electrons per pixel and per-channel (o_c, g_c) = (0.50, 0.40), (0.48, 0.35), (0.52, 0.42);
3. shot noise: Poisson(I_c);
4. grey level: I_c / (2 N o_c) scaled to 8 bits (sx.png, sy.png, sz.png).

The images are written in the documented convention (spinfer.spleem.ingest, ``xy-up``): x
to the right along the columns, y up along the rows, row 0 at the top.

The colour-wheel image (wheel.png) is made, as a microscope's software would, from the
three noisy channels (robust calibration, renormalization) with spinfer.spleem.ingest's
wheel. truth.json records the parameters, the kshape factor and the forward model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spinfer.config import Params
from spinfer.data.microscope import Microscope
from spinfer.io import atomic_write_text

CHANNELS = ("sx", "sy", "sz")
OFFSET_GAIN = ((0.50, 0.40), (0.48, 0.35), (0.52, 0.42))
ORIENTATION = "xy-up"

log = logging.getLogger(__name__)


def set_name(ratio: float) -> str:
    """Folder name of a set: lam_p2.0 for lambda = +2.0 D, lam_m1.5 for -1.5 D."""
    sign = "p" if ratio > 0 else "m" if ratio < 0 else ""
    return f"lam_{sign}{abs(ratio):.1f}"


def forward(spins: np.ndarray, psf_sigma: float, counts: float, seed: int) -> np.ndarray:
    """(rows, cols, 3) unit spins -> (3, rows, cols) uint8 grey-scale channel images: the
    sample's fixed member of the virtual-microscope family (spinfer.data.microscope)."""
    offsets, gains = zip(*OFFSET_GAIN, strict=True)
    scope = Microscope(psf_sigma, offsets, gains, counts, bits=8)
    return scope.record(spins, np.random.default_rng(seed)).astype(np.uint8)


def make_sample(params: Params, out: Path | str, progress: bool = False) -> list[Path]:
    """Write every set of the sample under ``out``; returns the set folders."""
    from PIL import Image

    from spinfer.data.grid import resolve_kshape_factor
    from spinfer.physics.anneal import Schedule, anneal
    from spinfer.physics.energy import Hamiltonian
    from spinfer.spleem.ingest import from_channels, to_image, wheel_rgb

    s = params.spleem
    out = Path(out)
    kshape = resolve_kshape_factor(params.physics)
    d = s.sample_dipolar
    k = s.sample_anisotropy_over_kshape * kshape * d
    schedule = Schedule(**asdict(params.schedule))
    folders = []
    for i, ratio in enumerate(s.sample_dmi_over_dipolar):
        ham = Hamiltonian(dmi=ratio * d, anisotropy=k, dipolar=d)
        seed = np.random.SeedSequence([s.sample_seed, i])
        texture = anneal(ham, tuple(s.sample_size), schedule, seed).spins
        folder = out / set_name(ratio)
        folder.mkdir(parents=True, exist_ok=True)
        image = to_image(texture, ORIENTATION)
        grey = forward(image, s.sample_psf_sigma, s.sample_counts, s.sample_seed + 1000 + i)
        for name, channel in zip(CHANNELS, grey, strict=True):
            Image.fromarray(channel).save(folder / f"{name}.png")
        paths = [folder / f"{c}.png" for c in CHANNELS]
        measured = from_channels(*paths, min_norm=s.min_norm, min_size=1)
        wheel = (wheel_rgb(to_image(measured.spins, ORIENTATION)) * 255).round().astype(np.uint8)
        Image.fromarray(wheel).save(folder / "wheel.png")
        truth = {
            "lambda": ratio * d,
            "K": k,
            "D": d,
            "lambda_over_D": ratio,
            "K_over_Kshape": s.sample_anisotropy_over_kshape,
            "kshape_factor": kshape,
            "size": list(s.sample_size),
            "seed": [s.sample_seed, i],
            "orientation": ORIENTATION,
            "schedule": asdict(params.schedule),
            "protocol": asdict(schedule.draw(seed)),  # this texture's (drawn) schedule
            "forward_model": {
                "psf_sigma": s.sample_psf_sigma,
                "counts": s.sample_counts,
                "offset_gain": OFFSET_GAIN,
                "bits": 8,
            },
        }
        atomic_write_text(folder / "truth.json", json.dumps(truth, indent=2) + "\n")
        folders.append(folder)
        if progress:
            log.info("spleem sample: %s written", folder.name)
    return folders
