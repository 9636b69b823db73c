"""Experimental-image path: physical units, ingest of channel and colour-wheel images,
domain-wall tanh fits and the domain period, on images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spinfer.errors import InputError
from spinfer.physics.observables import sz_period
from spinfer.spleem.ingest import (
    ORIENTATIONS,
    from_channels,
    from_wheel,
    panels,
    to_image,
    to_lattice,
    wheel_rgb,
)
from spinfer.spleem.units import MU_B, Film, to_physical
from spinfer.spleem.walls import fit_walls, wall_character
from tests.conftest import DATA, smooth_texture


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


def _write_channels(tmp_path, spins, bits=16, orientation="xy-up"):
    """Grey-scale Sx, Sy, Sz images of lattice ``spins`` as an instrument in ``orientation``
    writes them (unknown gain and offset per channel, a little noise)."""
    paths = []
    rng = np.random.default_rng(0)
    image = to_image(spins, orientation)
    for i, name in enumerate(("sx", "sy", "sz")):
        gain, offset = 0.3 + 0.1 * i, 0.4
        grey = offset + gain * image[..., i] + 0.005 * rng.normal(size=image.shape[:2])
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
    rgb = (wheel_rgb(to_image(spins)) * 65535).round().astype(np.uint16)
    np.save(tmp_path / "wheel.npy", rgb.astype(np.float64) / 65535)
    m = from_wheel(tmp_path / "wheel.npy")
    good = m.mask & (np.abs(spins[..., 2]) < 0.99)
    assert good.mean() > 0.95
    np.testing.assert_allclose(m.spins[good], spins[good], atol=2e-3)
    Image.fromarray((wheel_rgb(to_image(spins)) * 255).astype(np.uint8)).save(
        tmp_path / "wheel.png"
    )
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
    assert sz_period(sz) == pytest.approx(24.0, rel=0.1)
    # a rectangular image with dead pixels (filled with the mean) reads the same period
    mask = np.ones((120, 96), dtype=bool)
    mask[10:20, 30:40] = False
    cut = np.where(mask, sz[:, :96], 5.0)
    assert sz_period(cut, mask) == pytest.approx(24.0, rel=0.1)
    assert sz_period(np.ones((40, 30))) == float("inf")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("sz_sign", [1, -1])
def test_every_orientation_round_trips(orientation, sz_sign):
    spins = smooth_texture(5, 12)[:, :9]  # not square: rows and columns must not mix up
    image = to_image(spins, orientation, sz_sign)
    assert image.shape[:2] == ((12, 9) if orientation == "transposed" else (9, 12))
    np.testing.assert_allclose(to_lattice(image, orientation, sz_sign), spins)


def test_the_documented_convention_puts_x_right_and_y_up():
    spins = np.zeros((6, 4, 3))
    spins[..., 2] = 1.0
    spins[5, 0] = (1.0, 0.0, 0.0)  # largest x, smallest y: the bottom-right pixel
    image = to_image(spins)
    assert image.shape == (4, 6, 3)  # rows = y, columns = x
    np.testing.assert_array_equal(image[3, 5], (1.0, 0.0, 0.0))  # last row, last column
    down = to_image(spins, "xy-down")
    np.testing.assert_array_equal(down[..., 1], -image[..., 1])  # y down: Sy changes sign
    with pytest.raises(InputError, match="unknown orientation 'sideways'"):
        to_lattice(image, "sideways")


def test_reference_neel_walls_and_their_chirality():
    """+1 for the wall that lambda > 0 favours (its DMI energy is negative at lambda > 0)."""
    import json

    spins = np.load(DATA / "spins.npz")
    for case in json.loads((DATA / "energies.json").read_text())["cases"]:
        if not case["name"].startswith("neel_wall"):
            continue
        c = wall_character(spins[case["name"]])
        favoured_by_positive = case["energy_images_M4"]["DMI"] * case["lam"] < 0
        assert c.neel_fraction == pytest.approx(1.0, abs=1e-6) and c.pixels > 0
        assert c.chirality == pytest.approx(1.0 if favoured_by_positive else -1.0, abs=1e-6)
        bloch = spins[case["name"]].copy()
        bloch[..., 0], bloch[..., 1] = -bloch[..., 1].copy(), bloch[..., 0].copy()
        assert wall_character(bloch).neel_fraction == pytest.approx(0.0, abs=1e-6)


def _neel_bubbles(n: int = 120, period: float = 30.0, w: float = 2.5) -> np.ndarray:
    """Domains of both signs with Neel walls in every direction: m along grad Sz."""
    x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    k = 2 * np.pi / period
    f = np.cos(k * x) + np.cos(k * y + 0.7)
    sz = np.tanh(f / (w * k))
    gx, gy = -k * np.sin(k * x), -k * np.sin(k * y + 0.7)
    norm = np.hypot(gx, gy) + 1e-12
    inplane = np.sqrt(1 - sz**2)
    return np.stack([-inplane * gx / norm, -inplane * gy / norm, sz], axis=-1)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_a_wrong_orientation_turns_neel_walls_into_bloch_walls(tmp_path, orientation):
    stripes = _neel_bubbles()
    paths = _write_channels(tmp_path, stripes, orientation=orientation)
    right = from_channels(*paths, orientation=orientation)
    assert wall_character(right.spins, right.mask).neel_fraction > 0.9
    # a transposition (a rotation of the positions, not of the vectors) makes Neel walls
    # Bloch; reading y the wrong way up (a mirror) mixes them, which this texture cannot show
    wrong = {"xy-up": "transposed", "transposed": "xy-up"}.get(orientation)
    if wrong is not None:
        misread = from_channels(*paths, orientation=wrong)
        assert wall_character(misread.spins, misread.mask).neel_fraction < 0.2


def test_channels_may_be_numpy_arrays(tmp_path):
    """.npy and .npz channels (spinfer.io.read_array) read as the same image as PNGs."""
    images = _write_channels(tmp_path, _texture(n=120))
    pngs = from_channels(*images)
    arrays = []
    for k, suffix in enumerate((".npy", ".npz", ".npy")):
        path = tmp_path / f"c{k}{suffix}"
        grey = np.asarray(Image.open(images[k]), dtype=np.float64)
        if suffix == ".npy":
            np.save(path, grey)
        else:
            np.savez(path, grey)
        arrays.append(path)
    np.testing.assert_allclose(from_channels(*arrays).spins, pngs.spins, atol=1e-12)
