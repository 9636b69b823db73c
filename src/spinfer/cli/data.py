"""The dataset commands: generate, split, noise, report, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import ParamsOpt, SetOpt, load_config, sub_app
from spinfer.errors import InputError

data_app = sub_app("The texture dataset: anneal, split, add noise, report, verify.")


@data_app.command()
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

    cfg = load_config(params, overrides)
    if scheduler is not None and "://" not in scheduler:
        raise InputError(f"--scheduler must look like tcp://host:port, got {scheduler!r}")
    summary = run(cfg, out, workers, scheduler)
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(summary.line(), err=True)


@data_app.command()
def split(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: Annotated[Path | None, typer.Option("--textures", help="texture store")] = None,
    out: Annotated[Path, typer.Option("--out", help="split file")] = Path("artifacts/splits.json"),
) -> None:
    """Split every parameter set's textures into train/val/test (dataset.split, seeded)."""
    from spinfer.data.split import make_splits

    cfg = load_config(params, overrides)
    doc = make_splits(textures or cfg.dataset.out, cfg.dataset.split, cfg.base.seed, out)
    counts = ", ".join(f"{k} {v}" for k, v in doc["counts"].items())
    typer.echo(f"split: {counts} -> {out}", err=True)


@data_app.command()
def noise(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: Annotated[Path | None, typer.Option("--textures", help="texture store")] = None,
    splits: Annotated[Path, typer.Option("--splits", help="split file")] = Path(
        "artifacts/splits.json"
    ),
    out: Annotated[Path | None, typer.Option("--out", help="store (default noise.out)")] = None,
) -> None:
    """Write the noisy variants: train/val with a ~ U(noise.amplitude), test at every Ts."""
    from spinfer.data.noise import make_noisy

    cfg = load_config(params, overrides)
    target = out or Path(cfg.noise.out)
    n, seconds = make_noisy(cfg, textures or cfg.dataset.out, splits, target)
    typer.echo(f"noise: {n} noisy textures in {seconds:.1f} s -> {target}", err=True)


@data_app.command()
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

    cfg = load_config(params, overrides)
    result = write_report(textures or cfg.dataset.out, splits, out, metrics)
    typer.echo(
        f"report: {result['textures']} textures, out-of-plane fraction "
        f"{result['out_of_plane_fraction']:.2f} -> {out}, {metrics}",
        err=True,
    )


@data_app.command()
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
