"""The fault scenarios: each injects a fault or sends bad input into the real components and
returns an ``Outcome``; ``run_scenarios`` runs them in one lab, ``scoreboard`` prints them."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from spinfer.faults.lab import Lab, Outcome
from spinfer.faults.process import (
    descendants,
    one_line_error,
    post,
    sha,
    wait_gone,
    worker_pids,
)


def store_flipped_byte(lab: Lab) -> Outcome:
    paths = lab.data()
    copy = lab.root / "flipped.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(paths["textures"], copy)
    shard = sorted(p for p in (copy / "spins" / "c").rglob("*") if p.is_file())[-1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = lab.cli("data", "verify", str(copy))
    name = str(shard.relative_to(copy))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""  # further problems are listed above the error line
    ok = proc.returncode == 1 and last.startswith("error:") and name in last
    seen = f"exit {proc.returncode}: {last}"[:160]
    intact = lab.cli("data", "verify", str(paths["textures"])).returncode == 0
    return Outcome(
        "flipped byte in a shard",
        f"verify names {name}, exit 1",
        seen,
        ok and intact,
        lost_data=not intact,
    )


def store_missing_or_truncated(lab: Lab) -> Outcome:
    paths = lab.data()
    missing = lab.cli("data", "verify", str(lab.root / "nowhere.zarr"))
    ok1, seen1 = one_line_error(missing, "nowhere.zarr")
    copy = lab.root / "truncated.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(paths["textures"], copy)
    shard = sorted(p for p in (copy / "spins" / "c").rglob("*") if p.is_file())[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    truncated = lab.cli("data", "verify", str(copy))
    name = str(shard.relative_to(copy))
    ok2 = truncated.returncode == 1 and name in truncated.stderr
    return Outcome(
        "missing / truncated store",
        "verify names the path, exit 1",
        f"{seen1} | truncated: exit {truncated.returncode}",
        ok1 and ok2,
    )


# big enough that shards take seconds (so a fault lands mid-run), small enough for CI
SLOW_GEN = ("--set", "schedule.sweeps=1500", "--set", "physics.size=48")


def _generate_args(lab: Lab, out: Path, workers: int) -> list[str]:
    return [
        "data",
        "generate",
        "--params",
        str(lab.params_path),
        "--out",
        str(out),
        "--workers",
        str(workers),
        *SLOW_GEN,
    ]


def _reference_store(lab: Lab) -> Path:
    """The uninterrupted run the faulted ones must equal bit for bit (made once)."""
    reference = lab.art / "reference.zarr"
    if not (reference / "manifest.sha256").is_file():
        proc = lab.cli(*_generate_args(lab, reference, 2))
        if proc.returncode != 0:
            raise RuntimeError(f"reference generation failed: {proc.stderr[-300:]}")
    return reference


def _manifest_equal(a: Path, b: Path) -> bool:
    """Bit-identical data: every file's sha256 (the manifest) is the same, except the root
    zarr.json, whose attributes record the provenance (git commit) of the run."""

    def lines(store: Path) -> list[str]:
        text = (store / "manifest.sha256").read_text().splitlines()
        return [line for line in text if not line.endswith("  zarr.json")]

    fa, fb = a / "manifest.sha256", b / "manifest.sha256"
    return fa.is_file() and fb.is_file() and lines(a) == lines(b)


def generation_sigint_rerun(lab: Lab) -> Outcome:
    """SIGINT the whole generation mid-run, rerun: bit-identical store, no partial files."""
    reference = _reference_store(lab)
    out = lab.art / "interrupted.zarr"
    shutil.rmtree(out, ignore_errors=True)
    proc = lab.spawn([sys.executable, "-m", "spinfer.cli", *_generate_args(lab, out, 2)])
    partial = lab.art / ".partial"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(partial.glob("interrupted.zarr-*/done/shard-*.json")):
            break  # one shard written, the others mid-way
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=120)
    rerun = lab.cli(*_generate_args(lab, out, 1))
    same = _manifest_equal(out, reference)
    leftovers = list(partial.glob("interrupted.zarr-*")) if partial.exists() else []
    ok = code != 0 and rerun.returncode == 0 and same and not leftovers
    return Outcome(
        "SIGINT generation, rerun",
        "completes, bit-identical, no partial files",
        f"interrupted exit {code}; rerun exit {rerun.returncode}; identical={same}; "
        f"partial dirs left={len(leftovers)}",
        ok,
        lost_data=not same,
    )


def generation_worker_killed(lab: Lab) -> Outcome:
    """SIGKILL one Dask worker mid-shard: its nanny restarts it and the task reruns."""
    reference = _reference_store(lab)
    out = lab.art / "workerkill.zarr"
    shutil.rmtree(out, ignore_errors=True)
    proc = lab.spawn([sys.executable, "-m", "spinfer.cli", *_generate_args(lab, out, 2)])
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        workers = worker_pids(proc.pid)
        if len(workers) == 2:
            time.sleep(5.0)  # the cluster is up and the shards are being annealed
            killed = workers[0]
            with contextlib.suppress(ProcessLookupError):
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    code = proc.wait(timeout=600)
    same = code == 0 and _manifest_equal(out, reference)
    return Outcome(
        "SIGKILL a Dask worker mid-shard",
        "run completes, bit-identical",
        f"killed worker pid {killed}; exit {code}; identical={same}",
        killed is not None and same,
        lost_data=code == 0 and not same,
    )


def serve_bad_requests(lab: Lab) -> Outcome:
    port = lab.server()
    size = lab.params().physics.size
    good = np.zeros((1, size, size, 3), np.float32)
    good[..., 2] = 1.0
    nan = good.copy()
    nan[0, 3, 4, 0] = np.nan
    zero = good.copy()
    zero[0, 1, 1] = 0.0
    cases = {
        "malformed JSON": (b'{"inputs": [[[', "application/json"),
        "wrong content type": (json.dumps({"inputs": good.tolist()}).encode(), "text/xml"),
        "wrong shape": (json.dumps({"inputs": good[..., :2].tolist()}).encode(), None),
        "NaN": (
            json.dumps({"inputs": np.where(np.isnan(nan), None, nan).tolist()})
            .encode()
            .replace(b"null", b"NaN"),
            None,
        ),
        "zero-length vectors": (json.dumps({"inputs": zero.tolist()}).encode(), None),
        "strings": (json.dumps({"inputs": [["a"]]}).encode(), None),
        "oversized batch": (
            json.dumps({"inputs": np.repeat(good, 513, 0).tolist()}).encode(),
            None,
        ),
    }
    failures = []
    for name, (body, ctype) in cases.items():
        status, text = post(port, body, ctype or "application/json")
        short = len(text) < 2000 and "0.0, 0.0, 1.0" not in text
        named = name not in ("NaN", "zero-length vectors") or "image 0" in text
        if not (400 <= status < 500 and short and named):
            failures.append(f"{name}: {status} ({len(text)} chars, names sample: {named})")
        status, _ = post(port, json.dumps({"inputs": good.tolist()}).encode())
        if status != 200:
            failures.append(f"good request after {name}: {status}")
    return Outcome(
        "bad requests to /invocations",
        "4xx short message (naming the bad image); next good request 200",
        "; ".join(failures) or f"{len(cases)} bad requests refused, server up",
        not failures,
    )


def _train_args(lab: Lab, model: str, data: str, out: str, *extra: str) -> list[str]:
    """``spinfer train`` of one run into ``artifacts/<out>``, without evaluation."""
    return [
        "train", "--params", str(lab.params_path), "--model", model, "--data", data,
        "--no-evaluate", "--set", f"train.out=artifacts/{out}", *extra,
    ]  # fmt: skip


def train_nan_loss(lab: Lab) -> Outcome:
    """A checkpoint whose weights went NaN: the resumed run fails, best.pt is intact."""
    import torch

    lab.data()
    args = _train_args(lab, "cnn", "clean", "nan_models")
    first = lab.cli(*args, "--set", "train.epochs={cnn: 1}")
    run_dir = lab.art / "nan_models" / "cnn-clean"
    best = run_dir / "best.pt"
    if first.returncode != 0 or not best.is_file():
        return Outcome(
            "training loss becomes NaN",
            "run failed, best.pt intact",
            f"setup failed: {first.stderr[-200:]}",
            False,
        )
    before = sha(best)
    ckpt = torch.load(run_dir / "last.pt", weights_only=False)
    for value in ckpt["model"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(ckpt, run_dir / "last.pt")
    second = lab.cli(*args, "--set", "train.epochs={cnn: 3}")
    ok, seen = one_line_error(second, "loss is nan")
    intact = best.is_file() and sha(best) == before
    import mlflow

    client = mlflow.MlflowClient(lab.store)
    run_id = ckpt["state"]["run_id"]
    status = client.get_run(run_id).info.status if run_id else "?"
    return Outcome(
        "training loss becomes NaN",
        "one-line error, run FAILED, best.pt intact",
        f"{seen}; mlflow {status}; best intact={intact}",
        ok and intact and status == "FAILED",
        lost_data=not intact,
    )


def train_disk_full(lab: Lab) -> Outcome:
    """Checkpoint writes fail (file size limit): previous checkpoints intact, clear error."""
    lab.data()
    # a resnet18 checkpoint (45 MB) is far above the limit, the tracking store not
    args = _train_args(lab, "resnet18", "clean", "full_models")
    first = lab.cli(*args, "--set", "train.epochs={resnet18: 1}")
    run_dir = lab.art / "full_models" / "resnet18-clean"
    if first.returncode != 0:
        return Outcome(
            "disk full while checkpointing",
            "clear error, checkpoints intact",
            f"setup failed: {first.stderr[-200:]}",
            False,
        )
    before = {p.name: sha(p) for p in run_dir.glob("*.pt")}
    limit = 16 * 2**20  # bytes: below a checkpoint, above the MLflow store (about 1 MB)

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    second = lab.cli(*args, "--set", "train.epochs={resnet18: 3}", preexec_fn=cap)
    ok, seen = one_line_error(second, "cannot write")
    after = {p.name: sha(p) for p in run_dir.glob("*.pt")}
    stray = [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    import sqlite3

    db = sqlite3.connect(lab.root / "mlruns" / "mlflow.db")
    try:
        db_ok = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    intact = after == before and not stray and db_ok
    return Outcome(
        "disk full while checkpointing",
        "one-line error; checkpoints intact",
        f"{seen}; checkpoints and MLflow db intact={intact}; stray={stray}",
        ok and intact,
        lost_data=after != before,
    )


def mlflow_four_writers(lab: Lab) -> Outcome:
    """Four processes log runs and metrics to one SQLite store at once."""
    from spinfer.tracking import setup_tracking

    params = lab.params()
    setup_tracking(params, lab.root)
    uri = lab.store
    code = (
        "import mlflow, sys\n"
        f"mlflow.set_tracking_uri({uri!r})\n"
        f"exp = mlflow.get_experiment_by_name({params.tracking.experiment!r}).experiment_id\n"
        "with mlflow.start_run(experiment_id=exp, run_name='writer-' + sys.argv[1]):\n"
        "    mlflow.set_tag('kind', 'fault-writer')\n"
        "    for i in range(40):\n"
        "        mlflow.log_metric('x', i, step=i)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)], env=lab.env(), stderr=subprocess.PIPE
        )
        for i in range(4)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(params.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'fault-writer'")
    points = sum(len(client.get_metric_history(r.info.run_id, "x")) for r in runs)
    ok = codes == [0] * 4 and len(runs) == 4 and points == 160
    return Outcome(
        "4 processes logging to one SQLite store",
        "4 runs, 160 metric points",
        f"exit codes {codes}; {len(runs)} runs; {points} points",
        ok,
        lost_data=points < 160,
    )


def promote_broken_version(lab: Lab) -> Outcome:
    """A challenger whose model cannot load is not promoted; @champion stays."""
    import mlflow

    from spinfer.serve.pyfunc import log_pyfunc_model
    from spinfer.serve.registry import promote
    from spinfer.tracking import setup_tracking

    lab.champion()
    params = lab.params()
    experiment = setup_tracking(params, lab.root)
    client = mlflow.MlflowClient(lab.store)
    name = params.tracking.registered_model
    before = client.get_model_version_by_alias(name, "champion").version
    checkpoint = lab.art / "models" / "cnn-noisy" / "best.pt"
    with mlflow.start_run(experiment_id=experiment, run_name="broken") as run:
        mlflow.set_tag("kind", "fault-broken")
        log_pyfunc_model(checkpoint)
    model_uri = f"runs:/{run.info.run_id}/model"
    version = mlflow.register_model(model_uri, name).version
    stored = _artifact_dir(client, name, version)
    corrupted = 0
    for ckpt in stored.rglob("best.pt"):
        ckpt.write_bytes(b"corrupted")  # the stored model can no longer load
        corrupted += 1
    if not corrupted:
        raise RuntimeError(f"no checkpoint found under {stored}")
    client.set_registered_model_alias(name, "challenger", version)
    try:
        decision = promote(params, lab.root)
        seen = f"{decision.decision}: {decision.reason}"[:160]
        refused = decision.decision != "promoted"
    except Exception as exc:  # a refusal may also be an error naming the problem
        seen, refused = f"error: {exc}"[:160], True
    after = client.get_model_version_by_alias(name, "champion").version
    return Outcome(
        "promote a version that cannot load",
        "refused; @champion unchanged",
        f"{seen}; champion {before} -> {after}",
        refused and after == before,
    )


def _artifact_dir(client, name: str, version: str) -> Path:
    source = client.get_model_version(name, version).source
    from mlflow.artifacts import download_artifacts  # noqa: F401  (resolves models:/ URIs)

    if source.startswith("models:/"):
        model_id = source.split("/", 1)[1]
        import mlflow

        info = mlflow.get_logged_model(model_id)
        source = info.artifact_location
    return Path(source.removeprefix("file://"))


def config_errors(lab: Lab) -> Outcome:
    cases = [
        (["--set", "dataset.sets=-1"], "dataset.sets"),
        (["--set", "train.batch_size=big"], "train.batch_size"),
        (["--set", "nosuch.key=1"], "nosuch"),
        (["--set", "profile=huge"], "unknown profile 'huge'"),
    ]
    bad = []
    for extra, needle in cases:
        ok, seen = one_line_error(
            lab.cli("data", "generate", "--params", str(lab.params_path), *extra), needle
        )
        if not ok:
            bad.append(seen)
    return Outcome(
        "invalid params key, type or profile",
        "one-line error naming the key",
        "; ".join(bad) or f"{len(cases)} refused by name",
        not bad,
    )


def no_network(lab: Lab) -> Outcome:
    """Without any network (a fresh network namespace): no hang at import, run or exit."""
    if shutil.which("unshare") is None:
        return Outcome("no network at all", "no hang", "skipped: no unshare", True)
    lab.data()
    commands = [
        ["spinfer", "--help"],
        ["spinfer", "data", "verify", str(lab.art / "textures.zarr")],
        [
            "spinfer",
            "data",
            "report",
            "--params",
            str(lab.params_path),
            "--splits",
            str(lab.art / "splits.json"),
            "--out",
            str(lab.root / "offline_report"),
            "--metrics",
            str(lab.root / "offline.json"),
        ],
        ["dvc", "version"],
    ]
    bindir = Path(sys.executable).parent
    slow = []
    for cmd in commands:
        exe = [str(bindir / cmd[0]), *cmd[1:]]
        start = time.monotonic()
        try:
            proc = subprocess.run(
                ["unshare", "-rn", *exe],
                capture_output=True,
                timeout=120,
                env=lab.env(),
                cwd=lab.root,
            )
            seconds = time.monotonic() - start
            if proc.returncode != 0 or seconds > 60:
                slow.append(f"{cmd[0]} {cmd[1]}: exit {proc.returncode} in {seconds:.0f} s")
        except subprocess.TimeoutExpired:
            slow.append(f"{cmd[0]} {cmd[1]}: hung (> 120 s)")
    return Outcome(
        "no network at all",
        "no hang at import, run or exit",
        "; ".join(slow) or f"{len(commands)} commands ran offline",
        not slow,
    )


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def _kill_and_resume(lab: Lab, launcher: tuple[str, ...], tag: str) -> Outcome:
    """SIGKILL a training launch once its first checkpoint exists, relaunch it: it resumes
    from last.pt and ends where an uninterrupted launch ends (CPU is deterministic)."""
    import torch

    lab.data()
    env = {**lab.env(), "OMP_NUM_THREADS": "1"}
    # enough epochs that the kill, sent once the first last.pt exists, lands mid-run even
    # when tiny epochs take milliseconds (with 4, a fast run could finish before it)
    epochs = 20

    def cmd(out: str) -> list[str]:
        return [
            sys.executable,
            *launcher,
            "-m",
            "spinfer.cli",
            *_train_args(
                lab, "cnn", "noisy", f"{tag}_{out}", "--set", f"train.epochs={{cnn: {epochs}}}"
            ),
        ]

    def run(out: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd(out), capture_output=True, text=True, timeout=600, env=env, cwd=lab.root
        )

    for out in ("whole", "killed"):  # a rerun of the scenario starts from nothing
        shutil.rmtree(lab.art / f"{tag}_{out}", ignore_errors=True)
    whole = run("whole")
    proc = subprocess.Popen(
        cmd("killed"),
        env=env,
        cwd=lab.root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lab._procs.append(proc)
    last = lab.art / f"{tag}_killed" / "cnn-noisy" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = [proc.pid, *descendants(proc.pid)]  # torchrun's ranks may sit in
    for pid in victims:  # their own process groups: kill every process of the job
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    wait_gone(victims)
    done = torch.load(last, weights_only=False)["state"]["epoch"] if last.is_file() else None
    again = run("killed")
    a = torch.load(lab.art / f"{tag}_whole/cnn-noisy/last.pt", weights_only=False)["state"]
    b = torch.load(last, weights_only=False)["state"]
    same = [h["val_mse"] for h in a["history"]] == [h["val_mse"] for h in b["history"]]
    import re

    at = re.search(r"\(resumed at (\d+)\)", again.stderr + again.stdout)
    resumed = at is not None and 1 <= int(at.group(1)) < epochs  # ranks may finish more
    ok = whole.returncode == 0 and again.returncode == 0 and done is not None and done < epochs
    ok = ok and resumed and same
    return Outcome(
        f"SIGKILL training ({tag}), relaunch",
        "resumes from last.pt; final metrics equal an uninterrupted run",
        f"killed after epoch {done}; relaunch exit {again.returncode}, "
        f"resumed={resumed}; val losses identical={same}",
        ok,
        lost_data=not same,
    )


def train_sigkill_resume(lab: Lab) -> Outcome:
    return _kill_and_resume(lab, (), "single")


def train_sigkill_resume_torchrun(lab: Lab) -> Outcome:
    return _kill_and_resume(lab, TORCHRUN, "torchrun")


# a search space small enough for the tiny profile (both study scenarios)
SMALL_STUDY = ("--set", "tune.models=[cnn]", "--set", "tune.batch_size=[8]",
               "--set", "tune.cnn_width=[4, 8]", "--set", "tune.cnn_depth=[1, 2]")  # fmt: skip


def study_two_workers(lab: Lab) -> Outcome:
    """Two processes on one study at once: every trial and MLflow run recorded, one parent."""
    import mlflow
    import optuna

    from spinfer.tune import open_storage

    lab.data()
    small = [*SMALL_STUDY, "--set", "tune.epochs=2"]
    cmd = [
        sys.executable,
        "-m",
        "spinfer.cli",
        "train",
        "tune",
        "--params",
        str(lab.params_path),
        "--study",
        "pair",
        "--trials",
        "2",
        *small,
    ]
    procs = [
        subprocess.Popen(
            cmd, env=lab.env(), cwd=lab.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    params = lab.params()
    study = optuna.load_study(study_name="pair", storage=open_storage(params.tune, lab.root))
    states = sorted(t.state.name for t in study.trials)
    client = mlflow.MlflowClient(lab.store)
    exp = client.get_experiment_by_name(params.tune.experiment)
    query = "tags.`optuna.study` = 'pair'"
    parents = client.search_runs([exp.experiment_id], f"{query} and tags.kind = 'study'")
    trials = client.search_runs([exp.experiment_id], f"{query} and tags.kind = 'trial'")
    ok = codes == [0, 0] and len(states) == 4 and set(states) <= {"COMPLETE", "PRUNED"}
    ok = ok and len(parents) == 1 and len(trials) == 4
    return Outcome(
        "two workers on one Optuna study",
        "4 trials, 4 nested runs, 1 parent",
        f"exit {codes}; trials {states}; {len(parents)} parent, {len(trials)} runs",
        ok,
        lost_data=len(trials) < 4,
    )


def study_worker_killed(lab: Lab) -> Outcome:
    """SIGKILL an Optuna worker mid-trial, rerun: the orphan is failed (its MLflow run says
    why), the study goes on."""
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from spinfer.tune import open_storage

    lab.data()
    small = list(SMALL_STUDY)
    cmd = ["train", "tune", "--params", str(lab.params_path), "--study", "doctor", *small]
    proc = lab.spawn(
        [sys.executable, "-m", "spinfer.cli", *cmd, "--trials", "3", "--set", "tune.epochs=400"]
    )
    params = lab.params()
    deadline = time.monotonic() + 300
    running = []
    while not running and proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(KeyError):
            study = optuna.load_study(
                study_name="doctor", storage=open_storage(params.tune, lab.root)
            )
            running = [
                t
                for t in study.get_trials(states=(TrialState.RUNNING,))
                if "mlflow_run_id" in t.user_attrs
            ]
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    again = lab.cli(*cmd, "--trials", "1", "--set", "tune.epochs=1")
    study = optuna.load_study(study_name="doctor", storage=open_storage(params.tune, lab.root))
    states = [t.state.name for t in study.trials]
    orphan = ""
    if running:
        client = mlflow.MlflowClient(lab.store)
        orphan = client.get_run(running[0].user_attrs["mlflow_run_id"]).data.tags.get(
            "failure", ""
        )
    ok = bool(running) and again.returncode == 0 and states[:1] == ["FAIL"]
    ok = ok and "orphaned" in orphan and states[-1] in ("COMPLETE", "PRUNED")
    return Outcome(
        "SIGKILL an Optuna worker, rerun",
        "orphan marked failed; study goes on",
        f"trial states {states}; rerun exit {again.returncode}",
        ok,
    )


def train_bad_texture(lab: Lab) -> Outcome:
    """A texture with NaN and zero-length vectors in the training data: refused by name."""
    import zarr

    paths = lab.data()
    bad = lab.art / "bad_noisy.zarr"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(paths["noisy"], bad)
    spins = zarr.open_array(bad / "train" / "spins", mode="r+")
    row = spins[3]
    row[0, 0] = np.nan
    row[1, 1] = 0.0
    spins[3] = row  # through zarr: checksums stay valid, only the values are wrong
    proc = lab.cli(
        *_train_args(
            lab, "cnn", "noisy", "bad_models", "--set", "noise.out=artifacts/bad_noisy.zarr"
        )
    )
    ok, seen = one_line_error(proc, "texture 3 holds NaN")
    return Outcome("NaN / zero vectors in training data", "refused naming the texture", seen, ok)


Scenario = Callable[[Lab], Outcome]
SCENARIOS: dict[str, Scenario] = {  # every one runs in under about a minute
    "store_flipped_byte": store_flipped_byte,
    "store_missing_or_truncated": store_missing_or_truncated,
    "config_errors": config_errors,
    "mlflow_four_writers": mlflow_four_writers,
    "train_bad_texture": train_bad_texture,
    "train_nan_loss": train_nan_loss,
    "train_disk_full": train_disk_full,
    "serve_bad_requests": serve_bad_requests,
    "promote_broken_version": promote_broken_version,
    "no_network": no_network,
    "generation_sigint_rerun": generation_sigint_rerun,
    "generation_worker_killed": generation_worker_killed,
    "train_sigkill_resume": train_sigkill_resume,
    "train_sigkill_resume_torchrun": train_sigkill_resume_torchrun,
    "study_worker_killed": study_worker_killed,
    "study_two_workers": study_two_workers,
}


def run_scenarios(root: Path, names: list[str] | None = None) -> Iterator[Outcome]:
    """Run the chosen scenarios (default: all of them)."""
    chosen = names or list(SCENARIOS)
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        from spinfer.errors import InputError

        raise InputError(f"unknown scenario '{unknown[0]}' (known: {', '.join(SCENARIOS)})")
    lab = Lab(Path(root))
    try:
        for name in chosen:
            func = SCENARIOS[name]
            try:
                yield func(lab)
            except Exception as exc:  # a scenario that crashes is a failed scenario
                yield Outcome(
                    name, "(scenario ran)", f"crashed: {type(exc).__name__}: {exc}"[:200], False
                )
    finally:
        lab.close()


def scoreboard(outcomes: list[Outcome]) -> str:
    rows = [f"{'scenario':38} {'result':6}  expected / observed"]
    for o in outcomes:
        rows.append(f"{o.scenario[:38]:38} {'pass' if o.passed else 'FAIL':6}  {o.expected}")
        rows.append(f"{'':38} {'':6}  -> {o.observed}")
    passed = sum(o.passed for o in outcomes)
    lost = sum(o.lost_data for o in outcomes)
    rows.append(f"tried={len(outcomes)} passed={passed} lost_data={lost}")
    return "\n".join(rows)
