"""Checks of the platform itself: the configuration, and the fault-injection scoreboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import ParamsOpt, SetOpt, load_config, sub_app

doctor_app = sub_app("Checks of the platform itself.")


@doctor_app.command("config")
def doctor_config(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the resolved configuration here")
    ] = None,
) -> None:
    """Check params.yaml (the active profile applied, --set overrides too) and optionally
    write the resolved configuration; a wrong key, type or profile is a one-line error."""
    from spinfer.config import resolved_yaml
    from spinfer.io import atomic_write_text

    cfg = load_config(params, overrides)
    if out is not None:
        atomic_write_text(out, resolved_yaml(cfg))
    typer.echo(f"config: {params} is valid (profile {cfg.profile})", err=True)


@doctor_app.command("faults")
def doctor_faults(
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
        for outcome in run_scenarios(root, scenario):
            outcomes.append(outcome)
            mark = "pass" if outcome.passed else "FAIL"
            typer.echo(f"[{mark}] {outcome.scenario}: {outcome.observed}", err=True)
    finally:
        if work is None:
            shutil.rmtree(root, ignore_errors=True)
    typer.echo(scoreboard(outcomes))
    if not all(o.passed for o in outcomes) or any(o.lost_data for o in outcomes):
        raise typer.Exit(1)
