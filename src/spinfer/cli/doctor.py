"""Checks of the platform itself: the fault-injection scoreboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import sub_app

doctor_app = sub_app("Checks of the platform itself.")


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
