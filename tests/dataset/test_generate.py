"""Dataset generation on a real Dask LocalCluster: determinism, resume after SIGKILL, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import spinfer
from spinfer.data.generate import (
    DIAGNOSTICS,
    ENGINE_SOURCES,
    SIMULATION_SOURCES,
    generate,
    plan_dataset,
    simulation_source_hash,
    store_engine,
    work_dir,
)
from spinfer.data.store import MANIFEST, open_store, store_meta
from spinfer.errors import SpinferError
from spinfer.physics.anneal import anneal
from spinfer.physics.energy import Hamiltonian
from tests.conftest import ROOT, tiny_params

# slow enough (about 0.1-0.3 s per texture) that a kill lands between shards
KILL_SETTINGS = (
    "physics.size=32",
    "schedule.sweeps=800",
    "dataset.sets=4",
    "dataset.per_set=4",
    "dataset.split=[2, 1, 1]",
    "dataset.shard_textures=2",
)


def test_plan_is_set_major_with_distinct_seeds():
    params = tiny_params()
    plan = plan_dataset(params)
    ds = params.dataset
    assert plan.n == ds.sets * ds.per_set
    np.testing.assert_array_equal(plan.set_id, np.repeat(np.arange(ds.sets), ds.per_set))
    np.testing.assert_array_equal(plan.replica, np.tile(np.arange(ds.per_set), ds.sets))
    assert len(np.unique(plan.seed)) == plan.n
    assert len(np.unique(plan.grid_index)) == ds.sets
    # every row of a set has the same (lambda, K, D)
    by_set = plan.params.reshape(ds.sets, ds.per_set, 3)
    np.testing.assert_array_equal(by_set, np.repeat(by_set[:, :1], ds.per_set, axis=1))
    assert plan.shards[0] == (0, ds.shard_textures) and plan.shards[-1][1] == plan.n


def test_plan_seeds_do_not_depend_on_how_many_sets_are_drawn():
    small = plan_dataset(tiny_params("dataset.sets=3"))
    large = plan_dataset(tiny_params("dataset.sets=6"))
    rows = zip(large.grid_index, large.replica, large.seed, strict=True)
    by_key = {(g, r): s for g, r, s in rows}
    for g, r, s in zip(small.grid_index, small.replica, small.seed, strict=True):
        if (g, r) in by_key:
            assert by_key[(g, r)] == s


def test_store_records_how_it_was_made(tiny_data):
    group = open_store(tiny_data["textures"])
    meta = store_meta(group)
    params = tiny_params()
    assert meta["complete"] and meta["kind"] == "textures"
    assert "lambda" in meta["convention"] and "periodic" in meta["convention"]
    assert meta["spinfer_version"] == spinfer.__version__
    assert meta["simulation_source"] == simulation_source_hash()
    assert "git_commit" not in meta  # a commit elsewhere must not change the store's bytes
    assert meta["schedule"]["sweeps"] == params.schedule.sweeps
    assert meta["ranges"]["dipolar"] == list(params.ranges.dipolar)
    assert meta["kshape_factor"] == pytest.approx(6.775, abs=0.01)
    assert meta["targets"]["names"] == ["lambda", "K", "D"]
    n = params.dataset.sets * params.dataset.per_set
    assert group["spins"].shape == (n, 16, 16, 3) and group["spins"].dtype == np.float32
    for name in ("params", "set_id", "grid_index", "replica", "seed", *DIAGNOSTICS):
        assert group[name].shape[0] == n
    # every texture was minimised: below the torque threshold or after all its steps
    steps, torque = group["minimize_steps"][:], group["max_torque"][:]
    assert (
        (torque < params.schedule.minimize_torque) | (steps == params.schedule.minimize_steps)
    ).all()
    assert (steps > 0).all()
    assert (Path(tiny_data["textures"]) / MANIFEST).is_file()


def test_stored_seed_reproduces_the_stored_texture(tiny_data):
    group = open_store(tiny_data["textures"])
    params = tiny_params()
    i = 7
    lam, k, d = group["params"][i]
    result = anneal(
        Hamiltonian(dmi=lam, anisotropy=k, dipolar=d),
        (16, 16),
        params.schedule,
        int(group["seed"][i]),
    )
    np.testing.assert_array_equal(group["spins"][i], result.spins.astype(np.float32))


def test_store_records_each_textures_protocol(tiny_data):
    from spinfer.physics.anneal import COOLING_LAWS, RELAX_METHODS

    group = open_store(tiny_data["textures"])
    schedule = tiny_params().schedule
    assert schedule.randomize
    drawn = [schedule.draw(int(seed)) for seed in group["seed"][:]]
    np.testing.assert_array_equal(group["protocol_sweeps"][:], [d.sweeps for d in drawn])
    np.testing.assert_array_equal(group["protocol_t_start"][:], [d.t_start for d in drawn])
    cooling = [COOLING_LAWS[c] for c in group["protocol_cooling"][:]]
    assert cooling == [d.cooling for d in drawn]
    relax = [RELAX_METHODS[c] if c >= 0 else None for c in group["protocol_relax"][:]]
    assert relax == [d.relax if d.relax_sweeps and not d.instant else None for d in drawn]
    assert len(set(cooling)) > 1  # the draw varies across textures
    meta = dict(group.attrs)["spinfer"]["protocol"]
    assert meta["randomize"] and meta["cooling_codes"] == list(COOLING_LAWS)


def test_bit_identical_for_one_and_two_workers(tmp_path, tiny_data):
    one = generate(tiny_params(), tmp_path / "one.zarr", workers=1, progress=False)
    assert one.computed == one.textures and one.resumed == 0
    # tiny_data was made with 2 workers
    a = (Path(tiny_data["textures"]) / MANIFEST).read_text()
    b = (tmp_path / "one.zarr" / MANIFEST).read_text()
    assert a == b


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "spinfer.cli", *args]


def _generate_cmd(out: Path, workers: int) -> list[str]:
    sets = [x for s in ("profile=tiny", *KILL_SETTINGS) for x in ("--set", s)]
    return _cli(
        "data", "generate", "--params", str(ROOT / "params.yaml"), *sets,
        "--out", str(out), "--workers", str(workers),
    )  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_completes_only_what_is_missing(tmp_path):
    params = tiny_params(*KILL_SETTINGS)
    n_shards = len(plan_dataset(params).shards)
    out = tmp_path / "killed" / "textures.zarr"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        _generate_cmd(out, workers=1),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    done = work_dir(out, _fingerprint(params)) / "done"
    deadline = time.monotonic() + 240
    while not list(done.glob("shard-*.json")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, the scheduler and the Dask workers
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in done.glob("shard-*.json")}
    assert 0 < len(finished) < n_shards, finished
    assert not out.exists(), "a killed run must not leave a store that looks complete"

    rerun = subprocess.run(_generate_cmd(out, 1), capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stderr
    computed = int(rerun.stderr.split("(")[1].split(" computed")[0])
    assert computed < params.dataset.sets * params.dataset.per_set
    assert not done.exists()  # work area cleaned up after success

    reference = generate(params, tmp_path / "ref" / "textures.zarr", workers=2, progress=False)
    assert reference.resumed == 0
    assert (out / MANIFEST).read_text() == (reference.path / MANIFEST).read_text()
    np.testing.assert_array_equal(
        zarr.open_array(out / "spins")[:], zarr.open_array(reference.path / "spins")[:]
    )


def _fingerprint(params):
    from spinfer.data.generate import fingerprint

    return fingerprint(params)


def test_a_failing_task_leaves_no_complete_store(tmp_path):
    # K = 100 Kshape is outside what the Hamiltonian accepts: every task raises on the worker
    params = tiny_params("ranges.anisotropy_over_kshape=[100, 100]", "dataset.sets=1")
    out = tmp_path / "textures.zarr"
    with pytest.raises(SpinferError, match="anisotropy"):
        generate(params, out, workers=1, progress=False)
    assert not out.exists()


UNREACHABLE = (
    "data", "generate", "--params", str(ROOT / "params.yaml"), "--set", "profile=tiny",
    "--scheduler", "tcp://127.0.0.1:9",
)  # fmt: skip


def test_unreachable_scheduler_is_one_line_error(tmp_path):
    run = subprocess.run(
        _cli(*UNREACHABLE, "--out", str(tmp_path / "t.zarr")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert "Traceback" not in run.stderr


def test_simulation_sources_are_all_that_generation_imports():
    """The fingerprint and the store's provenance hash SIMULATION_SOURCES only: generation
    must not import another physics module (a fresh interpreter lists what it loads)."""
    code = (
        "import sys, spinfer.data.generate\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('spinfer.physics'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {
        m.removeprefix("spinfer.physics").lstrip(".") or "__init__" for m in out.stdout.split()
    }
    assert {f"{m}.py" for m in loaded} <= set(SIMULATION_SOURCES)
    assert "anneal.py" in SIMULATION_SOURCES and "inverse.py" not in SIMULATION_SOURCES


def test_dvc_generate_stage_depends_on_the_simulation_sources():
    import yaml

    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["generate"]["deps"]
    physics = {Path(d).name for d in deps if d.startswith("src/spinfer/physics")}
    engines = {name for names in ENGINE_SOURCES.values() for name in names}
    assert physics == set(SIMULATION_SOURCES) | engines


def test_torch_engine_store_records_its_engine_and_is_the_same_for_any_workers(tmp_path):
    """The torch engine anneals each shard as batches; its store says so, hashes its source
    too, reproduces from its seeds, and does not depend on the number of workers."""
    from spinfer.physics.torch_engine import anneal_batch

    params = tiny_params("dataset.engine=torch", "dataset.device=cpu", "dataset.batch=4")
    one = generate(params, tmp_path / "one.zarr", workers=1, progress=False)
    generate(params, tmp_path / "two.zarr", workers=2, progress=False)
    assert one.warnings == ()  # nothing to warn of on the CPU
    manifests = [(tmp_path / f"{n}.zarr" / MANIFEST).read_text() for n in ("one", "two")]
    assert manifests[0] == manifests[1]
    group = open_store(tmp_path / "one.zarr")
    meta = store_meta(group)
    assert store_engine(meta) == "torch"
    assert meta["engine"]["device"] == "cpu" and meta["engine"]["batch"] == 4
    assert meta["simulation_source"] == simulation_source_hash("torch") != simulation_source_hash()
    i = 3
    lam, k, d = group["params"][i]
    (result,) = anneal_batch(
        [Hamiltonian(dmi=lam, anisotropy=k, dipolar=d)],
        (16, 16),
        params.schedule,
        [int(group["seed"][i])],
        device="cpu",
    )
    np.testing.assert_array_equal(group["spins"][i], result.spins.astype(np.float32))


def test_numba_stores_record_no_engine(tiny_data):
    assert store_engine(store_meta(open_store(tiny_data["textures"]))) == "numba"
    assert "engine" not in store_meta(open_store(tiny_data["textures"]))


def test_torch_engine_on_cuda_without_cuda_is_one_line_error_and_no_store(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    out = tmp_path / "t.zarr"
    cmd = _cli(
        "data", "generate", "--params", str(ROOT / "params.yaml"), "--set", "profile=tiny",
        "--set", "dataset.engine=torch", "--set", "dataset.device=cuda", "--out", str(out),
    )  # fmt: skip
    run = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: the torch engine was asked")
    assert "Traceback" not in run.stderr
    assert not tmp_path.joinpath(".partial").exists() and not out.exists()


def test_triton_kernels_where_triton_cannot_run_are_one_line_error_and_no_store(tmp_path):
    out = tmp_path / "t.zarr"
    cmd = _cli(
        "data", "generate", "--params", str(ROOT / "params.yaml"), "--set", "profile=tiny",
        "--set", "dataset.engine=torch", "--set", "dataset.device=cpu",
        "--set", "dataset.kernels=triton", "--out", str(out),
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: dataset.kernels: triton was asked for but ")
    assert not tmp_path.joinpath(".partial").exists() and not out.exists()


def test_worker_warnings_reach_the_summary():
    """Warnings raised while a shard anneals (in a Dask worker, whose own warnings go to its
    log) travel back in the shard's marker to the summary the CLI prints."""
    import warnings

    from spinfer.data.generate import _caught

    def noisy(x):
        warnings.warn("batch split to fit", stacklevel=1)
        warnings.warn("batch split to fit", stacklevel=1)
        return x + 1

    assert _caught(noisy, 1) == (2, ["batch split to fit"])
