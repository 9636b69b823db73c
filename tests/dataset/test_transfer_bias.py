"""validation/transfer_bias.py: the PSF sweep that measures the blur a network assumes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "transfer_bias", ROOT / "validation" / "transfer_bias.py"
)
tb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tb)


def _stripes(n: int = 32, period: int = 16) -> np.ndarray:
    """Neel stripes along x with sharp (one-site) walls: Sz = +-1, the walls in plane."""
    theta = np.pi * (np.arange(n) // (period // 2))
    theta = theta + (np.arange(n) % (period // 2) == 0) * np.pi / 2  # a wall site
    s = np.zeros((1, n, n, 3))
    s[0, :, :, 0] = np.sin(theta)[:, None]
    s[0, :, :, 2] = np.cos(theta)[:, None]
    return s


def test_no_blur_is_the_texture_itself():
    s = _stripes()
    np.testing.assert_array_equal(tb.blurred(s, 0.0), s)


def test_uniform_state_is_unchanged_by_any_blur():
    s = np.zeros((2, 16, 16, 3))
    s[..., 2] = 1.0
    np.testing.assert_allclose(tb.blurred(s, 1.3), s, atol=1e-12)


def test_blur_keeps_unit_length_and_widens_walls():
    s = _stripes()
    prev = np.abs(s[..., 2]).mean()
    for sigma in (0.5, 1.0, 1.5):
        b = tb.blurred(s, sigma)
        np.testing.assert_allclose(np.linalg.norm(b, axis=-1), 1.0, atol=1e-12)
        sz = np.abs(b[..., 2]).mean()
        assert sz < prev  # more of the lattice lies in the (wider) walls
        prev = sz
    # periodic and per component: a translate blurs to the translate
    np.testing.assert_allclose(
        tb.blurred(np.roll(s, 5, axis=1), 1.0), np.roll(tb.blurred(s, 1.0), 5, axis=1)
    )


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        ([0.07, 0.05, 0.02, -0.01], 1.0 + 0.5 * 2.0 / 3.0),
        ([0.0, 0.1, 0.2, 0.3], 0.0),
        ([-0.02, 0.02, 0.03, 0.04], 0.25),
        ([0.07, 0.06, 0.05, 0.04], None),
    ],
)
def test_zero_crossing_interpolates_the_first_sign_change(y, expected):
    got = tb.zero_crossing([0.0, 0.5, 1.0, 1.5], y)
    assert got == pytest.approx(expected) if expected is not None else got is None
