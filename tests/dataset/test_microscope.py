"""The virtual microscope: a recorded texture reads back to unit vectors close to the truth,
its settings are drawn from the documented ranges, and the shipped sample is one member."""

from __future__ import annotations

import numpy as np
import pytest

from spinfer.data.microscope import MICROSCOPE, Microscope, calibrate, draw_microscope
from spinfer.spleem.sample import OFFSET_GAIN, forward
from tests.conftest import smooth_texture


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(-1).mean())


def test_a_clean_instrument_reads_back_the_texture():
    spins = smooth_texture(1, 48)
    scope = Microscope(0.0, (0.5, 0.5, 0.5), (0.45, 0.45, 0.45), 1e6, 16)
    seen = scope.view(spins, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(seen, axis=-1), 1.0, atol=1e-12)
    assert _overlap(seen, spins) > 0.9


def test_blur_and_few_electrons_degrade_the_image():
    spins = smooth_texture(2, 48)
    good = Microscope(0.0, (0.5,) * 3, (0.4,) * 3, 1e5, 16).view(spins, np.random.default_rng(0))
    poor = Microscope(1.5, (0.5,) * 3, (0.4,) * 3, 30.0, 8).view(spins, np.random.default_rng(0))
    assert _overlap(poor, spins) < _overlap(good, spins)


def test_record_quantises_to_the_bit_depth():
    spins = smooth_texture(3, 32)
    for bits in (8, 12):
        grey = Microscope(0.5, (0.5,) * 3, (0.4,) * 3, 500.0, bits).record(
            spins, np.random.default_rng(1)
        )
        assert grey.shape == (3, 32, 32) and grey.min() >= 0 and grey.max() <= 2**bits - 1


def test_draws_stay_in_the_documented_ranges_and_are_seeded():
    draws = [draw_microscope(np.random.default_rng(k)) for k in range(200)]
    assert draws[7] == draw_microscope(np.random.default_rng(7))
    for d in draws:
        assert MICROSCOPE["psf_sigma"][0] <= d.psf_sigma <= MICROSCOPE["psf_sigma"][1]
        assert all(MICROSCOPE["offset"][0] <= o <= MICROSCOPE["offset"][1] for o in d.offset)
        assert all(MICROSCOPE["gain"][0] <= g <= MICROSCOPE["gain"][1] for g in d.gain)
        assert MICROSCOPE["counts"][0] <= d.counts <= MICROSCOPE["counts"][1]
        assert d.bits in MICROSCOPE["bits"]
    assert len({d.bits for d in draws}) == 3


def test_the_shipped_sample_is_one_fixed_member_of_the_family():
    spins = smooth_texture(4, 40)
    offsets, gains = zip(*OFFSET_GAIN, strict=True)
    member = Microscope(0.8, offsets, gains, 200.0, 8).record(spins, np.random.default_rng(5))
    np.testing.assert_array_equal(forward(spins, 0.8, 200.0, 5), member.astype(np.uint8))


def test_calibrate_ignores_outliers_and_reads_flat_channels_as_zero():
    channel = np.linspace(0.0, 1.0, 1000)
    channel[0] = -50.0  # a dead pixel does not set the scale
    out = calibrate(channel)
    assert out[500] == pytest.approx(0.0, abs=0.01) and out.max() == 1.0
    np.testing.assert_array_equal(calibrate(np.full(10, 3.0)), 0.0)
