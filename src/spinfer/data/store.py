"""Zarr (v3) stores of textures: layout, checksums, atomic finishing and verification.

A store is a directory that Zarr reads natively, plus ``manifest.sha256`` (``sha256sum``
format) listing every other file. Texture arrays are sharded along the texture axis (one
file per shard = per generation task), and every chunk inside a shard carries a CRC32C,
so a corrupt chunk fails loudly on read; ``verify_store`` additionally re-hashes every file, which
finds a flipped byte anywhere, metadata included (``dvc status`` trusts file times).
A store counts as finished only when its root attribute ``spinfer.complete`` is true and
the manifest exists; both are written last, and the directory is then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from spinfer.errors import InputError
from spinfer.io import atomic_write_text

MANIFEST = "manifest.sha256"
FORMAT = 1
INNER_TEXTURES = 10  # textures per checksummed chunk inside a shard
# Zarr lists the manifest as "not a component of a Zarr hierarchy"; it is ours, by design.
warnings.filterwarnings("ignore", message=f"Object at {MANIFEST} is not recognized")


def texture_array(
    group: zarr.Group, name: str, n: int, size: int, dtype: str, shard_textures: int
) -> zarr.Array:
    """An (n, L, L, 3) array, ``shard_textures`` textures per shard file.

    Inner chunks hold up to ``INNER_TEXTURES`` textures, each with a CRC32C. No compression:
    spin fields in float compress by ~10% only, and decoding speed is what the loader needs.
    """
    shard = min(shard_textures, max(n, 1))
    return group.create_array(
        name,
        shape=(n, size, size, 3),
        chunks=(min(INNER_TEXTURES, shard), size, size, 3),
        shards=(shard, size, size, 3),
        dtype=dtype,
        compressors=[Crc32cCodec()],
        fill_value=np.nan,
        dimension_names=("texture", "x", "y", "component"),
    )


def small_array(group: zarr.Group, name: str, data: np.ndarray) -> zarr.Array:
    """A per-texture table (params, seeds, ...) in one checksummed chunk, written at once."""
    data = np.asarray(data)
    arr = group.create_array(
        name,
        shape=data.shape,
        chunks=data.shape if data.size else None,
        dtype=data.dtype,
        compressors=[ZstdCodec(level=3), Crc32cCodec()],
        overwrite=True,
    )
    if data.size:
        arr[...] = data
    return arr


def shard_file(array: zarr.Array, shard: int) -> str:
    """Path of shard ``shard`` (along axis 0) relative to the array's directory."""
    coords = (shard,) + (0,) * (array.ndim - 1)
    return array.metadata.encode_chunk_key(coords)


def shard_bounds(n: int, shard_textures: int) -> list[tuple[int, int]]:
    """[start, stop) of each shard along the texture axis."""
    return [(s, min(s + shard_textures, n)) for s in range(0, n, shard_textures)]


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _store_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            yield path


def write_manifest(root: Path) -> Path:
    """Hash every file of the store into ``manifest.sha256`` (atomically)."""
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}\n" for p in _store_files(root)]
    target = root / MANIFEST
    atomic_write_text(target, "".join(lines))
    return target


def git_commit(cwd: Path | None = None) -> str:
    """The current commit (``+dirty`` when the tree has changes), or ``unknown``."""
    try:
        run = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if run.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return run.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def open_store(path: Path | str, *, require_complete: bool = True) -> zarr.Group:
    """Open a finished store read-only; a clear error if it is missing, partial or foreign."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise InputError(f"no Zarr store at {path} (run `spinfer data generate` or `dvc repro`)")
    try:
        group = zarr.open_group(path, mode="r")
        meta = dict(group.attrs).get("spinfer")
    except (ValueError, KeyError, json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{path}: not a readable Zarr store ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a spinfer store (no spinfer attributes)")
    if require_complete and not meta.get("complete"):
        raise InputError(f"{path}: the store is incomplete (an interrupted run?)")
    return group


def store_meta(group: zarr.Group) -> dict[str, Any]:
    return dict(group.attrs["spinfer"])


@dataclass
class VerifyReport:
    path: Path
    files: int = 0
    chunks: int = 0
    textures: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_manifest(root: Path, report: VerifyReport) -> None:
    manifest = root / MANIFEST
    if not manifest.is_file():
        report.problems.append(f"{MANIFEST} is missing (the store was never finished)")
        return
    listed: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    present = {p.relative_to(root).as_posix(): p for p in _store_files(root)}
    for rel in sorted(set(listed) - set(present)):
        report.problems.append(f"{rel}: file is missing")
    for rel in sorted(set(present) - set(listed)):
        report.problems.append(f"{rel}: file is not in the manifest")
    for rel in sorted(set(listed) & set(present)):
        report.files += 1
        if sha256_file(present[rel]) != listed[rel]:
            report.problems.append(f"{rel}: checksum mismatch (corrupt file)")


def _check_arrays(group: zarr.Group, prefix: str, report: VerifyReport) -> None:
    for name, array in sorted(group.arrays()):
        where = f"{prefix}{name}"
        step = array.shards[0] if array.shards else (array.chunks[0] if array.ndim else 1)
        n = array.shape[0] if array.ndim else 1
        for start in range(0, max(n, 1), max(step, 1)):
            try:
                block = array[start : start + step] if array.ndim else array[()]
            except (ValueError, RuntimeError, OSError) as exc:
                report.problems.append(f"{where}[{start}:{start + step}]: unreadable ({exc})")
                continue
            report.chunks += 1
            if name == "spins":
                _check_spins(np.asarray(block), f"{where}[{start}:{start + step}]", report)
        if name == "spins":
            report.textures += n
    for name, sub in sorted(group.groups()):
        _check_arrays(sub, f"{prefix}{name}/", report)


def _check_spins(block: np.ndarray, where: str, report: VerifyReport) -> None:
    if not np.isfinite(block).all():
        report.problems.append(f"{where}: missing or non-finite spins")
        return
    norm = np.linalg.norm(block.astype(np.float64), axis=-1)
    tol = 2e-3 if block.dtype == np.float16 else 1e-5
    if np.abs(norm - 1.0).max() > tol:
        report.problems.append(f"{where}: spins are not unit vectors")


def verify_store(path: Path | str) -> VerifyReport:
    """Re-hash every file against the manifest and decode every chunk (CRC32C + |S| = 1)."""
    path = Path(path)
    report = VerifyReport(path)
    if not (path / "zarr.json").is_file():
        raise InputError(f"no Zarr store at {path}")
    _check_manifest(path, report)
    try:
        group = open_store(path, require_complete=False)
    except InputError as exc:
        report.problems.append(str(exc))
        return report
    if not store_meta(group).get("complete"):
        report.problems.append("the store is not marked complete")
    _check_arrays(group, "", report)
    return report
