"""The virtual microscope: a recorded texture reads back to unit vectors close to the truth,
its settings are drawn from the documented ranges, and the shipped sample is one member."""

from __future__ import annotations

import numpy as np
import pytest

from spinfer.data.microscope import (
    MICROSCOPE,
    Microscope,
    calibrate,
    calibrate_channels,
    draw_microscope,
    renormalize,
    unit_length_fit,
)
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


def _domains(size: int = 60, period: float = 30.0, width: float = 0.5) -> np.ndarray:
    """An out-of-plane domain texture with Neel walls (in-plane part along the gradient of
    the domain function, peaking only inside the walls)."""
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    k = 2 * np.pi / period
    f = np.sin(k * x) + np.sin(k * y + 0.7)
    grad = np.stack([np.cos(k * x), np.cos(k * y + 0.7)], axis=-1)
    grad /= np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-12)
    theta = 2 * np.arctan(np.exp(f / (k * width)))
    return np.concatenate([np.sin(theta)[..., None] * grad, np.cos(theta)[..., None]], axis=-1)


def _linear(spins: np.ndarray, offset, gain) -> np.ndarray:
    pairs = enumerate(zip(offset, gain, strict=True))
    return np.stack([o + g * spins[..., c] for c, (o, g) in pairs])


@pytest.mark.parametrize("make", [lambda: smooth_texture(6, 40), _domains])
def test_unit_length_fit_recovers_offset_and_gain(make):
    spins = make()
    offset, gain = (1200.0, 90.0, -3.0), (400.0, 35.0, 0.02)
    fit = unit_length_fit(_linear(spins, offset, gain))
    assert fit is not None
    np.testing.assert_allclose(fit[0], offset, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit[1], gain, rtol=1e-7)
    np.testing.assert_allclose(calibrate_channels(_linear(spins, offset, gain)), spins, atol=1e-7)


def test_joint_calibration_keeps_the_walls_in_plane_scale_where_percentiles_stretch_it():
    """Per-channel percentiles map each in-plane channel's 99th percentile to 1 although the
    in-plane part of an out-of-plane texture reaches 1 only at wall centres, if at all."""
    spins = _domains()
    grey = _linear(spins, (0.5, 0.45, 0.55), (0.3, 0.4, 0.35))
    joint = renormalize(calibrate_channels(grey))
    percentile = renormalize(np.stack([calibrate(c) for c in grey], axis=-1))
    inplane = lambda v: np.linalg.norm(v[..., :2], axis=-1).mean()  # noqa: E731
    assert inplane(joint) == pytest.approx(inplane(spins), rel=1e-6)
    assert inplane(percentile) > 1.1 * inplane(spins)  # walls read wider


def test_joint_calibration_is_closer_to_the_truth_through_a_blurred_noisy_instrument():
    spins = _domains()
    scope = Microscope(0.8, (0.5, 0.45, 0.55), (0.3, 0.4, 0.35), 400.0, 12)
    grey = scope.record(spins, np.random.default_rng(3)).astype(np.float64)
    joint = renormalize(calibrate_channels(grey))
    percentile = renormalize(np.stack([calibrate(c) for c in grey], axis=-1))
    assert unit_length_fit(grey) is not None
    err = lambda v: np.abs(v - spins).mean()  # noqa: E731
    assert err(joint) < 0.8 * err(percentile)


def test_unit_length_fit_ignores_dead_pixels_and_keeps_missing_ones_missing():
    spins = _domains()
    grey = _linear(spins, (0.5, 0.45, 0.55), (0.3, 0.4, 0.35))
    clean = unit_length_fit(grey)
    grey[0, 3, 4] = -1e4  # dead pixel
    grey[2, 10, 10] = np.nan  # missing pixel
    fit = unit_length_fit(grey)
    np.testing.assert_allclose(fit[0], clean[0], atol=1e-9)
    np.testing.assert_allclose(fit[1], clean[1], rtol=1e-9)
    vec = calibrate_channels(grey)
    assert np.isnan(vec[10, 10, 2]) and np.isfinite(vec[10, 10, :2]).all()
    assert vec[3, 4, 0] == -1.0  # clipped like the percentile reading


def test_without_a_unit_length_fit_the_channels_fall_back_to_percentiles():
    """A uniform in-plane state determines no gains: each channel reads by its percentiles."""
    rng = np.random.default_rng(0)
    grey = np.stack([np.full((30, 30), 0.8), np.full((30, 30), 0.2), np.full((30, 30), 0.5)])
    grey = grey + rng.normal(0.0, 1e-3, grey.shape)
    assert unit_length_fit(grey) is None
    expected = np.stack([calibrate(c) for c in grey], axis=-1)
    np.testing.assert_array_equal(calibrate_channels(grey), expected)
    assert unit_length_fit(np.ones((3, 30, 30))) is None


def test_a_fallback_image_sets_the_scale_where_the_channels_own_fit_does_not_hold():
    """Channels whose fit fails (a uniform image) read with the offsets and gains of the
    fallback grey levels of the same image, else by the fallback's percentiles."""
    spins = _domains()
    offset, gain = (0.5, 0.45, 0.55), (0.3, 0.4, 0.35)
    recorded = _linear(spins, offset, gain)
    flat = np.stack([np.full(spins.shape[:2], o) for o in offset])
    assert unit_length_fit(flat) is None
    np.testing.assert_allclose(calibrate_channels(flat, recorded), 0.0, atol=1e-7)
    np.testing.assert_array_equal(calibrate_channels(recorded, flat), calibrate_channels(recorded))
    rng = np.random.default_rng(1)
    uniform, other = (flat + rng.normal(0.0, 1e-3, flat.shape) for _ in range(2))
    assert unit_length_fit(uniform) is None and unit_length_fit(other) is None
    pairs = zip(uniform, other, strict=True)
    expected = np.stack([calibrate(c, reference=r) for c, r in pairs], axis=-1)
    np.testing.assert_array_equal(calibrate_channels(uniform, other), expected)
