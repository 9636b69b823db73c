"""External test sets: textures this project did not make, with the couplings that made them.

An external set is one ``.npz`` file (``validation/external_spirit.py`` writes the shipped
one, annealed by Spirit): ``spins`` (N, L, L, 3) unit vectors in spinfer's order
``[ix, iy, (Sx, Sy, Sz)]`` and ``params`` (N, 3) as (lambda, K, D) in units of J, with an
optional JSON ``meta`` string (simulator, protocol, one record per texture). Textures larger
than a model's input are read as the grid of non-overlapping model-sized panels.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spinfer.data.panels import cut_panels, panel_corners
from spinfer.errors import InputError
from spinfer.physics.observables import OUT_OF_PLANE

UNIT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExternalSet:
    """Spins and true couplings of an external set."""

    name: str
    spins: np.ndarray  # (N, L, L, 3) float32
    params: np.ndarray  # (N, 3) lambda, K, D
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def out_of_plane(self) -> np.ndarray:
        """Textures whose mean |Sz| exceeds OUT_OF_PLANE (the evaluation's out-of-plane
        class)."""
        return np.abs(self.spins[..., 2]).mean(axis=(1, 2)) > OUT_OF_PLANE


def load_external(path: Path | str) -> ExternalSet:
    """Read and check an external set; raises InputError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"external set {path}: no such file (dvc pull data.dvc, or remake it)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"external set {path}: not a NumPy .npz file ({exc})") from None
    for key in ("spins", "params"):
        if key not in arrays:
            raise InputError(
                f"external set {path}: no '{key}' array (it needs 'spins' (N, L, L, 3) and "
                "'params' (N, 3) = lambda, K, D per texture)"
            )
    spins, params = arrays["spins"], np.asarray(arrays["params"], dtype=np.float64)
    if spins.ndim != 4 or spins.shape[-1] != 3 or spins.shape[1] != spins.shape[2]:
        raise InputError(f"external set {path}: spins must be (N, L, L, 3), got {spins.shape}")
    if params.shape != (len(spins), 3):
        raise InputError(
            f"external set {path}: params must be ({len(spins)}, 3) = lambda, K, D per "
            f"texture, got {params.shape}"
        )
    if not (np.isfinite(spins).all() and np.isfinite(params).all()):
        raise InputError(f"external set {path}: spins or params hold NaN or infinity")
    norms = np.linalg.norm(spins.astype(np.float64), axis=-1)
    if np.abs(norms - 1.0).max() > UNIT_TOLERANCE:
        raise InputError(f"external set {path}: spins are not unit vectors")
    meta = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise InputError(f"external set {path}: 'meta' is not a JSON string") from None
    return ExternalSet(path.stem, spins.astype(np.float32), params, meta)


def panel_tiles(spins: np.ndarray, size: int) -> np.ndarray:
    """(P, size, size, 3): the non-overlapping size x size panels of one (L, L, 3) texture."""
    lx, ly = spins.shape[:2]
    if lx < size or ly < size:
        raise InputError(
            f"external textures are {lx}x{ly}, smaller than the model's {size}x{size} input"
        )
    return cut_panels(spins, panel_corners((lx, ly), size), size)
