"""Shared fixtures: the reference cases and the repository's params.yaml."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]

# every test names its own store: a developer's MLFLOW_TRACKING_URI must not redirect them
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _no_exported_store():
    """mlflow.set_tracking_uri in a test exports MLFLOW_TRACKING_URI, which spinfer honours:
    one test's store must not become the next test's subprocesses' store."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def reference_cases() -> list[dict]:
    cases = json.loads((DATA / "energies.json").read_text())["cases"]
    spins = np.load(DATA / "spins.npz")
    for case in cases:
        case["spins"] = spins[case["name"]]
    return cases


@pytest.fixture(scope="session")
def repo_params() -> Path:
    return ROOT / "params.yaml"


def smooth_texture(seed: int, size: int = 12) -> np.ndarray:
    """A smooth, chiral-ish random texture (so DMI and dipolar terms are sizeable)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(size, size, 3))
    for _ in range(3):
        s = s + np.roll(s, 1, 0) + np.roll(s, 1, 1)
    return s / np.linalg.norm(s, axis=-1, keepdims=True)


def tiny_params(*overrides: str):
    """The repository's params.yaml on the tiny profile, plus ``section.key=value`` overrides."""
    from spinfer.config import load_params

    return load_params(ROOT / "params.yaml", ["profile=tiny", *overrides])


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """A tiny texture store, split file and noisy stores (training and test copies), made
    once by the real pipeline."""
    from spinfer.data.generate import generate
    from spinfer.data.noise import make_noisy
    from spinfer.data.split import make_splits

    root = tmp_path_factory.mktemp("tiny_data")
    params = tiny_params()
    paths = {
        "textures": root / "textures.zarr",
        "splits": root / "splits.json",
        "noisy": root / "noisy.zarr",
        "test_noise": root / "test_noise.zarr",
    }
    generate(params, paths["textures"], workers=2, progress=False)
    make_splits(paths["textures"], params.dataset.split, params.base.seed, paths["splits"])
    make_noisy(params, paths["textures"], paths["splits"], paths["noisy"], progress=False)
    make_noisy(params, paths["textures"], paths["splits"], paths["test_noise"], False, part="test")
    return paths


def make_project(root: Path, data: dict[str, Path], profile: str = "tiny") -> Path:
    """A project folder (params.yaml + artifacts/ linked to ``data``) to train in."""
    import yaml

    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    for path in data.values():
        target = root / "artifacts" / path.name
        if not target.exists():
            target.symlink_to(path)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = profile
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root / "params.yaml"


def logged_model_and_test_spins(root: Path, params, run_id: str, n: int):
    """A run's logged pyfunc model, the Ts = 0 test set and its first ``n`` textures."""
    import mlflow

    from spinfer.data.dataset import open_dataset
    from spinfer.tracking import resolve_uri

    mlflow.set_tracking_uri(resolve_uri(params.tracking.uri, root))
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    art = root / "artifacts"
    ds = open_dataset(
        "test", 0.0, art / "textures.zarr", splits=art / "splits.json",
        test_noise=art / "test_noise.zarr",
    )  # fmt: skip
    return model, ds, np.stack([ds.spins(i) for i in range(n)]).astype(np.float32)
