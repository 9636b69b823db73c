"""Reading and writing single spin textures (.npy / .npz), atomically."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from spinfer.errors import InputError
from spinfer.physics.energy import check_spins


def load_spins(path: Path | str) -> np.ndarray:
    """(Lx, Ly, 3) float64 spins from .npy, or .npz (key ``spins`` or its only array)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a NumPy .npy/.npz spin array ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.keys())
            if "spins" in keys:
                arr = data["spins"]
            elif len(keys) == 1:
                arr = data[keys[0]]
            else:
                raise InputError(
                    f"{path}: .npz holds {len(keys)} arrays and none is named 'spins'"
                )
    else:
        arr = data
    return check_spins(arr, name=str(path))


def save_spins(path: Path | str, spins: np.ndarray, meta: dict[str, Any] | None = None) -> Path:
    """Write ``spins`` (and JSON metadata) to .npz atomically: a temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, spins=spins, meta=np.array(json.dumps(meta or {})))
    os.replace(tmp, path)
    return path
