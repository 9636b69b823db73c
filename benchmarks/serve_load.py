"""Load on `mlflow models serve`: latency and throughput, 127.0.0.1 only.

Serves one run's two model variants in turn (the tracking store of params.yaml; run
`make run` first): ``model`` (float32 tensor input, JSON nested lists) and ``compact``
(one row of float32 bytes per image: base64 in JSON ``dataframe_split``, or Parquet).
For each request encoding, one texture per request and batches of 64, with 1 and 4
concurrent clients, it sends a bounded number of requests and reports latency p50/p95 (ms),
textures/s and failed requests (must be 0), plus the client's time to encode one texture.
Target for ResNet18 on 2 cores: p50 <= 50 ms for a single texture. Last line: key=value.

    python benchmarks/serve_load.py [--requests 40] [--run resnet18-noisy | --champion]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def start(model: str, tracking: str, port: int) -> subprocess.Popen:
    """A served model (the lab's server starter); exits with the server's last words."""
    from spinfer.faults.process import start_server, venv_env

    try:
        return start_server(model, venv_env(MLFLOW_TRACKING_URI=tracking), port=port)[0]
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def post(port: int, body: bytes, content_type: str) -> tuple[bool, float]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": content_type}
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            ok = resp.status == 200
            resp.read()
    except OSError:
        ok = False
    return ok, time.perf_counter() - t0


def encode(spins: np.ndarray, encoding: str) -> tuple[bytes, str]:
    """The request body and content type of one encoding."""
    from spinfer.serve.pyfunc import compact_request, encode_compact

    if encoding == "tensor":
        return json.dumps({"inputs": spins.tolist()}).encode(), "application/json"
    if encoding == "compact":
        return json.dumps(compact_request(spins)).encode(), "application/json"
    return encode_compact(spins).to_parquet(), "application/vnd.apache.parquet"


def scenario(port: int, encoding: str, batch: int, clients: int, requests: int, size: int):
    rng = np.random.default_rng(0)
    spins = rng.normal(size=(batch, size, size, 3))
    spins = (spins / np.linalg.norm(spins, axis=-1, keepdims=True)).astype(np.float32)
    t0 = time.perf_counter()
    body, kind = encode(spins, encoding)
    encode_ms = (time.perf_counter() - t0) * 1e3 / batch
    post(port, body, kind)  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: post(port, body, kind), range(requests)))
    wall = time.perf_counter() - t0
    lat = np.array([r[1] for r in results]) * 1e3
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "textures_per_s": batch * requests / wall,
        "failed": sum(not r[0] for r in results),
        "encode_ms": encode_ms,
    }


def run_uris(params, root: Path, run_name: str) -> tuple[str, str]:
    """``runs:/`` URIs of the newest training run called ``run_name``."""
    import mlflow

    from spinfer.tracking import store_uri

    client = mlflow.MlflowClient(store_uri(params, root))
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    if experiment is None:
        raise SystemExit(f"no experiment {params.tracking.experiment!r}: run `make run` first")
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.kind = 'training' and attributes.run_name = '{run_name}'",
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        raise SystemExit(f"no training run named {run_name!r}")
    run_id = runs[0].info.run_id
    return f"runs:/{run_id}/model", f"runs:/{run_id}/compact"


def main() -> None:
    from spinfer.config import load_params
    from spinfer.serve.registry import compact_name
    from spinfer.tracking import store_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--run", default="resnet18-noisy", help="training run to serve")
    parser.add_argument("--champion", action="store_true", help="serve @champion instead")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    root = Path(args.params).resolve().parent
    name = params.tracking.registered_model
    if args.champion:
        uris = (f"models:/{name}@champion", f"models:/{compact_name(name)}@champion")
        print(f"serving {uris[0]} and {uris[1]}")
    else:
        uris = run_uris(params, root, args.run)
        print(f"serving run {args.run}: {uris[0]} and {uris[1]}")
    tracking = store_uri(params, root)
    out = {}
    for uri, encodings in ((uris[0], ("tensor",)), (uris[1], ("compact", "parquet"))):
        from spinfer.faults.process import free_port

        port = free_port()
        proc = start(uri, tracking, port)
        try:
            for encoding in encodings:
                for batch in (1, 64):
                    for clients in (1, 4):
                        n = args.requests if batch == 1 else max(4, args.requests // 8)
                        r = scenario(port, encoding, batch, clients, n, params.physics.size)
                        out[(encoding, batch, clients)] = r
                        print(
                            f"{encoding:8s} batch {batch:3d}, {clients} clients: "
                            f"p50 {r['p50_ms']:7.1f} ms, p95 {r['p95_ms']:7.1f} ms, "
                            f"{r['textures_per_s']:7.1f} textures/s, failed {r['failed']}, "
                            f"client encode {r['encode_ms']:.2f} ms/texture"
                        )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    single = out[("compact", 1, 1)]["p50_ms"]
    tensor = out[("tensor", 1, 1)]["p50_ms"]
    failed = sum(r["failed"] for r in out.values())
    verdict = "PASS" if single <= 50 and failed == 0 else "FAIL"
    print(
        f"single-texture p50 {single:.1f} ms with the compact encoding (target <= 50 ms): "
        f"{verdict}; {tensor:.1f} ms with JSON nested lists"
    )
    print(
        f"p50_single_ms={single:.2f} p95_single_ms={out[('compact', 1, 1)]['p95_ms']:.2f} "
        f"p50_single_parquet_ms={out[('parquet', 1, 1)]['p50_ms']:.2f} "
        f"p50_single_tensor_ms={tensor:.2f} "
        f"single_4clients_per_s={out[('compact', 1, 4)]['textures_per_s']:.1f} "
        f"batch64_per_s={out[('compact', 64, 1)]['textures_per_s']:.1f} "
        f"batch64_parquet_per_s={out[('parquet', 64, 1)]['textures_per_s']:.1f} "
        f"batch64_tensor_per_s={out[('tensor', 64, 1)]['textures_per_s']:.1f} "
        f"failed={failed}"
    )


if __name__ == "__main__":
    main()
