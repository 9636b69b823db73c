"""Textures per second the PyTorch Dataset delivers from a Zarr store on disk.

Writes a scratch store of 100 x 100 textures (random unit vectors: they compress worse
than real textures, so this is conservative) in the real layout, then times one epoch of
a DataLoader (batch 200, ShardSampler) with 0 and 2 worker processes, against a baseline
that reads every texture on its own from Zarr (no shard cache). Target: >= 2,000
textures/s on 2 cores. Last line: key=value pairs.

    python benchmarks/loader_speed.py [--textures 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from torch.utils.data import DataLoader

from spinfer.data.dataset import ShardSampler, open_dataset
from spinfer.data.store import small_array, texture_array, write_manifest

L = 100


def scratch_store(root: Path, n: int, shard: int) -> None:
    group = zarr.open_group(root / "textures.zarr", mode="w")
    group.attrs["spinfer"] = {
        "format": 1,
        "kind": "textures",
        "complete": True,
        "fingerprint": "bench",
        "targets": {"names": ["lambda", "K", "D"], "min": [-0.39, 0.03, 0.05],
                    "max": [0.39, 1.06, 0.13]},
    }  # fmt: skip
    arr = texture_array(group, "spins", n, L, "float32", shard)
    rng = np.random.default_rng(0)
    for start in range(0, n, shard):
        block = rng.normal(size=(min(shard, n - start), L, L, 3))
        block /= np.linalg.norm(block, axis=-1, keepdims=True)
        arr[start : start + len(block)] = block.astype(np.float32)
    small_array(group, "params", rng.random((n, 3)))
    write_manifest(root / "textures.zarr")
    splits = {"train": list(range(n)), "val": [], "test": []}
    (root / "splits.json").write_text(json.dumps(splits))


def epoch(loader) -> float:
    start = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", type=int, default=2000)
    parser.add_argument("--shard", type=int, default=50, help="textures per shard")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch_store(root, args.textures, args.shard)
        ds = open_dataset("train", "clean", root / "textures.zarr", root, root / "splits.json")
        array = zarr.open_array(root / "textures.zarr" / "spins", mode="r")
        start = time.perf_counter()
        m = min(200, args.textures)
        for i in range(m):
            array[i]
        baseline = m / (time.perf_counter() - start)
        rates = {}
        for workers in (0, 2):
            loader = DataLoader(
                ds,
                batch_size=200,
                sampler=ShardSampler(ds, seed=0),
                num_workers=workers,
                persistent_workers=False,
            )
            rates[workers] = epoch(loader)
    print(f"baseline (one texture at a time, no shard cache): {baseline:.0f} textures/s")
    for workers, rate in rates.items():
        print(f"DataLoader, {workers} workers: {rate:.0f} textures/s ({rate / baseline:.1f}x)")
    best = max(rates.values())
    print(f"target >= 2000 textures/s: {'PASS' if best >= 2000 else 'FAIL'}")
    print(
        f"textures={args.textures} baseline_per_s={baseline:.1f} loader0_per_s={rates[0]:.1f} "
        f"loader2_per_s={rates[2]:.1f} speedup={best / baseline:.2f} target_met={best >= 2000}"
    )


if __name__ == "__main__":
    main()
