"""Deconvolution of a declared instrument blur (spinfer.spleem.deconvolve) and its place in
the reader (spinfer.spleem.ingest)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from spinfer.data.microscope import Microscope
from spinfer.errors import InputError
from spinfer.spleem.deconvolve import (
    check_psf,
    deconvolve_channels,
    noise_sigma,
    otf,
    wiener,
)
from spinfer.spleem.ingest import from_channels, from_wheel, to_image, wheel_rgb
from spinfer.spleem.walls import fit_walls
from tests.conftest import smooth_texture


def _walls(n: int = 96, width: float = 1.5, phi: float = 0.0) -> np.ndarray:
    """(n, n, 3) stripes along x with tanh walls of ``width`` px (periodic), turning in the
    plane at angle ``phi`` to x (0: Neel)."""
    x = np.arange(n)[:, None] * np.ones((1, n))
    theta = 2 * np.arctan(np.exp((x - n / 4) / width)) - 2 * np.arctan(
        np.exp((x - 3 * n / 4) / width)
    )
    inplane = np.sin(theta)
    return np.stack([inplane * np.cos(phi), inplane * np.sin(phi), np.cos(theta)], axis=-1)


@pytest.mark.parametrize("shape", ["gaussian", "lorentzian"])
def test_otf_is_one_at_zero_frequency_and_falls(shape):
    h = otf((64, 48), shape, 1.2)
    assert h[0, 0] == 1.0 and np.all(h > 0) and np.all(h <= 1)
    assert h[0, 10] < h[0, 5] < h[0, 1]
    np.testing.assert_array_equal(otf((8, 8), shape, 0.0), 1.0)


def test_gaussian_otf_is_the_gaussian_filter():
    """Multiplying by the OTF blurs as scipy's (independent) Gaussian filter does."""
    image = np.random.default_rng(0).normal(size=(64, 64))
    ours = np.real(np.fft.ifft2(np.fft.fft2(image) * otf(image.shape, "gaussian", 1.3)))
    theirs = gaussian_filter(image, 1.3, mode="wrap", truncate=8.0)
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.abs(theirs).max())


def test_lorentzian_otf_is_the_cauchy_kernel():
    """The 2-D Cauchy kernel w / (2 pi (r^2 + w^2)^1.5), summed on a large periodic grid,
    has the transfer function exp(-2 pi w f)."""
    n, w = 512, 1.5
    y = np.minimum(np.arange(n), n - np.arange(n))[:, None]
    x = np.minimum(np.arange(n), n - np.arange(n))[None, :]
    kernel = w / (2 * np.pi * (x**2 + y**2 + w**2) ** 1.5)
    measured = np.real(np.fft.fft2(kernel / kernel.sum()))
    np.testing.assert_allclose(measured[0, :64], otf((n, n), "lorentzian", w)[0, :64], atol=0.02)


def test_noise_sigma_ignores_edges():
    rng = np.random.default_rng(1)
    image = np.where(np.arange(128)[:, None] < 64, 100.0, 300.0) * np.ones((128, 128))
    noisy = image + rng.normal(0, 3.0, image.shape)
    assert noise_sigma(noisy) == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("shape", ["gaussian", "lorentzian"])
def test_a_known_blur_is_undone(shape):
    """A noiseless blurred wall texture, deconvolved by its PSF, is far closer to the truth
    than the blurred one (away from the image edges, which the mirror only approximates)."""
    spins = _walls()
    h = otf(spins.shape[:2], shape, 1.0)
    grey = np.stack(
        [0.5 + 0.3 * np.real(np.fft.ifft2(np.fft.fft2(spins[..., c]) * h)) for c in range(3)]
    )
    sharp = deconvolve_channels(grey, shape, 1.0)
    truth = 0.5 + 0.3 * np.moveaxis(spins, -1, 0)
    inner = (slice(None), slice(12, -12), slice(12, -12))
    before = np.abs(grey - truth)[inner].max()
    after = np.abs(sharp - truth)[inner].max()
    assert after < 0.25 * before, (before, after)


def test_gain_and_offset_commute_and_bad_pixels_stay_bad():
    rng = np.random.default_rng(2)
    channel = gaussian_filter(rng.normal(size=(60, 70)), 2.0) + rng.normal(0, 0.01, (60, 70))
    base = wiener(channel, "gaussian", 1.0, 0.05)
    np.testing.assert_allclose(wiener(3.0 * channel + 7.0, "gaussian", 1.0, 0.05), 3 * base + 7)
    assert base.mean() == pytest.approx(channel.mean())
    holed = channel.copy()
    holed[5, 5] = np.nan
    out = wiener(holed, "gaussian", 1.0, 0.05)
    assert np.isnan(out[5, 5]) and np.isfinite(np.delete(out.ravel(), 5 * 70 + 5)).all()
    three = np.stack([channel] * 3)
    np.testing.assert_array_equal(deconvolve_channels(three, "gaussian", 0), three)


@pytest.mark.parametrize("counts", [3e3, 1e5])
def test_declared_psf_reads_walls_closer_to_their_width(tmp_path, counts):
    """Through a virtual microscope with a 1.2 px Gaussian PSF, the reader told that PSF
    fits tanh walls closer to their true width than the reader that is not; in-plane
    components stay where they were (the calibration holds through the deconvolution)."""
    spins = _walls(n=120, width=2.0, phi=0.5)
    scope = Microscope(1.2, (0.5, 0.45, 0.55), (0.3, 0.4, 0.35), counts, 16)
    grey = scope.record(to_image(spins), np.random.default_rng(3))
    paths = []
    for name, channel in zip(("sx", "sy", "sz"), grey, strict=True):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(channel.astype(np.uint16)).save(paths[-1])
    plain = from_channels(*paths)
    told = from_channels(*paths, psf_shape="gaussian", psf_width=1.2)
    truth = fit_walls(spins[..., 2], periodic=False).w_median

    def excess(m):
        return fit_walls(m.spins[..., 2], m.mask, periodic=False).w_median - truth

    assert excess(plain) > 0 and abs(excess(told)) < 0.75 * excess(plain)
    inner = (slice(12, -12), slice(12, -12))
    profile = told.spins[inner].mean(axis=1) - spins[inner].mean(axis=1)
    assert np.abs(profile).mean() < 0.05


def test_bad_psf_and_a_wheel_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown PSF shape 'airy'"):
        check_psf("airy", 1.0)
    with pytest.raises(InputError, match="PSF width"):
        check_psf("gaussian", -1.0)
    with pytest.raises(InputError, match="PSF width"):
        check_psf("gaussian", float("nan"))
    path = tmp_path / "wheel.png"
    rgb = wheel_rgb(smooth_texture(0, 100))
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    assert from_wheel(path, psf_width=0.0).spins.shape == (100, 100, 3)
    with pytest.raises(InputError, match="colour-wheel image cannot be deconvolved"):
        from_wheel(path, psf_width=1.0)
