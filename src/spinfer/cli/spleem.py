"""Experimental (SPLEEM-like) images: the shipped sample and estimates."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import ParamsOpt, SetOpt, echo_json, load_config, sub_app
from spinfer.errors import InputError, SpinferError

spleem_app = sub_app("Experimental (SPLEEM-like) images: the shipped sample and estimates.")


@spleem_app.command("sample")
def spleem_sample(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder (default spleem.data)")] = None,
) -> None:
    """Write the experimental-like sample: simulated textures through the forward model."""
    from spinfer.spleem.sample import make_sample

    cfg = load_config(params, overrides)
    folder = out or params.resolve().parent / cfg.spleem.data
    sets = make_sample(cfg, folder, progress=sys.stderr.isatty())
    typer.echo(f"spleem sample: {len(sets)} sets in {folder}", err=True)


def _one_of(value: str, known: tuple[str, ...], what: str, option: str) -> None:
    """A bad-argument error naming ``option`` unless ``value`` is one of ``known``."""
    if value not in known:
        raise typer.BadParameter(
            f"unknown {what} '{value}' (known: {', '.join(known)})", param_hint=option
        )


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
    psf_shape: Annotated[
        str | None,
        typer.Option(
            "--psf-shape", help="the instrument's point-spread function: gaussian, lorentzian"
        ),
    ] = None,
    psf_width: Annotated[
        float | None,
        typer.Option(
            "--psf-width",
            help="its width in pixels (Gaussian sigma, Lorentzian half-width): the channels are "
            "deconvolved by it; 0: not (default); a set's meta.yaml wins",
        ),
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
    import contextlib

    from spinfer.spleem.deconvolve import PSF_SHAPES
    from spinfer.spleem.estimate import estimate_all, log_run
    from spinfer.spleem.ingest import ORIENTATIONS, single_set

    extra = list(overrides or [])
    if stride is not None:
        extra.append(f"spleem.stride={stride}")
    if orientation is not None:
        _one_of(orientation, ORIENTATIONS, "orientation", "--orientation")
        extra.append(f"spleem.orientation={orientation}")
    if sz_sign is not None:
        if sz_sign not in (1, -1):
            raise typer.BadParameter("must be 1 or -1", param_hint="--sz-sign")
        extra.append(f"spleem.sz_sign={sz_sign}")
    if psf_shape is not None:
        _one_of(psf_shape, PSF_SHAPES, "PSF shape", "--psf-shape")
        extra.append(f"spleem.psf_shape={psf_shape}")
    if psf_width is not None:
        if not (math.isfinite(psf_width) and psf_width >= 0):
            raise typer.BadParameter("must be >= 0 pixels", param_hint="--psf-width")
        extra.append(f"spleem.psf_width={psf_width}")
    if out is None and (channels or wheel):  # not the pipeline's output folder
        out = params.resolve().parent / "artifacts" / "spleem_adhoc"
    if out is not None:
        extra.append(f"spleem.out={out.resolve()}")
    cfg = load_config(params, extra)
    root = params.resolve().parent
    if channels and len(channels) != 3:
        raise typer.BadParameter(
            "takes exactly three images (Sx, Sy, Sz)", param_hint="--channels"
        )
    source = single_set(channels, wheel) if channels or wheel else contextlib.nullcontext(data)
    try:
        with source as folder:
            results = estimate_all(
                cfg, root, folder, model, "channels" if not wheel else "wheel", log=False
            )
    except InputError as exc:
        if not (skip_without_model and str(exc).startswith("cannot load model")):
            raise
        _no_model(root / cfg.spleem.out, metrics, str(exc))
        return
    if metrics is not None:
        from spinfer.io import atomic_write_text
        from spinfer.spleem.estimate import metrics_of

        atomic_write_text(metrics, json.dumps(metrics_of(results), indent=2) + "\n")
    for r in results:
        for warning in r.warnings:
            typer.echo(f"warning: {warning}", err=True)
    if as_json:
        echo_json({r.name: r.summary() for r in results})
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
