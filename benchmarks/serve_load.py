"""Load on `mlflow models serve`: latency and throughput of the champion, 127.0.0.1 only.

Starts the server for ``models:/<registered_model>@champion`` (the tracking store of
params.yaml; run `make run` first), then for one texture per request and for batches of
64, with 1 and 4 concurrent clients, sends a bounded number of requests and reports
latency p50/p95 (ms) and textures/s, and the number of failed requests (must be 0).
Target for ResNet18 on 2 cores: p50 <= 50 ms for a single texture. Last line: key=value.

    python benchmarks/serve_load.py [--requests 40] [--model models:/spinfer@champion]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, tracking: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", model, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(proc.stderr.read().decode()[-2000:]) from None
            time.sleep(0.5)
    raise SystemExit("server did not start")


def post(port: int, body: bytes) -> tuple[bool, float]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            ok = resp.status == 200
            resp.read()
    except OSError:
        ok = False
    return ok, time.perf_counter() - t0


def scenario(port: int, batch: int, clients: int, requests: int, size: int) -> dict:
    rng = np.random.default_rng(0)
    spins = rng.normal(size=(batch, size, size, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    body = json.dumps({"inputs": spins.astype(np.float32).tolist()}).encode()
    post(port, body)  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: post(port, body), range(requests)))
    wall = time.perf_counter() - t0
    lat = np.array([r[1] for r in results]) * 1e3
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "textures_per_s": batch * requests / wall,
        "failed": sum(not r[0] for r in results),
    }


def main() -> None:
    from spinfer.config import load_params
    from spinfer.tracking import resolve_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--model", default=None)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    model = args.model or f"models:/{params.tracking.registered_model}@champion"
    tracking = resolve_uri(params.tracking.uri, Path(args.params).resolve().parent)
    port = free_port()
    proc = start(model, tracking, port)
    out = {}
    try:
        for batch in (1, 64):
            for clients in (1, 4):
                n = args.requests if batch == 1 else max(4, args.requests // 8)
                r = scenario(port, batch, clients, n, params.physics.size)
                out[(batch, clients)] = r
                print(
                    f"batch {batch:3d}, {clients} clients: p50 {r['p50_ms']:7.1f} ms, "
                    f"p95 {r['p95_ms']:7.1f} ms, {r['textures_per_s']:7.1f} textures/s, "
                    f"failed {r['failed']}"
                )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    single = out[(1, 1)]["p50_ms"]
    failed = sum(r["failed"] for r in out.values())
    verdict = "PASS" if single <= 50 else "FAIL"
    print(f"single-texture p50 {single:.1f} ms (target <= 50 ms): {verdict}")
    print(
        f"p50_single_ms={single:.2f} p95_single_ms={out[(1, 1)]['p95_ms']:.2f} "
        f"single_4clients_per_s={out[(1, 4)]['textures_per_s']:.1f} "
        f"batch64_per_s={out[(64, 1)]['textures_per_s']:.1f} "
        f"batch64_4clients_per_s={out[(64, 4)]['textures_per_s']:.1f} failed={failed}"
    )


if __name__ == "__main__":
    main()
