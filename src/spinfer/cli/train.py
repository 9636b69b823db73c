"""The training commands: one run (``spinfer train``), the external set, the capacity
comparison, Optuna studies, symmetry ablations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import (
    DataOpt,
    ModelOpt,
    ParamsOpt,
    SetOpt,
    echo_json,
    load_config,
    sub_app,
)
from spinfer.errors import ConfigError

train_app = sub_app(
    "Train one run (spinfer train --model M --data D), or compare, tune and ablate runs.",
    no_args_is_help=False,
)


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
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
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="evaluate on the test copies right after training (the pipeline's evaluate "
            "stage does it apart)",
        ),
    ] = True,
) -> None:
    """Train one (model, training data) run, log it to MLflow, leave its calibrated
    predictor (model.pt) and evaluate it on every Ts.

    Runs as DDP when launched by ``torchrun --nproc_per_node=N``. With ``--tuned FILE`` the
    model, data and training settings come from a study's tuned.yaml and the run is written
    under artifacts/{models,eval}/tuned/ (a file no study has written yet: nothing to do).
    """
    if ctx.invoked_subcommand is not None:
        return
    from spinfer.train.distributed import Dist, teardown
    from spinfer.train.loop import train_run

    root = params.resolve().parent
    resolved = _resolve_run(params, overrides, model, data, tuned)
    if resolved is None:
        _no_tuned_run(params, overrides, root, tuned)
        return
    cfg, model, data = resolved
    if tuned is None and _left_out(cfg, model, data, root, "training"):
        return
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
            from spinfer.serve.publish import publish_run

            publish_run(cfg, model, data, root, result.run_id)
            if evaluate:
                _evaluate(cfg, model, data, root, result.run_id)
    finally:
        teardown()


def _evaluate(cfg, model: str, data: str, root: Path, run_id: str | None = None) -> None:
    from spinfer.train.evaluate import evaluate_and_log, summary_line
    from spinfer.train.runs import run_name

    ev = evaluate_and_log(cfg, model, data, root, run_id, progress=sys.stderr.isatty())
    typer.echo(summary_line(run_name(model, data), ev), err=True)


TunedOpt = Annotated[
    Path | None, typer.Option("--tuned", help="the study's winner (tuned.yaml) instead")
]


def _trained_run(stage: str, params: Path, overrides, model, data, tuned):
    """(config, model, data, root) of the trained run an evaluation command names; None
    (after saying why) when there is nothing to evaluate: no study winner yet, or a grid
    run the profile leaves out (its skipped outputs written)."""
    resolved = _resolve_run(params, overrides, model, data, tuned)
    if resolved is None:
        typer.echo(f"{stage}: {tuned} names no trained run yet; nothing to do", err=True)
        return None
    cfg, model, data = resolved
    root = params.resolve().parent
    if tuned is None and _left_out(cfg, model, data, root, stage):
        return None
    return cfg, model, data, root


@train_app.command()
def evaluate(
    model: ModelOpt = None,
    data: DataOpt = None,
    tuned: TunedOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Evaluate a trained run on the test copies at every Ts (noise.test_out): metrics,
    curves and figures under train.eval_out, added to the run's MLflow record."""
    found = _trained_run("evaluation", params, overrides, model, data, tuned)
    if found is not None:
        _evaluate(*found)


def _resolve_run(params: Path, overrides, model: str | None, data: str | None, tuned):
    """(config, model, data) of the run a command names (--model and --data, or a study's
    winner); None when the study's file names no run yet."""
    from spinfer.train.runs import check_run

    if tuned is not None:
        found = _tuned_run(params, overrides, tuned)
        if found is None:
            return None
        model, data, overrides = found
    if model is None or data is None:
        raise typer.BadParameter("give --model and --data, or --tuned FILE")
    cfg = load_config(params, overrides)
    if tuned is None:
        _check_names(model, data)
    else:  # the names came from the study's file, not the command line: a bad file
        check_run(model, data)
    return cfg, model, data


def _check_names(model: str, data: str) -> None:
    """--model and --data name a known model and training data, else a bad argument (2)."""
    from spinfer.train.runs import check_run

    try:
        check_run(model, data)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _tuned_run(params: Path, overrides: list[str] | None, tuned: Path):
    """(model, data, overrides) of a study's winner (tuned.yaml), or None before any study."""
    from spinfer.tune import load_tuned, tuned_run

    settings = load_tuned(tuned)
    if settings is None:
        return None
    model, data, extra = tuned_run(settings, load_config(params, overrides))
    return model, data, [*(overrides or []), *extra]


@train_app.command()
def external(
    model: ModelOpt = None,
    data: DataOpt = None,
    tuned: TunedOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Estimate the external test set (another simulator's textures) with a trained run."""
    from spinfer.train.external import evaluate_external, summary_line
    from spinfer.train.runs import run_name

    found = _trained_run("external", params, overrides, model, data, tuned)
    if found is None:
        return
    cfg, model, data, root = found
    metrics = evaluate_external(cfg, model, data, root)
    typer.echo(summary_line(run_name(model, data), metrics), err=True)


def _left_out(cfg, model: str, data: str, root: Path, stage: str) -> bool:
    """Record a grid run the profile does not train (train.grid); True when it is one."""
    from spinfer.train import grid

    why = grid.left_out(cfg, model)
    if why is None:
        return False
    grid.WRITE_SKIPPED[stage](cfg, model, data, root, why)
    typer.echo(f"{stage}: skipped: {why}", err=True)
    return True


def _no_tuned_run(params: Path, overrides, root: Path, tuned: Path) -> None:
    from spinfer.tune import write_no_trial

    why = write_no_trial(load_config(params, overrides), root, tuned)
    typer.echo(f"train: {why}; nothing to train", err=True)


@train_app.command()
def tune(
    study: Annotated[str, typer.Option("--study", help="study name (created or continued)")],
    trials: Annotated[int, typer.Option("--trials", help="trials to run now (>= 1)")],
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Run an Optuna study over architecture and training settings (see params.yaml: tune).

    Kill and rerun to continue; several processes may work on one study at once.
    """
    import optuna

    from spinfer.tune import tune as run

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial is ours to print
    if trials < 1:
        raise typer.BadParameter(f"--trials must be >= 1, got {trials}")
    cfg = load_config(params, overrides)
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


@train_app.command()
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

    cfg = load_config(params, overrides)
    _check_names(model, data)
    summary = run(cfg, params.resolve().parent, model, data, seeds, out)
    if as_json:
        echo_json(summary)
        return
    for line in summary_lines(summary):
        typer.echo(line)


@train_app.command()
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

    cfg = load_config(params, overrides)
    result = run(cfg, params.resolve().parent, figure, metrics)
    checks = {k: v for k, v in result.items() if isinstance(v, bool)}
    typer.echo(
        "compare: " + ", ".join(f"{k}={v}" for k, v in checks.items()) + f" -> {figure}",
        err=True,
    )
    if result["skipped"]:
        typer.echo(f"compare: not trained (train.grid): {', '.join(result['skipped'])}", err=True)
