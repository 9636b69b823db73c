"""Where a run's bias on microscope images comes from, one piece of the instrument at a time.

The external set's out-of-plane textures (Spirit's, relaxed; the ones that hold the
couplings) are shown to a run's predictor directly and through growing parts of an
instrument, each read back by the per-channel percentiles (``spinfer.data.microscope.
calibrate``) and by the joint unit-length fit (``calibrate_channels``, the reader's):

* ``spins``: the textures themselves;
* ``linear``: I_c = 0.5 + 0.3 S_c, nothing else (what calibration alone does);
* ``gaussian``: the training family's virtual microscope at a Gaussian PSF of ``--psf`` px,
  300 electrons, 12 bits;
* ``foreign, no PSF``: validation/spleem_foreign.py's instrument without its blur
  (non-linear detector, scan drift, shot and read noise, 16 bits);
* ``foreign``: that instrument with its Lorentzian PSF of ``--psf`` px; once more read with
  that PSF declared (the channels deconvolved first, spinfer.spleem.deconvolve).

Prints the mean bias and the MAE of lambda_N, K_N, D_N per reading (normalized units, the
run's scaler). The table in docs/experimental-images.md comes from it.

    python validation/reader_bias.py [--model artifacts/models/resnet18-noisy/model.pt]

Last line: key=value (the foreign instrument's K and D bias under the reader's fit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spleem_foreign import instrument

from spinfer.data.external import load_external
from spinfer.data.microscope import Microscope, calibrate, calibrate_channels, renormalize
from spinfer.models.predictor import load_predictor
from spinfer.spleem.ingest import calibrate_grey, to_image, to_lattice

READERS = ("percentiles", "unit-length fit")


def read(grey: np.ndarray, reader: str) -> np.ndarray:
    """(3, rows, cols) grey levels -> (rows, cols, 3) unit vectors."""
    grey = np.asarray(grey, dtype=np.float64)
    if reader == "percentiles":
        return renormalize(np.stack([calibrate(c) for c in grey], axis=-1))
    return renormalize(calibrate_channels(grey))


def pieces(psf: float, counts: float) -> dict[str, object]:
    """Name -> f(image, seed) giving (3, rows, cols) grey levels."""
    scope = Microscope(psf, (0.5, 0.45, 0.55), (0.3, 0.4, 0.35), 300.0, 12)
    return {
        "linear": lambda img, seed: 0.5 + 0.3 * np.moveaxis(img, -1, 0),
        "gaussian": lambda img, seed: scope.record(img, np.random.default_rng(seed)),
        "foreign, no PSF": lambda img, seed: instrument(img, 0.0, counts, seed)[0],
        "foreign": lambda img, seed: instrument(img, psf, counts, seed)[0],
    }


def show(name: str, err: np.ndarray) -> None:
    bias, mae = err.mean(axis=0), np.abs(err).mean(axis=0)
    print(
        f"{name:46s} {' / '.join(f'{v:+.3f}' for v in bias)}   "
        f"{' / '.join(f'{v:.3f}' for v in mae)}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("artifacts/models/resnet18-noisy/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/external/spirit.npz"))
    ap.add_argument("--psf", type=float, default=0.8, help="PSF width, pixels")
    ap.add_argument("--counts", type=float, default=400.0, help="foreign instrument's electrons")
    args = ap.parse_args()
    predictor = load_predictor(args.model)
    ext = load_external(args.data)
    spins = ext.spins[ext.out_of_plane].astype(np.float64)
    truth = predictor.scaler.normalize(ext.params[ext.out_of_plane])

    def errors(lattices: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lattices.transpose(0, 3, 1, 2))).float()
        return predictor.predict(x)[0] - truth

    print(f"{len(spins)} out-of-plane textures of {args.data}, model {args.model}")
    print(f"{'reading':46s} bias lambda / K / D        MAE lambda / K / D")
    rows = {"spins": errors(spins)}
    for name, record in pieces(args.psf, args.counts).items():
        greys = [record(to_image(s), i) for i, s in enumerate(spins)]
        for reader in READERS:
            rows[f"{name}, {reader}"] = errors(
                np.array([to_lattice(read(g, reader)) for g in greys])
            )
        if name == "foreign":
            seen = [
                to_lattice(renormalize(calibrate_grey(g, "lorentzian", args.psf))) for g in greys
            ]
            rows[f"foreign, {READERS[1]}, PSF declared"] = errors(np.array(seen))
    for name, err in rows.items():
        show(name, err)
    final = rows[f"foreign, {READERS[1]}"].mean(axis=0)
    told = rows[f"foreign, {READERS[1]}, PSF declared"].mean(axis=0)
    print(
        f"foreign_bias_K={final[1]:.4f} foreign_bias_D={final[2]:.4f} "
        f"declared_bias_K={told[1]:.4f} declared_bias_D={told[2]:.4f}"
    )


if __name__ == "__main__":
    main()
