"""The dataset commands: generate, split, noise, report, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import ParamsOpt, SetOpt, load_config, sub_app
from spinfer.errors import InputError

data_app = sub_app("The texture dataset: anneal, split, add noise, report, verify.")
TexturesOpt = Annotated[Path | None, typer.Option("--textures", help="texture store")]
SplitsOpt = Annotated[Path, typer.Option("--splits", help="split file")]
SPLITS = Path("artifacts/splits.json")


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
    textures: TexturesOpt = None,
    out: Annotated[Path, typer.Option("--out", help="split file")] = Path("artifacts/splits.json"),
) -> None:
    """Split every parameter set's textures into train/val/test (dataset.split, seeded)."""
    from spinfer.data.split import make_splits

    cfg = load_config(params, overrides)
    doc = make_splits(textures or cfg.dataset.out, cfg.dataset.split, cfg.base.seed, out)
    counts = ", ".join(f"{k} {v}" for k, v in doc["counts"].items())
    typer.echo(f"split: {counts} -> {out}", err=True)


def _noise(cfg, part: str, textures: Path | None, splits: Path, target: Path) -> None:
    from spinfer.data.noise import make_noisy

    n, seconds = make_noisy(cfg, textures or cfg.dataset.out, splits, target, part=part)
    label = "noise" if part == "training" else "test noise"
    typer.echo(f"{label}: {n} noisy textures in {seconds:.1f} s -> {target}", err=True)


@data_app.command()
def noise(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: TexturesOpt = None,
    splits: SplitsOpt = SPLITS,
    out: Annotated[Path | None, typer.Option("--out", help="store (default noise.out)")] = None,
) -> None:
    """Write the training copies: train and val with a ~ U(noise.amplitude) (or a virtual
    microscope, noise.microscope)."""
    cfg = load_config(params, overrides)
    _noise(cfg, "training", textures, splits, out or Path(cfg.noise.out))


@data_app.command("test-noise")
def test_noise(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: TexturesOpt = None,
    splits: SplitsOpt = SPLITS,
    out: Annotated[
        Path | None, typer.Option("--out", help="store (default noise.test_out)")
    ] = None,
) -> None:
    """Write the test copies: the test split at every level Ts of noise.test_levels."""
    cfg = load_config(params, overrides)
    _noise(cfg, "test", textures, splits, out or Path(cfg.noise.test_out))


@data_app.command()
def report(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    textures: TexturesOpt = None,
    splits: SplitsOpt = SPLITS,
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
