"""Reading and writing single spin textures (.npy / .npz), and atomic file helpers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from spinfer.errors import InputError
from spinfer.physics.energy import check_spins


def read_array(path: Path | str) -> np.ndarray:
    """The array of a .npy file, or of a .npz file (key ``spins``, or its only array)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a NumPy .npy/.npz spin array ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        return data
    with data:
        keys = list(data.keys())
        if "spins" in keys:
            return data["spins"]
        if len(keys) == 1:
            return data[keys[0]]
    raise InputError(f"{path}: .npz holds {len(keys)} arrays and none is named 'spins'")


def load_spins(path: Path | str) -> np.ndarray:
    """(Lx, Ly, 3) float64 spins from .npy, or .npz (key ``spins`` or its only array)."""
    return check_spins(read_array(path), name=str(path))


def save_spins(path: Path | str, spins: np.ndarray, meta: dict[str, Any] | None = None) -> Path:
    """Write ``spins`` (and JSON metadata) to .npz atomically: a temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, spins=spins, meta=np.array(json.dumps(meta or {})))
    os.replace(tmp, path)
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write a text file so that readers see either the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place; an old one is removed only afterwards."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_if_empty(path: Path | str) -> None:
    """Remove a directory if it exists and is empty (scratch folders after a finished job)."""
    with contextlib.suppress(OSError):
        Path(path).rmdir()


def source_hash(package: str, names: tuple[str, ...] | list[str]) -> str:
    """sha256 over the named source files of ``package`` (each file's name, then its bytes):
    the code half of an artefact's identity (a texture store, a training checkpoint)."""
    from importlib import resources

    digest = hashlib.sha256()
    folder = resources.files(package)
    for name in names:
        digest.update(name.encode())
        digest.update(folder.joinpath(name).read_bytes())
    return digest.hexdigest()
