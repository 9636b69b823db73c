"""Experimental-image path: physical units, ingest of channel and colour-wheel images,
domain-wall tanh fits and the domain period, on images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spinfer.errors import InputError
from spinfer.spleem.ingest import from_channels, from_wheel, panels, wheel_rgb
from spinfer.spleem.units import MU_B, Film, to_physical
from spinfer.spleem.walls import domain_period, fit_walls


def test_dipolar_scale_of_the_paper_film():
    film = Film()  # d_Co = 2, d_Ni = 6 monolayers; 1.7 and 0.6 muB; a = 2.49 A
    assert film.dipolar_mev() == pytest.approx(0.171, rel=5e-3)
    # independent: mu0/4pi (7 muB)^2 / a^3 in meV
    expected = 1e-7 * (7 * MU_B) ** 2 / (2.49e-10) ** 3 / 1.602176634e-22
    assert film.dipolar_mev() == pytest.approx(expected, rel=1e-12)
    out = to_physical(np.array([0.2]), np.array([0.5]), np.array([0.1]), film)
    assert out["J_meV"][0] == pytest.approx(film.dipolar_mev() / 0.1)
    assert out["lambda_meV"][0] == pytest.approx(film.dipolar_mev() * 2.0)
    assert out["K_meV"][0] == pytest.approx(film.dipolar_mev() * 5.0)


def _texture(n: int = 120, period: float = 24.0, w: float = 2.2) -> np.ndarray:
    """Neel stripes along x with tanh walls of width parameter w."""
    x = np.arange(n)[:, None] * np.ones((1, n))
    phase = (x % period) - period / 2
    sz = -np.tanh((np.abs(phase) - period / 4) / w)
    sx = np.sqrt(1 - sz**2) * np.sign(phase)
    return np.stack([sx, np.zeros_like(sx), sz], axis=-1)


def _write_channels(tmp_path, spins, bits=16):
    paths = []
    rng = np.random.default_rng(0)
    for i, name in enumerate(("sx", "sy", "sz")):
        gain, offset = 0.3 + 0.1 * i, 0.4
        grey = offset + gain * spins[..., i] + 0.005 * rng.normal(size=spins.shape[:2])
        if bits == 16:
            img = Image.fromarray((np.clip(grey, 0, 1) * 65535).astype(np.uint16))
        else:
            img = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8))
        path = tmp_path / f"{name}.png"
        img.save(path)
        paths.append(path)
    return paths


def test_grey_channels_become_unit_vectors(tmp_path):
    spins = _texture()
    spins[..., 1] = 0.3 * np.sin(np.arange(120) / 7.0)[None, :]  # some Sy contrast
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    m = from_channels(*_write_channels(tmp_path, spins))
    assert m.spins.shape == (120, 120, 3) and m.mask.mean() > 0.95
    norm = np.linalg.norm(m.spins, axis=-1)
    np.testing.assert_allclose(norm, 1.0, atol=1e-5)
    corr = np.corrcoef(m.spins[..., 2].ravel(), spins[..., 2].ravel())[0, 1]
    assert corr > 0.98


def test_colour_wheel_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    spins = rng.normal(size=(110, 105, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    rgb = (wheel_rgb(spins) * 65535).round().astype(np.uint16)
    np.save(tmp_path / "wheel.npy", rgb.astype(np.float64) / 65535)
    m = from_wheel(tmp_path / "wheel.npy")
    good = m.mask & (np.abs(spins[..., 2]) < 0.99)
    assert good.mean() > 0.95
    np.testing.assert_allclose(m.spins[good], spins[good], atol=2e-3)
    Image.fromarray((wheel_rgb(spins) * 255).astype(np.uint8)).save(tmp_path / "wheel.png")
    m8 = from_wheel(tmp_path / "wheel.png")
    assert np.abs(m8.spins[good] - spins[good]).max() < 0.1


def test_panels_on_a_grid_with_stride(tmp_path):
    m = from_channels(*_write_channels(tmp_path, _texture(n=250)))
    tiles, corners = panels(m, size=100, stride=50)
    assert tiles.shape == (16, 100, 100, 3) and corners[0] == (0, 0) and corners[-1] == (150, 150)


def test_bad_images_are_named(tmp_path):
    small = _write_channels(tmp_path, _texture(n=80))
    with pytest.raises(InputError, match="smaller than 100x100"):
        from_channels(*small)
    big = tmp_path / "big"
    big.mkdir()
    sx, sy, _ = _write_channels(big, _texture(n=120))
    other = tmp_path / "other"
    other.mkdir()
    _, _, sz = _write_channels(other, _texture(n=130))
    with pytest.raises(InputError, match="channels differ in shape"):
        from_channels(sx, sy, sz)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"junk\.png: cannot read image"):
        from_channels(junk, sy, sx)
    nan = np.full((120, 120), np.nan)
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", nan)
    with pytest.raises(InputError, match="every pixel is masked"):
        from_channels(tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy")


@pytest.mark.parametrize("w", [1.5, 2.24, 3.0])
def test_tanh_wall_width_is_recovered(w):
    sz = _texture(n=120, period=40.0, w=w)[..., 2]
    fit = fit_walls(sz, periodic=True, half=10)
    assert len(fit.w) > 50
    assert fit.w_median == pytest.approx(w, rel=0.05)
    assert fit.width(25.0) == pytest.approx(np.pi * w * 25.0, rel=0.05)


def test_domain_period_of_stripes():
    sz = _texture(n=120, period=24.0)[..., 2]
    assert domain_period(sz) == pytest.approx(24.0, rel=0.1)
