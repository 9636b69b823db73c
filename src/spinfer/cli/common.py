"""What every command shares: the common options, the config loader, JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="resnet18, resnet50, cnn (or a timm name)")
]
DataOpt = Annotated[str | None, typer.Option("--data", help="training data: noisy or clean")]


def load_config(params: Path, overrides: list[str] | None):
    """The typed config of ``params`` with ``--set`` overrides applied."""
    from spinfer.config import load_params

    return load_params(params, overrides or ())


def echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=None))


def sub_app(help_text: str, **kwargs) -> typer.Typer:
    """A part's command group (help when called without a command, unless told otherwise)."""
    return typer.Typer(
        help=help_text, **{"no_args_is_help": True, "add_completion": False, **kwargs}
    )
