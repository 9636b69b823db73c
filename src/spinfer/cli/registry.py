"""The model registry and prediction: register, promote, rollback, predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import ParamsOpt, SetOpt, load_config, sub_app
from spinfer.errors import InputError

registry_app = sub_app("The registered model: register the best run, promote, roll back.")


@registry_app.command()
def register(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="registration JSON")] = None,
) -> None:
    """Register the best training run with the alias challenger (docs/registry-serving.md)."""
    from spinfer.io import atomic_write_text
    from spinfer.serve.registry import RULE, compact_name
    from spinfer.serve.registry import register as run

    cfg = load_config(params, overrides)
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


@registry_app.command()
def promote(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="decision JSON")] = None,
) -> None:
    """Make the challenger champion only if it loads cleanly and beats the champion."""
    from spinfer.serve.registry import promote as run

    cfg = load_config(params, overrides)
    root = params.resolve().parent
    _decision(run(cfg, root, progress=sys.stderr.isatty()), out, cfg, root)


@registry_app.command()
def rollback(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Give the alias champion back to the previous champion."""
    from spinfer.serve.registry import rollback as run

    cfg = load_config(params, overrides)
    _decision(run(cfg, params.resolve().parent), None)


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
    from spinfer.tracking import store_uri

    if crops not in ("centre", "grid"):
        raise InputError(f"--crops must be centre or grid, got {crops!r}")
    cfg = load_config(params, overrides) if params.exists() else None
    if cfg is None:
        from spinfer.config import Params

        cfg = Params()
    uri = model or f"models:/{cfg.tracking.registered_model}@champion"
    tracking = store_uri(cfg, params.resolve().parent)
    frame = predict_file(path, uri, tracking, crops)
    if as_json:
        typer.echo(frame.to_json(orient="records"))
    else:
        typer.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
