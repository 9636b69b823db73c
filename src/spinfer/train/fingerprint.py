"""A run's fingerprint: what decides its weights. A checkpoint is resumed only under the same
one, so a changed config, dataset or training code starts afresh instead of continuing
someone else's optimizer state."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from spinfer.config import Params
from spinfer.data.store import MANIFEST
from spinfer.io import source_hash
from spinfer.train.runs import data_paths

#: the modules whose code decides a run's weights (beside its config and data)
TRAINING_SOURCES = (
    "train/loop.py", "train/batches.py", "models/networks.py", "train/runs.py",
    "data/dataset.py", "data/symmetry.py",
    "data/noise.py", "data/microscope.py",  # train.fresh_noise draws the copies in training
)  # fmt: skip


def training_source_hash() -> str:
    """sha256 of TRAINING_SOURCES: a changed training loop, model, sampler or symmetry
    does not resume a checkpoint written by the old one."""
    return source_hash("spinfer", TRAINING_SOURCES)


def fingerprint(params: Params, model: str, data: str, root: Path) -> str:
    """What decides the run's weights: a checkpoint is resumed only under the same one
    (config, model, data, stores and the training code).

    The number of epochs is left out on purpose: asking for more epochs continues a run.
    """
    train = dataclasses.asdict(params.train)
    for key in (
        "loader_workers",
        "preload",
        "device",
        "out",
        "eval_out",
        "epochs",
        "tta",
        "ensemble",
    ):
        train.pop(key)
    fresh = train.pop("fresh_noise") and data == "noisy"
    stores = data_paths(params, root)
    manifests = [
        hashlib.sha256((stores[k] / MANIFEST).read_bytes()).hexdigest()
        for k in ("textures", "noisy")  # the test copies decide nothing about the weights
        if (stores[k] / MANIFEST).is_file()
    ]
    what = {"train": train, "model": model, "data": data, "seed": params.base.seed}
    if fresh:  # the copies are drawn in training
        noise = params.noise
        what["fresh_noise"] = [list(noise.amplitude), noise.microscope, list(noise.psf_sigma)]
    if params.train.lr_schedule != "constant":  # the schedule's horizon shapes every step
        what["epochs"] = params.train.epochs.get(model, 1)
    what["stores"] = manifests
    what["code"] = training_source_hash()
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
