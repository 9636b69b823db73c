"""Generation throughput on a Dask LocalCluster with 1 and 2 workers, and the write share.

Anneals the same small dataset (default profile physics: 100 x 100, the default schedule)
twice, with 1 and then 2 worker processes, into scratch stores; reports textures/s of each
(wall time, cluster start included), the scaling ratio (target close to 2 on 2 cores) and
the share of the workers' time spent writing shards (target under 5%). Both stores must be
bit-identical (checked). Last line: key=value pairs.

    python benchmarks/generate_speed.py [--textures 24]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from spinfer.config import load_params
from spinfer.data.generate import generate
from spinfer.data.store import MANIFEST

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textures", type=int, default=24, help="textures (multiple of 4)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args()
    sets = max(1, args.textures // 4)
    params = load_params(
        args.params,
        [
            "profile=default",
            f"dataset.sets={sets}",
            "dataset.per_set=4",
            "dataset.split=[2, 1, 1]",
            "dataset.shard_textures=2",
        ],
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}" / "textures.zarr"
            results[workers] = generate(params, out, workers=workers, progress=False)
            print(results[workers].line())
        same = (Path(tmp) / "w1/textures.zarr" / MANIFEST).read_text() == (
            Path(tmp) / "w2/textures.zarr" / MANIFEST
        ).read_text()
    one, two = results[1], results[2]
    write_share = (one.seconds_write + two.seconds_write) / (
        one.seconds_anneal + one.seconds_write + two.seconds_anneal + two.seconds_write
    )
    print(f"1 worker : {one.rate:.2f} textures/s")
    print(f"2 workers: {two.rate:.2f} textures/s (scaling {two.rate / one.rate:.2f}x)")
    print(f"write share of worker time: {100 * write_share:.2f}% (target < 5%)")
    print(f"bit-identical across worker counts: {same}")
    print(
        f"textures={one.textures} textures_per_s_1={one.rate:.3f} "
        f"textures_per_s_2={two.rate:.3f} scaling={two.rate / one.rate:.3f} "
        f"write_share={write_share:.4f} identical={same}"
    )


if __name__ == "__main__":
    main()
