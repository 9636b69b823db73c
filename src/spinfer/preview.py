"""The main job's first stage: a handful of annealed textures across the parameter ranges."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spinfer.config import Params
from spinfer.data.grid import draw_sets, parameter_grid, resolve_kshape_factor
from spinfer.io import replace_dir
from spinfer.physics.anneal import anneal
from spinfer.physics.energy import Hamiltonian
from spinfer.render import save_contact_sheet, save_texture_png, texture_label


@dataclass(frozen=True)
class PreviewTexture:
    dmi: float
    anisotropy: float
    dipolar: float
    seed: int
    mean_abs_sz: float
    png: str


def render_preview(params: Params, out_dir: Path | str) -> list[PreviewTexture]:
    """Anneal ``preview.textures`` parameter sets drawn across the ranges; write PNGs.

    Writes one PNG per texture, ``contact_sheet.png`` and ``textures.json`` into
    ``out_dir`` (the directory is replaced atomically, so a failed run leaves no half).
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    kshape = resolve_kshape_factor(params.physics)
    grid = parameter_grid(params.ranges, kshape)
    n = min(params.preview.textures, len(grid))
    sets = draw_sets(grid, n, params.base.seed)
    sets = sets[np.argsort(sets[:, 1] / (kshape * sets[:, 2]), kind="stable")]
    size = params.physics.size
    results, textures, titles = [], [], []
    bar = tqdm(total=n, desc="preview", unit="texture", disable=not sys.stderr.isatty())
    for i, (lam, k, d) in enumerate(sets):
        seed = np.random.SeedSequence([params.base.seed, i])
        ham = Hamiltonian(dmi=float(lam), anisotropy=float(k), dipolar=float(d))
        spins = anneal(ham, (size, size), params.schedule, seed, params.physics.dipolar_images)
        title = texture_label(lam, k, d, kshape)
        name = f"texture_{i:02d}.png"
        save_texture_png(spins.spins, tmp / name, title.replace("\n", "  "))
        textures.append(spins.spins)
        titles.append(title)
        results.append(
            PreviewTexture(
                float(lam), float(k), float(d), i, float(np.abs(spins.spins[..., 2]).mean()), name
            )
        )
        bar.update(1)
    bar.close()
    save_contact_sheet(textures, titles, tmp / "contact_sheet.png", cols=params.preview.cols)
    summary = {
        "kshape_factor": kshape,
        "textures": [r.__dict__ for r in results],
    }
    (tmp / "textures.json").write_text(json.dumps(summary, indent=1))
    replace_dir(tmp, out_dir)
    return results
