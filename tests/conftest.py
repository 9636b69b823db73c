"""Shared fixtures: the reference cases and the repository's params.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


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
