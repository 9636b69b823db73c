"""The ``spinfer`` command: a thin typer layer over the library.

Every command loads what it needs, calls one library function and maps ``SpinferError`` to a
single ``error: ...`` line on stderr with exit status 1 (2 for bad arguments). Set
``SPINFER_TRACEBACK=1`` to see the full traceback instead.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from spinfer.errors import InputError, SpinferError

app = typer.Typer(
    name="spinfer",
    help="Read a magnetic domain image and say which Hamiltonian made it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="resnet18, resnet50, cnn (or a timm name)")
]
DataOpt = Annotated[str | None, typer.Option("--data", help="training data: noisy or clean")]


def _version(value: bool) -> None:
    if value:
        import spinfer

        typer.echo(f"spinfer {spinfer.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Read a magnetic domain image and say which Hamiltonian made it."""


def _echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=None))


@app.command()
def energy(
    file: Annotated[Path, typer.Argument(help=".npy or .npz holding an (Lx, Ly, 3) array")],
    lam: Annotated[float, typer.Option("--lam", help="DMI constant lambda (J = 1)")],
    k: Annotated[float, typer.Option("--K", help="perpendicular anisotropy K")],
    d: Annotated[float, typer.Option("--D", help="dipolar constant D")],
    images: Annotated[
        int | None,
        typer.Option("--images", help="dipolar block of M periodic images (default: full sum)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per-term energies (totals over the lattice, J = 1) of a spin configuration."""
    from spinfer.io import load_spins
    from spinfer.physics.energy import Hamiltonian, energy_terms

    if images is not None and images < 0:
        raise InputError(f"--images must be >= 0, got {images}")
    spins = load_spins(file)
    terms = energy_terms(spins, Hamiltonian(dmi=lam, anisotropy=k, dipolar=d), images)
    if as_json:
        _echo_json(terms.as_dict())
    else:
        for name, value in terms.as_dict().items():
            typer.echo(f"{name:>11s} {value: .10f}")


@app.command()
def simulate(
    lam: Annotated[float, typer.Option("--lam", help="DMI constant lambda")],
    k: Annotated[float, typer.Option("--K", help="perpendicular anisotropy K")],
    d: Annotated[float, typer.Option("--D", help="dipolar constant D")],
    out: Annotated[Path, typer.Option("--out", help="output .npz (spins) or .png (picture)")],
    seed: Annotated[int, typer.Option("--seed", help="texture seed")] = 0,
    size: Annotated[int, typer.Option("--size", help="lattice size L (L x L)")] = 100,
    size_y: Annotated[
        int | None, typer.Option("--size-y", help="Ly for rectangular lattices")
    ] = None,
    sweeps: Annotated[int | None, typer.Option("--sweeps", help="annealing sweeps")] = None,
    images: Annotated[int | None, typer.Option("--images", help="dipolar image block M")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Anneal one texture at (lambda, K, D); the schedule comes from params.yaml if present."""
    import dataclasses

    from spinfer.io import save_spins
    from spinfer.physics.anneal import Schedule, anneal
    from spinfer.physics.energy import Hamiltonian, energy_terms
    from spinfer.render import save_texture_png

    if out.suffix not in (".npz", ".png"):
        raise InputError(f"--out must end in .npz or .png, got '{out.name}'")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    schedule = Schedule()
    if params.exists():
        from spinfer.config import load_params

        schedule = load_params(params).schedule
    if sweeps is not None:
        schedule = dataclasses.replace(schedule, sweeps=sweeps)
    ham = Hamiltonian(dmi=lam, anisotropy=k, dipolar=d)
    shape = (size, size_y if size_y is not None else size)
    start = time.perf_counter()
    result = anneal(ham, shape, schedule, seed, images)
    seconds = time.perf_counter() - start
    terms = energy_terms(result.spins, ham, images)
    meta = {
        "lam": lam,
        "K": k,
        "D": d,
        "seed": seed,
        "shape": list(shape),
        "images": images,
        "schedule": dataclasses.asdict(schedule),
        "energy": terms.as_dict(),
    }
    if out.suffix == ".png":
        save_texture_png(result.spins, out, f"λ={lam:g} K={k:g} D={d:g} seed={seed}")
    else:
        save_spins(out, result.spins, meta)
    typer.echo(
        f"{out}: {shape[0]}x{shape[1]}, E/N={terms.total / (shape[0] * shape[1]):.5f}, "
        f"mean|Sz|={abs(result.spins[..., 2]).mean():.3f}, {seconds:.2f} s",
        err=True,
    )


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help=".npy or .npz spin array")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write")] = None,
) -> None:
    """Render a texture: hue = in-plane angle, lightness = Sz, with a colour-wheel legend."""
    from spinfer.io import load_spins
    from spinfer.render import save_texture_png

    spins = load_spins(file)
    target = out if out is not None else file.with_suffix(".png")
    save_texture_png(spins, target, file.name)
    typer.echo(str(target))


@app.command()
def kshape(
    size: Annotated[int, typer.Option("--size", help="lattice size L")] = 100,
    images: Annotated[int | None, typer.Option("--images", help="dipolar image block M")] = None,
) -> None:
    """Print the lattice's dipolar shape anisotropy [E(+z) - E(+x)] / (N D)."""
    from spinfer.physics.dipolar import dipolar_kernel

    if size < 4:
        raise InputError(f"--size must be >= 4, got {size}")
    typer.echo(f"{dipolar_kernel(size, size, images).kshape():.6f}")


@app.command()
def preview(
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("artifacts/preview"),
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Anneal and render a handful of textures across the configured ranges."""
    from spinfer.config import load_params
    from spinfer.preview import render_preview

    cfg = load_params(params, overrides or ())
    start = time.perf_counter()
    results = render_preview(cfg, out)
    seconds = time.perf_counter() - start
    typer.echo(f"preview: {len(results)} textures in {seconds:.1f} s -> {out}", err=True)


def _config(params: Path, overrides: list[str] | None):
    from spinfer.config import load_params

    return load_params(params, overrides or ())


@app.command()
def generate(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="store (default dataset.out)")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="LocalCluster workers (dataset.workers)")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="existing Dask scheduler, tcp://host:port")
    ] = None,
) -> None:
    """Anneal the configured dataset on Dask into a Zarr store (resumes an interrupted run)."""
    from spinfer.data.generate import generate as run

    cfg = _config(params, overrides)
    if scheduler is not None and "://" not in scheduler:
        raise InputError(f"--scheduler must look like tcp://host:port, got {scheduler!r}")
    summary = run(cfg, out, workers, scheduler)
    typer.echo(summary.line(), err=True)


@app.command()
def split(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: Annotated[Path | None, typer.Option("--textures", help="texture store")] = None,
    out: Annotated[Path, typer.Option("--out", help="split file")] = Path("artifacts/splits.json"),
) -> None:
    """Split every parameter set's textures into train/val/test (dataset.split, seeded)."""
    from spinfer.data.split import make_splits

    cfg = _config(params, overrides)
    doc = make_splits(textures or cfg.dataset.out, cfg.dataset.split, cfg.base.seed, out)
    counts = ", ".join(f"{k} {v}" for k, v in doc["counts"].items())
    typer.echo(f"split: {counts} -> {out}", err=True)


@app.command()
def noise(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: Annotated[Path | None, typer.Option("--textures", help="texture store")] = None,
    splits: Annotated[Path, typer.Option("--splits", help="split file")] = Path(
        "artifacts/splits.json"
    ),
    out: Annotated[Path | None, typer.Option("--out", help="store (default noise.out)")] = None,
) -> None:
    """Write the noisy variants: train/val with a ~ U[amplitude], test at every Ts."""
    from spinfer.data.noise import make_noisy

    cfg = _config(params, overrides)
    target = out or Path(cfg.noise.out)
    n, seconds = make_noisy(cfg, textures or cfg.dataset.out, splits, target)
    typer.echo(f"noise: {n} noisy textures in {seconds:.1f} s -> {target}", err=True)


@app.command()
def report(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: Annotated[Path | None, typer.Option("--textures", help="texture store")] = None,
    splits: Annotated[Path, typer.Option("--splits", help="split file")] = Path(
        "artifacts/splits.json"
    ),
    out: Annotated[Path, typer.Option("--out", help="figure folder")] = Path("artifacts/report"),
    metrics: Annotated[Path, typer.Option("--metrics", help="metrics JSON")] = Path(
        "artifacts/metrics/dataset.json"
    ),
) -> None:
    """Contact sheet, parameter histograms, out-of-plane curve and dataset metrics."""
    from spinfer.data.report import write_report

    cfg = _config(params, overrides)
    result = write_report(textures or cfg.dataset.out, splits, out, metrics)
    typer.echo(
        f"report: {result['textures']} textures, out-of-plane fraction "
        f"{result['out_of_plane_fraction']:.2f} -> {out}, {metrics}",
        err=True,
    )


@app.command()
def verify(
    store: Annotated[Path, typer.Argument(help="a spinfer Zarr store")],
) -> None:
    """Re-hash every file and decode every chunk; exit 1 naming the first problem."""
    from spinfer.data.store import verify_store

    result = verify_store(store)
    for problem in result.problems[1:]:
        typer.echo(f"  {problem}", err=True)
    if not result.ok:
        more = f" (+{len(result.problems) - 1} more above)" if len(result.problems) > 1 else ""
        raise InputError(f"{store}: {result.problems[0]}{more}")
    typer.echo(
        f"ok: {store}: {result.files} files, {result.chunks} shards/chunks decoded, "
        f"{result.textures} textures"
    )


@app.command()
def train(
    model: ModelOpt = None,
    data: DataOpt = None,
    tuned: Annotated[
        Path | None,
        typer.Option("--tuned", help="train the best trial of a study (tuned.yaml) instead"),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="continue from last.pt if it matches")
    ] = True,
    evaluate: Annotated[
        bool, typer.Option("--evaluate/--no-evaluate", help="evaluate and log after training")
    ] = True,
) -> None:
    """Train one (model, training data) run, evaluate it on every Ts, log it to MLflow.

    Runs as DDP when launched by ``torchrun --nproc_per_node=N``. With ``--tuned FILE`` the
    model, data and training settings come from a study's tuned.yaml and the run is written
    under artifacts/{models,eval}/tuned/ (a file no study has written yet: nothing to do).
    """
    from spinfer.train.loop import Dist, train_run

    root = params.resolve().parent
    resolved = _resolve_run(params, overrides, model, data, tuned)
    if resolved is None:
        _no_tuned_run(root, tuned)
        return
    cfg, model, data = resolved
    try:
        result = train_run(cfg, model, data, root)
        if Dist.from_env().main:
            done = result.state.epoch - result.resumed_from
            typer.echo(
                f"train: {result.name}: {done} epochs in {result.seconds:.1f} s "
                f"(resumed at {result.resumed_from}), best val {result.state.best_val:.5f} "
                f"at epoch {result.state.best_epoch}",
                err=True,
            )
            if evaluate:
                from spinfer.train.evaluate import evaluate_and_log, summary_line

                ev = evaluate_and_log(cfg, model, data, root, result.run_id)
                typer.echo(summary_line(result.name, ev), err=True)
    finally:
        import torch.distributed as tdist

        if tdist.is_available() and tdist.is_initialized():
            tdist.destroy_process_group()


def _resolve_run(params: Path, overrides, model: str | None, data: str | None, tuned):
    """(config, model, data) of the run a command names (--model and --data, or a study's
    winner); None when the study's file names no run yet."""
    from spinfer.train.loop import check_run

    if tuned is not None:
        found = _tuned_run(params, overrides, tuned)
        if found is None:
            return None
        model, data, overrides = found
    if model is None or data is None:
        raise typer.BadParameter("give --model and --data, or --tuned FILE")
    cfg = _config(params, overrides)
    check_run(model, data)
    return cfg, model, data


def _tuned_run(params: Path, overrides: list[str] | None, tuned: Path):
    """(model, data, overrides) of a study's winner (tuned.yaml), or None before any study."""
    from spinfer.tune import load_tuned, tuned_overrides

    settings = load_tuned(tuned)
    if settings is None:
        return None
    base = _config(params, overrides)
    return (
        settings["model"],
        settings["data"],
        [
            *(overrides or []),
            *tuned_overrides(settings, base),
            f"train.out={base.train.out}/tuned",
            f"train.eval_out={base.train.eval_out}/tuned",
        ],
    )


@app.command()
def external(
    model: ModelOpt = None,
    data: DataOpt = None,
    tuned: Annotated[
        Path | None, typer.Option("--tuned", help="the study's winner (tuned.yaml) instead")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Estimate the external test set (another simulator's textures) with a trained run."""
    from spinfer.train.external import evaluate_external, summary_line
    from spinfer.train.loop import run_name

    resolved = _resolve_run(params, overrides, model, data, tuned)
    if resolved is None:
        typer.echo(f"external: {tuned} names no trained run yet; nothing to do", err=True)
        return
    cfg, model, data = resolved
    metrics = evaluate_external(cfg, model, data, params.resolve().parent)
    typer.echo(summary_line(run_name(model, data), metrics), err=True)


def _no_tuned_run(root: Path, tuned: Path) -> None:
    """The tuned stage's outputs when no study has written its file yet."""
    from spinfer.io import atomic_write_text

    note = {"trained": False, "reason": f"{tuned} names no trial yet (run `spinfer tune`)"}
    for folder in ("artifacts/models/tuned", "artifacts/eval/tuned"):
        atomic_write_text(root / folder / "status.json", json.dumps(note, indent=2) + "\n")
    typer.echo(f"train: {note['reason']}; nothing to train", err=True)


@app.command()
def tune(
    study: Annotated[str, typer.Option("--study", help="study name (created or continued)")],
    trials: Annotated[int, typer.Option("--trials", help="trials to run now (>= 1)")],
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Run an Optuna study over architecture and training settings (see params.yaml: tune).

    Kill and rerun to continue; several processes may work on one study at once.
    """
    from spinfer.tune import tune as run

    if trials < 1:
        raise typer.BadParameter(f"--trials must be >= 1, got {trials}")
    cfg = _config(params, overrides)
    summary = run(cfg, study, trials, params.resolve().parent, progress=sys.stderr.isatty())
    typer.echo(
        f"tune: study {summary.study}: {summary.trials} trials ({summary.complete} complete, "
        f"{summary.pruned} pruned, {summary.failed} failed)",
        err=True,
    )
    if summary.best_value is None:
        typer.echo("tune: no trial has completed yet", err=True)
        return
    typer.echo(
        f"tune: best trial {summary.best_trial}: val MAE {summary.best_value:.4f} "
        f"{json.dumps(summary.best_params)}; written to {summary.best_out}",
        err=True,
    )


@app.command()
def ablate(
    model: Annotated[
        str, typer.Option("--model", help="resnet18, resnet50, cnn (or timm)")
    ] = "cnn",
    data: Annotated[str, typer.Option("--data", help="training data: noisy or clean")] = "noisy",
    seeds: Annotated[int, typer.Option("--seeds", help="seeds per condition (>= 3)")] = 3,
    out: Annotated[Path, typer.Option("--out", help="folder for runs and summary")] = Path(
        "artifacts/ablation"
    ),
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Symmetry ablation: with and without augmentation and test-time averaging, several
    seeds each; logged to MLflow (experiment <tracking.experiment>-ablation)."""
    from spinfer.train.ablation import ablate as run
    from spinfer.train.ablation import summary_lines

    cfg = _config(params, overrides)
    summary = run(cfg, params.resolve().parent, model, data, seeds, out)
    if as_json:
        _echo_json(summary)
        return
    for line in summary_lines(summary):
        typer.echo(line)


@app.command()
def compare(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    figure: Annotated[Path, typer.Option("--figure", help="PNG to write")] = Path(
        "artifacts/eval/capacity_grid.png"
    ),
    metrics: Annotated[Path, typer.Option("--metrics", help="findings JSON")] = Path(
        "artifacts/metrics/training.json"
    ),
) -> None:
    """The capacity grid side by side (paper Fig. 2) and the paper's two findings."""
    from spinfer.train.compare import compare as run

    cfg = _config(params, overrides)
    result = run(cfg, params.resolve().parent, figure, metrics)
    checks = {k: v for k, v in result.items() if isinstance(v, bool)}
    typer.echo(
        "compare: " + ", ".join(f"{k}={v}" for k, v in checks.items()) + f" -> {figure}",
        err=True,
    )


@app.command()
def register(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="registration JSON")] = None,
) -> None:
    """Register the best training run with the alias challenger (docs/registry-serving.md)."""
    from spinfer.io import atomic_write_text
    from spinfer.serve.registry import RULE, compact_name
    from spinfer.serve.registry import register as run

    cfg = _config(params, overrides)
    reg = run(cfg, params.resolve().parent)
    if out is not None:
        doc = {"rule": RULE, "run_name": reg.run_name, "mae_mean": reg.mae_mean}
        if reg.refused:
            doc["refused"] = reg.refused
        atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
    if reg.refused:
        typer.echo(f"register: refused: {reg.refused}; no challenger", err=True)
        return
    state = "registered" if reg.created else "already registered"
    compact = (
        f" (compact input: {compact_name(reg.name)} version {reg.compact_version})"
        if reg.compact_version
        else ""
    )
    typer.echo(
        f"register: {reg.run_name} (test MAE {reg.mae_mean:.5f}) {state} as "
        f"{reg.name} version {reg.version}, alias challenger{compact}",
        err=True,
    )


def _decision(result, out: Path | None, cfg=None, root: Path | None = None) -> None:
    from spinfer.io import atomic_write_text
    from spinfer.serve.registry import champion_state

    typer.echo(f"{result.decision}: {result.reason}", err=True)
    if out is not None:
        state = champion_state(cfg, root)
        atomic_write_text(out, json.dumps(state, indent=2) + "\n")


@app.command()
def promote(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="decision JSON")] = None,
) -> None:
    """Make the challenger champion only if it loads cleanly and beats the champion."""
    from spinfer.serve.registry import promote as run

    cfg = _config(params, overrides)
    root = params.resolve().parent
    _decision(run(cfg, root), out, cfg, root)


@app.command()
def rollback(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Give the alias champion back to the previous champion."""
    from spinfer.serve.registry import rollback as run

    cfg = _config(params, overrides)
    _decision(run(cfg, params.resolve().parent), None)


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help=".npy/.npz/Zarr store of (N, Lx, Ly, 3) spins")],
    model: Annotated[str | None, typer.Option("--model", help="model URI")] = None,
    crops: Annotated[str, typer.Option("--crops", help="centre or grid")] = "centre",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Estimate (lambda, K, D) of spin images with a registered model (default: champion)."""
    from spinfer.serve.predict import predict_file
    from spinfer.tracking import resolve_uri

    if crops not in ("centre", "grid"):
        raise InputError(f"--crops must be centre or grid, got {crops!r}")
    cfg = _config(params, overrides) if params.exists() else None
    if cfg is None:
        from spinfer.config import Params

        cfg = Params()
    uri = model or f"models:/{cfg.tracking.registered_model}@champion"
    tracking = resolve_uri(cfg.tracking.uri, params.resolve().parent)
    frame = predict_file(path, uri, tracking, crops)
    if as_json:
        typer.echo(frame.to_json(orient="records"))
    else:
        typer.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.5f}"))


spleem_app = typer.Typer(
    help="Experimental (SPLEEM-like) images: the shipped sample and estimates.",
    no_args_is_help=True,
)
app.add_typer(spleem_app, name="spleem")


@spleem_app.command("sample")
def spleem_sample(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder (default spleem.data)")] = None,
) -> None:
    """Write the experimental-like sample: simulated textures through the forward model."""
    from spinfer.spleem.sample import make_sample

    cfg = _config(params, overrides)
    folder = out or params.resolve().parent / cfg.spleem.data
    sets = make_sample(cfg, folder, progress=sys.stderr.isatty())
    typer.echo(f"spleem sample: {len(sets)} sets in {folder}", err=True)


@spleem_app.command("estimate")
def spleem_estimate(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="folder of image sets (default spleem.data)")
    ] = None,
    channels: Annotated[
        list[Path] | None,
        typer.Option("--channels", help="three grey-scale images Sx Sy Sz (one set)"),
    ] = None,
    wheel: Annotated[Path | None, typer.Option("--wheel", help="one colour-wheel image")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="model URI (default spleem.model)")
    ] = None,
    stride: Annotated[int | None, typer.Option("--stride", help="panel stride (px)")] = None,
    orientation: Annotated[
        str | None,
        typer.Option(
            "--orientation",
            help="image axes: xy-up (x right along the columns, y up along the rows; default), "
            "xy-down, transposed; a set's meta.yaml wins",
        ),
    ] = None,
    sz_sign: Annotated[
        int | None, typer.Option("--sz-sign", help="-1 when the instrument shows -Sz as white")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="folder (default spleem.out; artifacts/spleem_adhoc for --channels/--wheel)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="also write the aggregates here (DVC)")
    ] = None,
    skip_without_model: Annotated[
        bool,
        typer.Option(
            "--skip-without-model",
            help="no model at the URI (no champion yet, or the guard refused every run): "
            "record that and exit 0 instead of failing (the pipeline's stages)",
        ),
    ] = False,
) -> None:
    """Estimate lambda, K, D (model units and meV) per panel and per set, fit the domain
    walls, re-simulate at the estimate; figures, tables and an MLflow run."""
    import shutil
    import tempfile

    from spinfer.spleem.estimate import estimate_all, log_run
    from spinfer.spleem.ingest import ORIENTATIONS

    extra = list(overrides or [])
    if stride is not None:
        extra.append(f"spleem.stride={stride}")
    if orientation is not None:
        if orientation not in ORIENTATIONS:
            raise typer.BadParameter(
                f"unknown orientation '{orientation}' (known: {', '.join(ORIENTATIONS)})",
                param_hint="--orientation",
            )
        extra.append(f"spleem.orientation={orientation}")
    if sz_sign is not None:
        if sz_sign not in (1, -1):
            raise typer.BadParameter("must be 1 or -1", param_hint="--sz-sign")
        extra.append(f"spleem.sz_sign={sz_sign}")
    if out is None and (channels or wheel):  # not the pipeline's output folder
        out = params.resolve().parent / "artifacts" / "spleem_adhoc"
    if out is not None:
        extra.append(f"spleem.out={out.resolve()}")
    cfg = _config(params, extra)
    root = params.resolve().parent
    scratch = None
    if channels or wheel:
        if channels and len(channels) != 3:
            raise typer.BadParameter("--channels takes exactly three images (Sx, Sy, Sz)")
        scratch = Path(tempfile.mkdtemp(prefix="spinfer-spleem-"))
        name = (channels[0] if channels else wheel).stem
        folder = scratch / (name if name not in ("sx", "wheel") else "image")
        folder.mkdir()
        for src, stem in zip(channels or [wheel], ("sx", "sy", "sz") if channels else ("wheel",),
                             strict=True):  # fmt: skip
            if not src.is_file():
                raise InputError(f"{src}: no such file")
            (folder / f"{stem}{src.suffix}").symlink_to(src.resolve())
        data = scratch
    try:
        results = estimate_all(
            cfg, root, data, model, "channels" if not wheel else "wheel", log=False
        )
    except InputError as exc:
        if not (skip_without_model and str(exc).startswith("cannot load model")):
            raise
        _no_model(root / cfg.spleem.out, metrics, str(exc))
        return
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if metrics is not None:
        from spinfer.io import atomic_write_text
        from spinfer.spleem.estimate import metrics_of

        atomic_write_text(metrics, json.dumps(metrics_of(results), indent=2) + "\n")
    for r in results:
        for warning in r.warnings:
            typer.echo(f"warning: {warning}", err=True)
    if as_json:
        _echo_json({r.name: r.summary() for r in results})
    else:
        _print_spleem(results)
    outputs = root / cfg.spleem.out
    try:
        log_run(cfg, root, results, outputs, model or cfg.spleem.model)
    except Exception as exc:  # the estimate is on disk already; say so, never lose it
        if os.environ.get("SPINFER_TRACEBACK") == "1":
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpinferError(
            f"the estimates are written to {outputs} (summary.json, *_panels.csv) but logging "
            f"them to MLflow failed: {first}"
        ) from None


def _no_model(out: Path, metrics: Path | None, reason: str) -> None:
    """The outputs of an estimate that had no model to run: a status file, empty metrics."""
    from spinfer.io import atomic_write_text

    atomic_write_text(out / "status.json", json.dumps({"estimated": False, "reason": reason}))
    if metrics is not None:
        atomic_write_text(metrics, "{}\n")
    typer.echo(f"spleem: nothing estimated: {reason}", err=True)


def _print_spleem(results) -> None:
    """One line per set: estimates with their uncertainty, meV values, wall width, truth."""
    for r in results:
        m, sd = r.mean, r.std
        line = (
            f"{r.name} ({r.source}, {len(r.table)} panels): "
            + ", ".join(
                _with_uncertainty(k, m[k], sd[k], r.uncertainty.get(k))
                for k in ("lambda", "K", "D")
            )
            + f"; J {m['J_meV']:.3g} meV, lambda {m['lambda_meV']:.3g} meV, "
            + f"K {m['K_meV']:.3g} meV; wall w {r.walls['w_px']:.2f} px "
            + f"({r.walls['width_nm']:.0f} nm), Neel fraction {r.walls['neel_fraction']:.2f} "
            + f"(chirality {r.walls['chirality']:+.2f})"
        )
        if r.truth:
            line += " | truth " + ", ".join(f"{k} {r.truth[k]:.4g}" for k in ("lambda", "K", "D"))
        typer.echo(line)


def _with_uncertainty(name: str, mean: float, spread: float, u: dict | None) -> str:
    """``lambda 0.15 ± 0.04 (model 0.03, spread 0.02: model dominates)``."""
    if not u or not math.isfinite(u["panel_sigma"]):
        return f"{name} {mean:.4g} ± {spread:.2g} (spread)"
    who = "model" if u["dominant"] == "panel" else "spread"
    return (
        f"{name} {mean:.4g} ± {u['total']:.2g} (model {u['panel_sigma']:.2g}, "
        f"spread {spread:.2g}: {who} dominates)"
    )


doctor_app = typer.Typer(help="Checks of the platform itself.", no_args_is_help=True)
app.add_typer(doctor_app, name="doctor")


@doctor_app.command("faults")
def doctor_faults(
    slow: Annotated[bool, typer.Option("--slow", help="also the scenarios over a minute")] = False,
    scenario: Annotated[
        list[str] | None, typer.Option("--scenario", help="run only these (repeatable)")
    ] = None,
    work: Annotated[
        Path | None, typer.Option("--dir", help="scratch folder (default: a temporary one)")
    ] = None,
) -> None:
    """Inject faults and bad input into the real components; print a scoreboard.

    Exit 1 when a scenario fails or data was lost.
    """
    import shutil
    import tempfile

    from spinfer.faults import run_scenarios, scoreboard

    root = work or Path(tempfile.mkdtemp(prefix="spinfer-doctor-"))
    outcomes = []
    try:
        for outcome in run_scenarios(root, scenario, slow):
            outcomes.append(outcome)
            mark = "pass" if outcome.passed else "FAIL"
            typer.echo(f"[{mark}] {outcome.scenario}: {outcome.observed}", err=True)
    finally:
        if work is None:
            shutil.rmtree(root, ignore_errors=True)
    typer.echo(scoreboard(outcomes))
    if not all(o.passed for o in outcomes) or any(o.lost_data for o in outcomes):
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: run the app with one-line errors."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    debug = os.environ.get("SPINFER_TRACEBACK") == "1"
    try:
        # typer turns Ctrl-C and typer.Exit into a returned exit code in this mode
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            if code == 130:
                typer.echo("error: interrupted", err=True)
            sys.exit(code)
    except SpinferError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # disk full, permissions, a file that vanished
        if debug:
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        typer.echo(f"error: cannot access{where}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    except typer.TyperException as exc:  # click's usage and parameter errors (public base)
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help
            typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
