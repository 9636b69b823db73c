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


def test_prior_bound_gives_uniform_states_the_in_plane_grid_median():
    """K < Kshape: the grid points whose uniform ground state is in plane."""
    grid = np.array([[0.0, 1.0, 1.0], [1.0, 3.0, 1.0], [2.0, 9.0, 1.0], [4.0, 8.0, 2.0]])
    prior = floor.in_plane_prior(grid, kshape_factor=5.0)  # in plane: rows 0, 1 and 3
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    np.testing.assert_allclose(prior, (np.array([1.0, 3.0, 1.0]) - lo) / (hi - lo))


def test_textured_error_budget_reaches_the_target_exactly():
    rng = np.random.default_rng(1)
    y = rng.random((30, 3))
    uniform = np.arange(30) < 12
    constant = np.full(3, 0.5)
    needed = floor.textured_mae_needed(y, uniform, constant, 0.7)
    err = np.abs(y - constant) * uniform[:, None] + needed * ~uniform[:, None]
    np.testing.assert_allclose(err.sum(axis=0) / np.abs(0.5 - y).sum(axis=0), 0.7)
    bound = floor.information_floor(y, uniform, constant)
    np.testing.assert_allclose(
        bound, (np.abs(y - 0.5) * uniform[:, None]).sum(0) / np.abs(0.5 - y).sum(0)
    )
