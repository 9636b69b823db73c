"""Where a run of the capacity grid lives and what it trains on: names, folders, stores.

A run is one (model, training data) pair, named ``<model>-<data>``; its checkpoints and
predictor are under ``train.out/<run>/``, its evaluation under ``train.eval_out/<run>/``; an
ensemble member k is a run of its own under ``<run>/member<k>/``, seeded base.seed + k.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from spinfer.config import MODEL_NAMES, TRAINING_DATA, Params
from spinfer.data.dataset import FreshNoiseDataset, TextureDataset, open_dataset
from spinfer.errors import ConfigError, InputError
from spinfer.models.networks import is_known_model


def run_name(model: str, data: str) -> str:
    return f"{model}-{data}"


def check_run(model: str, data: str) -> None:
    if not is_known_model(model):
        raise ConfigError(
            f"unknown model '{model}' (known: {', '.join(MODEL_NAMES)} or a timm model name)"
        )
    if data not in TRAINING_DATA:
        raise ConfigError(f"unknown training data '{data}' (known: {', '.join(TRAINING_DATA)})")


@dataclass(frozen=True)
class RunPaths:
    root: Path
    name: str
    out: Path
    eval_out: Path

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "best.pt"


def run_paths(params: Params, model: str, data: str, root: Path) -> RunPaths:
    name = run_name(model, data)
    return RunPaths(
        root, name, root / params.train.out / name, root / params.train.eval_out / name
    )


def data_paths(params: Params, root: Path) -> dict[str, Path]:
    return {
        "textures": root / params.dataset.out,
        "noisy": root / params.noise.out,
        "splits": root / "artifacts" / "splits.json",
        "test_noise": root / params.noise.test_out,
    }


def open_training_data(
    params: Params, data: str, root: Path
) -> tuple[TextureDataset, TextureDataset]:
    """Train and val sets of the chosen variant (``noisy``: a ~ U[0, 1]; ``clean``). Under
    ``train.fresh_noise`` noisy training draws a new copy of every texture each epoch; its
    validation keeps the stored copies, so that checkpoints compare on fixed images."""
    paths = data_paths(params, root)
    variant = "noisy" if data == "noisy" else "clean"
    fresh = variant == "noisy" and params.train.fresh_noise
    try:
        train = open_dataset("train", "clean" if fresh else variant, **paths)
        val = open_dataset("val", variant, **paths)
    except InputError as exc:
        raise InputError(f"the dataset lacks what training needs: {exc}") from None
    if fresh:
        noise = params.noise
        train = FreshNoiseDataset(
            train, params.base.seed, noise.amplitude, noise.microscope, noise.psf_sigma
        )
    return train, val


def member_paths(paths: RunPaths, k: int) -> RunPaths:
    return RunPaths(
        paths.root, f"{paths.name}/member{k}", paths.out / f"member{k}", paths.eval_out
    )


def member_params(params: Params, k: int) -> Params:
    """Member k of an ensemble: seeded base.seed + k, trained as a single model."""
    return dataclasses.replace(
        params,
        base=dataclasses.replace(params.base, seed=params.base.seed + k),
        train=dataclasses.replace(params.train, ensemble=None),
    )
