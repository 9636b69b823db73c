"""Train/val/test split: within every parameter set, never across one texture.

Kwon et al. split the 20 textures of each parameter set 14/4/2, so every set is seen in
training and the test textures are new anneals (other seeds) of seen Hamiltonians. The
assignment of replicas to splits is seeded per grid point, so it does not depend on which
or how many other sets were drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from spinfer.data.generate import read_textures
from spinfer.data.store import MANIFEST, sha256_file, store_meta
from spinfer.errors import ConfigError, InputError
from spinfer.io import atomic_write_text

SPLITS = ("train", "val", "test")


def assign_splits(
    grid_index: np.ndarray, replica: np.ndarray, split: tuple[int, int, int], seed: int
) -> np.ndarray:
    """Label (0 train, 1 val, 2 test) of every texture: a seeded permutation per set."""
    per_set = sum(split)
    if replica.size and (replica.min() < 0 or replica.max() >= per_set):
        raise ConfigError(
            f"dataset.split {list(split)} sums to {per_set}, but the store has replicas "
            f"0..{int(replica.max())}"
        )
    order = np.repeat(np.arange(3, dtype=np.int8), split)
    labels = np.empty(len(grid_index), dtype=np.int8)
    perms: dict[int, np.ndarray] = {}
    for i, (g, r) in enumerate(zip(grid_index.tolist(), replica.tolist(), strict=True)):
        if g not in perms:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B117, g]))
            perms[g] = order[rng.permutation(per_set)]
        labels[i] = perms[g][r]
    return labels


def make_splits(
    textures: Path | str, split: tuple[int, int, int], seed: int, out: Path | str
) -> dict[str, Any]:
    """Write ``splits.json``: texture indices of each split plus counts and provenance."""
    group = read_textures(textures)
    meta = store_meta(group)
    if sum(split) != meta["per_set"]:
        raise ConfigError(
            f"dataset.split {list(split)} must sum to the store's per_set={meta['per_set']}"
        )
    labels = assign_splits(group["grid_index"][:], group["replica"][:], split, seed)
    doc: dict[str, Any] = {
        "split": list(split),
        "seed": seed,
        "textures": str(textures),
        "textures_fingerprint": meta["fingerprint"],
        "textures_manifest_sha256": sha256_file(Path(textures) / MANIFEST),
        "counts": {name: int((labels == i).sum()) for i, name in enumerate(SPLITS)},
    }
    for i, name in enumerate(SPLITS):
        doc[name] = np.flatnonzero(labels == i).tolist()
    atomic_write_text(Path(out), json.dumps(doc, indent=None) + "\n")
    return doc


def load_splits(path: Path | str) -> dict[str, Any]:
    """Read ``splits.json`` with a clear error when it is missing or malformed."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"no split file at {path} (run `spinfer data split` or `dvc repro`)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a split file ({exc})") from None
    missing = [s for s in SPLITS if not isinstance(doc.get(s), list)]
    if missing:
        raise InputError(f"{path}: split file has no '{missing[0]}' split")
    return doc
