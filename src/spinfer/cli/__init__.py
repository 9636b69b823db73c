"""The ``spinfer`` command: typer sub-apps by part over the library.

``spinfer physics|data|train|registry|spleem|doctor COMMAND`` (and ``spinfer predict``).
Every command loads what it needs, calls one library function and maps ``SpinferError`` to a
single ``error: ...`` line on stderr with exit status 1 (2 for bad arguments). Set
``SPINFER_TRACEBACK=1`` to see the full traceback instead. The flat names of earlier
releases (``spinfer generate``, ``spinfer register``, ...) stay as hidden aliases.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from spinfer.cli import data, physics, registry, train
from spinfer.cli.doctor import doctor_app
from spinfer.cli.spleem import spleem_app
from spinfer.errors import SpinferError

app = typer.Typer(
    name="spinfer",
    help="Read a magnetic domain image and say which Hamiltonian made it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


app.add_typer(physics.physics_app, name="physics")
app.add_typer(data.data_app, name="data")
app.add_typer(train.train_app, name="train")
app.add_typer(registry.registry_app, name="registry")
app.add_typer(spleem_app, name="spleem")
app.add_typer(doctor_app, name="doctor")
app.command("predict")(registry.predict)

#: flat command names of earlier releases -> the function behind the new one
ALIASES = {
    "energy": physics.energy, "simulate": physics.simulate, "show": physics.show,
    "kshape": physics.kshape, "preview": physics.preview,
    "generate": data.generate, "split": data.split, "noise": data.noise,
    "report": data.report, "verify": data.verify,
    "external": train.external, "tune": train.tune, "ablate": train.ablate,
    "compare": train.compare,
    "register": registry.register, "promote": registry.promote, "rollback": registry.rollback,
}  # fmt: skip
for _name, _function in ALIASES.items():
    app.command(_name, hidden=True)(_function)


#: what other libraries show, set before they are imported (they configure their loggers
#: then; a value the user exported wins)
QUIET_ENV = {"MLFLOW_LOGGING_LEVEL": "WARNING", "DASK_LOGGING__DISTRIBUTED": "error"}
#: other libraries' loggers and the level the command line shows them at
QUIET = {
    "mlflow": logging.WARNING, "alembic": logging.WARNING, "optuna": logging.WARNING,
    "mlflow.pyfunc": logging.ERROR,  # the CloudPickle notice on every logged model
    "distributed": logging.ERROR, "bokeh": logging.ERROR,
}  # fmt: skip


def configure_logging(debug: bool = False) -> None:
    """What the command line shows: spinfer's messages (INFO, DEBUG with
    SPINFER_TRACEBACK=1) on stderr as plain lines, other libraries' warnings only. The
    library itself only logs; it never sets a level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("spinfer")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.DEBUG if debug else logging.INFO)
    ours.propagate = False
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)


def main() -> None:
    """Console entry point: run the app with one-line errors."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    debug = os.environ.get("SPINFER_TRACEBACK") == "1"
    configure_logging(debug)
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
