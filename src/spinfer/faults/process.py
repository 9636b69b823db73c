"""Process tools of the fault lab: free ports, a served model, process trees, one-line errors.

``start_server`` (and ``served``, its context form) starts ``mlflow models serve`` on
127.0.0.1 and waits for its /ping: the one server starter that the fault scenarios,
tests/serve and benchmarks/serve_load.py share.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the running interpreter's bin folder first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, **extra, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def start_server(
    model_uri: str, env: dict[str, str], port: int | None = None, timeout: float = 180.0
) -> tuple[subprocess.Popen, int]:
    """Start ``mlflow models serve`` for ``model_uri`` (one worker, local env manager) in a
    session of its own and wait for /ping; returns (process, port). Raises RuntimeError with
    the server's last words if it exits or does not answer within ``timeout`` seconds."""
    port = port or free_port()
    mlflow_bin = shutil.which("mlflow", path=env.get("PATH")) or "mlflow"
    proc = subprocess.Popen(
        [mlflow_bin, "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2),
        ):
            return proc, port
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"server did not answer /ping within {timeout:.0f} s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
    """Signal a process's whole session and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(Exception):
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def served(model_uri: str, env: dict[str, str], timeout: float = 180.0) -> Iterator[int]:
    """``start_server`` as a context: yields the port, stops the server (SIGTERM) at exit."""
    proc, port = start_server(model_uri, env, timeout=timeout)
    try:
        yield port
    finally:
        stop(proc, signal.SIGTERM)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(proc: subprocess.CompletedProcess, needle: str) -> tuple[bool, str]:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    ok = proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:")
    ok = ok and needle in lines[0]
    return ok, f"exit {proc.returncode}: {lines[-1] if lines else '(no message)'}"[:160]


def _ppid(entry: Path) -> int:
    """Parent pid of the process behind /proc/<pid> (raises OSError if it is gone)."""
    return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])


def parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[int(entry.name)] = _ppid(entry)
    return out


def descendants(pid: int) -> list[int]:
    tree = parents()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, pp in tree.items() if pp == current]
        found += children
        frontier += children
    return found


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)


def worker_pids(parent: int) -> list[int]:
    """Dask worker processes of a LocalCluster: spawned children of ``parent``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = _ppid(entry)
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if ppid == parent and "multiprocessing.spawn" in cmdline:
                out.append(int(entry.name))
    return sorted(out)


def post(port: int, body: bytes, ctype: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": ctype}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
