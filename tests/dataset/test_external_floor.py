"""validation/external_floor.py: the oracle floor under every run's external ratio."""

from __future__ import annotations

import importlib.util

import numpy as np

from spinfer.data.external import ExternalSet
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "external_floor", ROOT / "validation" / "external_floor.py"
)
floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(floor)


def test_no_uniform_texture_means_no_floor():
    y = np.random.default_rng(0).random((20, 3))
    np.testing.assert_array_equal(floor.information_floor(y, np.zeros(20, bool)), 0.0)


def test_all_uniform_gives_the_best_constant_over_the_centre():
    y = np.array([[0.1, 0.5, 0.9], [0.3, 0.5, 0.9], [0.9, 0.5, 0.1]])
    got = floor.information_floor(y, np.ones(3, bool))
    median = np.median(y, axis=0)
    centre = np.abs(0.5 - y).mean(axis=0)
    expected = np.abs(y - median).mean(axis=0)[[0, 2]] / centre[[0, 2]]
    np.testing.assert_allclose(got[[0, 2]], expected)
    assert np.isnan(got[1])  # every truth at the centre: nothing to beat


def test_uniform_mask_finds_uniform_states():
    spins = np.zeros((2, 8, 8, 3), np.float32)
    spins[..., 0] = 1.0  # uniform in plane
    spins[1, :4, :, 0], spins[1, :4, :, 2] = 0.0, 1.0  # half up: textured
    ext = ExternalSet("t", spins, np.zeros((2, 3)))
    np.testing.assert_array_equal(floor.uniform_mask(ext, 0.98), [True, False])
