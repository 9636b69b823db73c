"""Which runs of the capacity grid a profile trains, and the record of one it leaves out.

A profile's ``train.grid`` names the grid models it trains. The pipeline's stages are the
same for every profile, so a stage whose model is left out still runs: it writes the
outputs DVC expects (a status, an empty curve, a metrics file that says ``skipped``) and
no MLflow run, so the experiment never shows a model its budget could not train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spinfer.config import MODEL_NAMES, Params
from spinfer.io import atomic_write_text
from spinfer.train.runs import run_name


def left_out(params: Params, model: str) -> str | None:
    """Why the active profile does not train ``model`` (None: it does). Models outside the
    capacity grid (any other timm name, a study's winner) are never left out."""
    if model not in MODEL_NAMES or model in params.train.grid:
        return None
    return (
        f"{model} is not in train.grid ({', '.join(params.train.grid)}) of profile "
        f"{params.profile}: its training budget there leaves it no better than the mean "
        "predictor"
    )


def is_skipped(record: dict[str, Any]) -> bool:
    """True for a metrics file written by :func:`write_skipped_training`."""
    return bool(record.get("skipped"))


def _write(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def write_not_trained(folder: Path, why: str, **extra: Any) -> None:
    """``folder/status.json``: a stage's record that it trained nothing, and why."""
    _write(folder / "status.json", {"trained": False, **extra, "reason": why})


def write_skipped_training(params: Params, model: str, data: str, root: Path, why: str) -> None:
    """The train stage's output for a run the profile leaves out."""
    write_not_trained(root / params.train.out / run_name(model, data), why, skipped=True)


def write_skipped_evaluation(params: Params, model: str, data: str, root: Path, why: str) -> None:
    """The evaluate stage's outputs for a run the profile leaves out."""
    evald = root / params.train.eval_out / run_name(model, data)
    (evald / "figures").mkdir(parents=True, exist_ok=True)
    _write(evald / "metrics.json", {"skipped": True, "reason": why})
    _write(evald / "mae_vs_ts.json", [])


def write_skipped_external(params: Params, model: str, data: str, root: Path, why: str) -> None:
    """The external stage's outputs for a run the profile leaves out."""
    evald = root / params.train.eval_out / run_name(model, data)
    (evald / "external").mkdir(parents=True, exist_ok=True)
    _write(evald / "external.json", {"skipped": True, "reason": why})


#: stage -> what it writes for a run the profile leaves out
WRITE_SKIPPED = {
    "training": write_skipped_training,
    "evaluation": write_skipped_evaluation,
    "external": write_skipped_external,
}
