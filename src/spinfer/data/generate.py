"""Dataset generation: anneal every (parameter set, replica) on Dask into one Zarr store.

Determinism: texture i is a pure function of (Hamiltonian, lattice, schedule, seed_i) with
seed_i = SeedSequence([base.seed, grid index, replica]), so the store is bit-identical for
any number of workers, on a LocalCluster or a real cluster, and across interruptions. With
``schedule.randomize`` each texture's protocol (cooling length, start temperature, cooling
law, relaxation) is drawn from its own seed (``Schedule.draw``) and recorded in the store's
``protocol_*`` columns.

Resumability: work happens in ``<out parent>/.partial/<out name>-<fingerprint>/`` (outside
what ``dvc repro`` deletes). Each Dask task owns one whole shard: it anneals the shard's
textures, writes the shard file (Zarr writes it atomically, temp file + rename) and only
then a ``done/shard-NNNNN.json`` marker. A rerun skips shards with a marker; a SIGKILL
leaves at worst an unmarked shard, which is simply recomputed. When every shard is done the
diagnostics are written, the store is marked complete, hashed into its manifest, verified
and renamed into place, so an unfinished store never looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from distributed.diagnostics.plugin import WorkerPlugin
from tqdm import tqdm

import spinfer
from spinfer.config import Params, to_dict
from spinfer.data.grid import (
    draw_set_indices,
    parameter_grid,
    resolve_kshape_factor,
    target_bounds,
)
from spinfer.data.store import (
    FORMAT,
    open_store,
    sha256_file,
    shard_bounds,
    shard_file,
    small_array,
    texture_array,
    verify_store,
    write_manifest,
)
from spinfer.data.targets import TARGET_NAMES
from spinfer.errors import InputError, SpinferError
from spinfer.io import atomic_write_text, remove_if_empty, replace_dir, source_hash
from spinfer.physics.anneal import (
    COOLING_LAWS,
    PROTOCOL,
    RELAX_METHODS,
    AnnealResult,
    Schedule,
    anneal,
)
from spinfer.physics.energy import Hamiltonian, energy_terms

CONVENTION = (
    "H = -J sum_<ij> S_i.S_j - lambda sum_<ij> (z x r_ij).(S_i x S_j) + E_dip(D) "
    "- K sum_i (S_i^z)^2; J = 1; spins[texture, ix, iy, (Sx, Sy, Sz)], periodic in x and y; "
    "r_ij = r_j - r_i; E_dip = D sum_<i<j> [S_i.S_j - 3 (S_i.u)(S_j.u)] / r^3, u = r_ij/r "
    "(fully "
    "periodic lattice sum unless dipolar_images is set); params = (lambda, K, D)"
)


@dataclass(frozen=True)
class Plan:
    """What the store will hold, known before any annealing: one row per texture."""

    params: np.ndarray  # (N, 3) float64 (lambda, K, D)
    set_id: np.ndarray  # (N,) int32, 0..sets-1
    grid_index: np.ndarray  # (N,) int64, index into the full parameter grid
    replica: np.ndarray  # (N,) int32, 0..per_set-1
    seed: np.ndarray  # (N,) uint64, the texture's anneal() seed
    kshape_factor: float
    shards: list[tuple[int, int]]
    protocol: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.params)


def _relax_code(schedule: Schedule) -> int:
    """The relaxation's code in ``RELAX_METHODS``, -1 where no relaxation sweeps run."""
    if not schedule.relax_sweeps_run:
        return -1
    return RELAX_METHODS.index(schedule.relax)


def protocol_table(schedule: Schedule, seeds: np.ndarray) -> dict[str, np.ndarray]:
    """Each texture's annealing protocol (``Schedule.draw`` of its seed), as store columns:
    start temperature, sweeps, and the codes of its cooling law (``COOLING_LAWS``) and
    relaxation (``RELAX_METHODS``; -1 where none ran)."""
    drawn = [schedule.draw(int(seed)) for seed in seeds]
    return {
        "protocol_t_start": np.array([p.t_start for p in drawn], dtype=np.float64),
        "protocol_sweeps": np.array([p.sweeps for p in drawn], dtype=np.int32),
        "protocol_cooling": np.array(
            [COOLING_LAWS.index(p.cooling) for p in drawn], dtype=np.int32
        ),
        "protocol_relax": np.array(  # -1: no relaxation sweeps (an instant quench)
            [_relax_code(p) for p in drawn],
            dtype=np.int32,
        ),
    }


def texture_seed(base_seed: int, grid_index: int, replica: int) -> int:
    """The anneal() seed of one texture: independent of the draw and of the workers."""
    seq = np.random.SeedSequence([base_seed, int(grid_index), int(replica), 0x5EED])
    return int(seq.generate_state(1, dtype=np.uint64)[0])


def plan_dataset(params: Params) -> Plan:
    """Draw the parameter sets and lay out textures set-major: index = set * per_set + r."""
    ds = params.dataset
    kshape = resolve_kshape_factor(params.physics)
    grid = parameter_grid(params.ranges, kshape)
    chosen = draw_set_indices(len(grid), ds.sets, params.base.seed)
    grid_index = np.repeat(chosen, ds.per_set).astype(np.int64)
    replica = np.tile(np.arange(ds.per_set, dtype=np.int32), ds.sets)
    seeds = np.array(
        [texture_seed(params.base.seed, g, r) for g, r in zip(grid_index, replica, strict=True)],
        dtype=np.uint64,
    )
    return Plan(
        params=grid[grid_index],
        set_id=np.repeat(np.arange(ds.sets, dtype=np.int32), ds.per_set),
        grid_index=grid_index,
        replica=replica,
        seed=seeds,
        kshape_factor=kshape,
        shards=shard_bounds(ds.sets * ds.per_set, ds.shard_textures),
        protocol=protocol_table(params.schedule, seeds),
    )


#: The physics modules that decide a texture's bytes: what generation imports, and no more
#: (validation tools such as inverse.py or observables.py may change without touching the
#: store; a test checks that generation imports nothing outside this list).
SIMULATION_SOURCES = (
    "__init__.py",
    "anneal.py",
    "dipolar.py",
    "energy.py",
    "minimize.py",
    "montecarlo.py",
)
#: What each annealing engine adds to them (imported by the worker only when it is used).
ENGINE_SOURCES = {"numba": (), "torch": ("torch_engine.py", "triton_kernels.py")}
#: Per-texture diagnostics a finished store holds beside the spins: energy per spin, Monte
#: Carlo acceptance, max |S x H_eff| of the final texture (J), minimisation steps, mean |Sz|.
DIAGNOSTICS = ("energy_per_spin", "acceptance", "max_torque", "minimize_steps", "mean_abs_sz")


def simulation_source_hash(engine: str = "numba") -> str:
    """sha256 of the simulation modules' source (those of ``engine`` included): the code
    half of a store's identity."""
    return source_hash("spinfer.physics", SIMULATION_SOURCES + ENGINE_SOURCES[engine])


def engine_record(params: Params) -> dict[str, Any] | None:
    """How the textures are annealed, when not by the reference numba engine: the torch
    engine's name, device kind and kernels (``auto`` resolved here) and batch. A store
    without this record was annealed by numba, so numba stores keep the identity they
    always had."""
    ds = params.dataset
    if ds.engine == "numba":
        return None
    from spinfer.physics.torch_engine import resolve_device, resolve_kernels

    device = resolve_device(ds.device)
    kernels = resolve_kernels(ds.kernels, device)
    return {"name": ds.engine, "device": device.type, "kernels": kernels, "batch": ds.batch}


def fingerprint(params: Params) -> str:
    """Hash of everything that decides the store's bytes (not workers, not paths)."""
    ds = dataclasses.asdict(params.dataset)
    for key in ("workers", "scheduler", "out", "engine", "device", "batch", "kernels"):
        ds.pop(key)
    ds.pop("split")  # the split is a later stage
    what = {
        "format": FORMAT,
        "seed": params.base.seed,
        "physics": dataclasses.asdict(params.physics),
        "schedule": dataclasses.asdict(params.schedule),
        "ranges": dataclasses.asdict(params.ranges),
        "dataset": ds,
        "physics_source": simulation_source_hash(params.dataset.engine),
    }
    engine = engine_record(params)
    if engine is not None:
        what["engine"] = engine
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def store_attributes(params: Params, plan: Plan, fp: str) -> dict[str, Any]:
    """Root attributes: enough to know exactly how every texture was made."""
    cfg = to_dict(params)
    lo, hi = target_bounds(params.ranges, plan.kshape_factor)
    attrs = {
        "format": FORMAT,
        "kind": "textures",
        "complete": False,
        "fingerprint": fp,
        "spinfer_version": spinfer.__version__,
        # the source's content, not the git commit: a commit that leaves the simulation
        # alone must leave the store's bytes (and DVC's hash of them) alone
        "simulation_source": simulation_source_hash(),
        "convention": CONVENTION,
        "size": params.physics.size,
        "kshape_factor": plan.kshape_factor,
        "physics": cfg["physics"],
        "schedule": cfg["schedule"],
        "ranges": cfg["ranges"],
        "seed": params.base.seed,
        "sets": params.dataset.sets,
        "per_set": params.dataset.per_set,
        "dtype": params.dataset.dtype,
        "shard_textures": params.dataset.shard_textures,
        "targets": {"names": list(TARGET_NAMES), "min": lo.tolist(), "max": hi.tolist()},
        "protocol": {
            "randomize": params.schedule.randomize,
            "distribution": PROTOCOL if params.schedule.randomize else None,
            "cooling_codes": list(COOLING_LAWS),
            "relax_codes": list(RELAX_METHODS),
            "columns": sorted(plan.protocol),
        },
    }
    engine = engine_record(params)
    if engine is not None:
        import torch

        attrs["engine"] = {**engine, "torch_version": torch.__version__}
        attrs["simulation_source"] = simulation_source_hash(engine["name"])
    return attrs


def store_engine(meta: dict[str, Any]) -> str:
    """The engine that annealed a store (its ``spinfer`` attributes): numba unless recorded."""
    return (meta.get("engine") or {}).get("name", "numba")


def _init_store(path: Path, params: Params, plan: Plan, fp: str) -> None:
    """Create the arrays and per-texture tables once; an existing partial store is kept."""
    if (path / "zarr.json").is_file():
        meta = dict(zarr.open_group(path, mode="r").attrs).get("spinfer", {})
        if meta.get("fingerprint") == fp:
            return
        shutil.rmtree(path)
    tmp = path.with_name(path.name + ".init")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(tmp, mode="w")
    group.attrs["spinfer"] = store_attributes(params, plan, fp)
    ds = params.dataset
    texture_array(group, "spins", plan.n, params.physics.size, ds.dtype, ds.shard_textures)
    small_array(group, "params", plan.params)
    small_array(group, "set_id", plan.set_id)
    small_array(group, "grid_index", plan.grid_index)
    small_array(group, "replica", plan.replica)
    small_array(group, "seed", plan.seed)
    for name, column in plan.protocol.items():
        small_array(group, name, column)
    tmp.rename(path)


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs for one shard (plain data: it travels to the cluster)."""

    store: str
    shard: int
    start: int
    stop: int
    params: np.ndarray
    seeds: np.ndarray
    size: int
    schedule: dict[str, Any]
    images: int | None
    done_dir: str
    engine: dict[str, Any] | None = None  # engine_record(); None = numba


def _anneal_shard(task: ShardTask, hams: list[Hamiltonian]) -> list[AnnealResult]:
    """The shard's textures on its engine: numba one by one, torch in batches."""
    schedule = Schedule(**task.schedule)
    shape = (task.size, task.size)
    if task.engine is None:
        return [
            anneal(ham, shape, schedule, int(seed), task.images)
            for ham, seed in zip(hams, task.seeds, strict=True)
        ]
    from spinfer.physics.torch_engine import anneal_batch

    seeds = [int(s) for s in task.seeds]
    engine = task.engine
    return anneal_batch(
        hams,
        shape,
        schedule,
        seeds,
        task.images,
        engine["device"],
        engine["batch"],
        kernels=engine.get("kernels", "auto"),
    )


def _caught(function, *args) -> tuple[Any, list[str]]:
    """``function(*args)`` and the warnings it raised: a Dask worker's own warnings go to
    its log, so the shard carries them back to the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args)
    return result, sorted({str(w.message) for w in caught})


def run_shard(task: ShardTask) -> dict[str, Any]:
    """Anneal one shard's textures, write the whole shard, then its done marker."""
    t0 = time.perf_counter()
    n = task.stop - task.start
    size = task.size
    spins = np.empty((n, size, size, 3), dtype=np.float64)
    energy = np.empty(n)
    acceptance = np.empty(n)
    torque = np.empty(n)
    minimized = np.empty(n)
    hams = [
        Hamiltonian(dmi=float(lam), anisotropy=float(k), dipolar=float(d))
        for lam, k, d in task.params
    ]
    results, caught = _caught(_anneal_shard, task, hams)
    for i, (ham, result) in enumerate(zip(hams, results, strict=True)):
        spins[i] = result.spins
        energy[i] = energy_terms(result.spins, ham, task.images).total / (size * size)
        acceptance[i] = result.acceptance
        torque[i] = result.max_torque
        minimized[i] = result.minimize_steps_done
    t1 = time.perf_counter()
    array = zarr.open_array(Path(task.store) / "spins", mode="r+")
    array[task.start : task.stop] = spins.astype(array.dtype)
    digest = sha256_file(Path(task.store) / "spins" / shard_file(array, task.shard))
    marker = {
        "shard": task.shard,
        "start": task.start,
        "stop": task.stop,
        "sha256": digest,
        "energy_per_spin": energy.tolist(),
        "acceptance": acceptance.tolist(),
        "max_torque": torque.tolist(),
        "minimize_steps": minimized.tolist(),
        "mean_abs_sz": np.abs(spins[..., 2]).mean(axis=(1, 2)).tolist(),
        "seconds_anneal": t1 - t0,
        "seconds_write": time.perf_counter() - t1,
        "warnings": caught,
    }
    atomic_write_text(Path(task.done_dir) / f"shard-{task.shard:05d}.json", json.dumps(marker))
    return marker


def _read_markers(done_dir: Path) -> dict[int, dict[str, Any]]:
    markers = {}
    for path in sorted(done_dir.glob("shard-*.json")):
        try:
            marker = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a torn marker: the shard is simply redone
        markers[int(marker["shard"])] = marker
    return markers


class IgnoreSigint(WorkerPlugin):
    """Dask worker plugin: a worker (also a restarted one) ignores SIGINT."""

    name = "spinfer-ignore-sigint"

    def setup(self, worker) -> None:
        with suppress(ValueError):  # not the main thread: nothing to do
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A Dask client on an existing scheduler, or on a LocalCluster of 1-thread processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise SpinferError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # a free port: never clashes
            silence_logs=logging.ERROR,
        )
    except (RuntimeError, OSError) as exc:  # e.g. a worker process killed while starting
        raise SpinferError(f"the local Dask cluster failed to start ({exc}); rerun") from None
    with cluster, Client(cluster) as client:
        # Ctrl-C reaches the whole process group: the workers ignore it (this process shuts
        # them down), and here it interrupts the wait (distributed replaces the handler)
        with suppress(OSError):  # a worker died meanwhile: the scheduler still holds
            client.register_plugin(IgnoreSigint())  # the plugin for its replacement
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield client
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class GenerateSummary:
    path: Path
    textures: int
    computed: int
    resumed: int
    seconds: float
    seconds_anneal: float
    seconds_write: float
    warnings: tuple[str, ...] = ()  # what the workers warned of (e.g. a batch split to fit)

    @property
    def rate(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        return (
            f"generate: {self.textures} textures ({self.computed} computed, {self.resumed} "
            f"resumed) in {self.seconds:.1f} s, {self.rate:.2f} textures/s -> {self.path}"
        )


def work_dir(out: Path, fp: str) -> Path:
    """Where an unfinished store lives: beside ``out``, never deleted by ``dvc repro``."""
    return out.parent / ".partial" / f"{out.name}-{fp[:16]}"


def generate(
    params: Params,
    out: Path | str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> GenerateSummary:
    """Anneal the configured dataset into ``out`` (resuming an interrupted run)."""
    start_time = time.perf_counter()
    out = Path(out if out is not None else params.dataset.out)
    workers = workers if workers is not None else params.dataset.workers
    scheduler = scheduler if scheduler is not None else params.dataset.scheduler
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    plan = plan_dataset(params)
    fp = fingerprint(params)
    work = work_dir(out, fp)
    store, done_dir = work / out.name, work / "done"
    done_dir.mkdir(parents=True, exist_ok=True)
    _init_store(store, params, plan, fp)
    markers = _read_markers(done_dir)
    todo = [k for k in range(len(plan.shards)) if k not in markers]
    resumed = sum(plan.shards[k][1] - plan.shards[k][0] for k in markers)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=plan.n, initial=resumed, desc="generate", unit="tex", disable=not show)
    if todo:
        tasks = [_task(params, plan, store, done_dir, k) for k in todo]
        with dask_client(scheduler, workers) as client:
            from distributed import as_completed

            futures = client.map(run_shard, tasks, pure=False)
            try:
                for future in as_completed(futures):
                    marker = future.result()
                    markers[marker["shard"]] = marker
                    bar.update(marker["stop"] - marker["start"])
            except Exception as exc:
                client.cancel(futures)
                if isinstance(exc, SpinferError):
                    raise
                raise SpinferError(f"a generation task failed: {exc}") from exc
    bar.close()
    _finish(store, plan, markers)
    report = verify_store(store)
    if not report.ok:
        raise SpinferError(f"generated store failed verification: {report.problems[0]}")
    replace_dir(store, out)
    for stale in out.parent.glob(f".partial/{out.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    remove_if_empty(out.parent / ".partial")
    return GenerateSummary(
        path=out,
        textures=plan.n,
        computed=plan.n - resumed,
        resumed=resumed,
        seconds=time.perf_counter() - start_time,
        seconds_anneal=sum(markers[k]["seconds_anneal"] for k in markers),
        seconds_write=sum(markers[k]["seconds_write"] for k in markers),
        warnings=tuple(sorted({w for k in markers for w in markers[k].get("warnings", [])})),
    )


def _task(params: Params, plan: Plan, store: Path, done_dir: Path, k: int) -> ShardTask:
    start, stop = plan.shards[k]
    return ShardTask(
        store=str(store),
        shard=k,
        start=start,
        stop=stop,
        params=plan.params[start:stop],
        seeds=plan.seed[start:stop],
        size=params.physics.size,
        schedule=dataclasses.asdict(params.schedule),
        images=params.physics.dipolar_images,
        done_dir=str(done_dir),
        engine=engine_record(params),
    )


def _finish(store: Path, plan: Plan, markers: dict[int, dict[str, Any]]) -> None:
    """Check every shard against its marker, write diagnostics, mark complete, hash."""
    group = zarr.open_group(store, mode="r+")
    spins = group["spins"]
    for k in range(len(plan.shards)):
        path = store / "spins" / shard_file(spins, k)
        if not path.is_file() or sha256_file(path) != markers[k]["sha256"]:
            (store.parent / "done" / f"shard-{k:05d}.json").unlink(missing_ok=True)
            raise SpinferError(f"shard {k} changed after it was written; rerun to redo it")
    for name in DIAGNOSTICS:
        values = np.concatenate([markers[k][name] for k in range(len(plan.shards))])
        small_array(group, name, values.astype(np.float64))
    meta = dict(group.attrs["spinfer"])
    meta["complete"] = True
    group.attrs["spinfer"] = meta
    write_manifest(store)


def read_textures(path: Path | str) -> zarr.Group:
    """Open a finished texture store (see ``open_store``)."""
    group = open_store(path)
    if store_kind(group) != "textures":
        raise InputError(f"{path}: not a texture store")
    return group


def store_kind(group: zarr.Group) -> str:
    return dict(group.attrs["spinfer"]).get("kind", "")
