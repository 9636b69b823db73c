"""SPLEEM-style images -> unit-vector maps (Sx, Sy, Sz) with a mask of untrusted pixels.

Two inputs: three grey-scale channel images (Sx, Sy, Sz; 8- or 16-bit, any format Pillow
reads, or .npy/.npz) or one colour-wheel image. Channels of an instrument whose
point-spread function is declared (``psf_shape``, ``psf_width`` > 0) are deconvolved by it
(spinfer.spleem.deconvolve) and calibrated by their own unit-length fit, or where ringing
at the walls keeps it from holding, by the recorded channels' offsets and gains; a
colour-wheel image cannot be deconvolved (its colours are not linear in the spin
components). Grey levels are calibrated to [-1, 1] by
spinfer.data.microscope.calibrate_channels: an offset and gain per channel such that every
pixel's vector has unit length as nearly as it can (one least-squares fit of the three
channels; dead or saturated pixels left out), or each channel's 1st/99th percentiles where
the image does not determine that fit (a uniform state); then every pixel is renormalized.
A pixel is masked when it is not finite or its calibrated vector is shorter than
``min_norm`` (no direction can be trusted there).

Colour wheel (``wheel_rgb`` renders it): hue = in-plane angle atan2(Sy, Sx); +z fades to
white and -z to black (HSV: S = 1 - Sz, V = 1 for Sz >= 0; S = 1, V = 1 + Sz below).

Image convention (``xy-up``, the default): the film is seen from above (+z towards the
viewer), x runs along the columns to the right and y along the rows upwards (row 0 is the
top of the image); the Sx and Sy channels are the in-plane components along that x and y.
Other instruments write other conventions, chosen by ``orientation`` (``--orientation`` or a
set's meta.yaml):

* ``xy-down``: x along the columns, y along the rows downwards (row 0 is y = 0), Sy along
  that downward y: the same pixels, Sy of the other sign;
* ``transposed``: x along the rows downwards, y along the columns to the right (the order in
  which NumPy prints an array ``[ix, iy]``).

``sz_sign = -1`` reads instruments that show -Sz as white. Every map is turned into
spinfer's lattice order ``[ix, iy, (Sx, Sy, Sz)]`` with a right-handed (x, y, z). Reading
a transposed image as xy-up (or the reverse) rotates the positions but not the in-plane
components, which turns Neel walls into Bloch walls: spinfer.spleem.walls.wall_character
catches it. Reading y the wrong way up mirrors the components alone: walls along one axis
keep their chirality, walls along the other reverse it, so the Neel fraction falls towards
one half.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinfer.data.microscope import calibrate_channels
from spinfer.data.panels import cut_panels, panel_corners
from spinfer.errors import InputError
from spinfer.io import read_array
from spinfer.spleem.deconvolve import check_psf, deconvolve_channels

MIN_SIZE = 100
ORIENTATIONS = ("xy-up", "xy-down", "transposed")


def check_orientation(orientation: str, sz_sign: float = 1.0, where: str = "orientation") -> None:
    if orientation not in ORIENTATIONS:
        raise InputError(
            f"{where}: unknown orientation '{orientation}' (known: {', '.join(ORIENTATIONS)})"
        )
    if sz_sign not in (1, -1):
        raise InputError(f"{where}: sz_sign must be 1 or -1, got {sz_sign!r}")


def to_lattice(image: np.ndarray, orientation: str = "xy-up", sz_sign: float = 1.0) -> np.ndarray:
    """(rows, cols, 3) vectors as an image holds them -> (Lx, Ly, 3) in spinfer's order."""
    check_orientation(orientation, sz_sign)
    if orientation == "transposed":
        out = np.array(image, dtype=np.float64)
    else:  # x = column, y = rows counted from the bottom
        out = np.array(image[::-1].transpose(1, 0, 2), dtype=np.float64)
        if orientation == "xy-down":
            out[..., 1] *= -1.0
    out[..., 2] *= sz_sign
    return out


def to_image(spins: np.ndarray, orientation: str = "xy-up", sz_sign: float = 1.0) -> np.ndarray:
    """(Lx, Ly, 3) lattice vectors -> (rows, cols, 3) as an image in ``orientation`` holds
    them: the inverse of ``to_lattice``."""
    check_orientation(orientation, sz_sign)
    out = np.array(spins, dtype=np.float64)
    out[..., 2] *= sz_sign
    if orientation == "transposed":
        return out
    if orientation == "xy-down":
        out[..., 1] *= -1.0
    return out.transpose(1, 0, 2)[::-1]


@dataclass(frozen=True)
class SpinMap:
    spins: np.ndarray  # (Lx, Ly, 3) float32 unit vectors (masked pixels: 0, 0, 1)
    mask: np.ndarray  # (Lx, Ly) bool, True = trusted
    source: str


def _read_pixels(path: Path, rgb: bool = False) -> np.ndarray:
    """The pixels of an image file (Pillow; ``rgb``: converted to RGB unless RGB or 16-bit),
    or the array of a .npy/.npz file (spinfer.io.read_array)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix in (".npy", ".npz"):
        return read_array(path)
    try:
        from PIL import Image

        with Image.open(path) as img:
            if rgb and img.mode not in ("RGB", "I;16"):
                img = img.convert("RGB")
            return np.asarray(img)
    except Exception as exc:  # Pillow raises many types for unreadable files
        raise InputError(f"{path}: cannot read image ({type(exc).__name__})") from None


def read_grey(path: Path | str) -> np.ndarray:
    """One channel image as float64 (2-D); colour images are averaged to grey."""
    path = Path(path)
    arr = np.asarray(_read_pixels(path), dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=-1)
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D image, got shape {arr.shape}")
    return arr


def _finish(
    vec: np.ndarray, source: str, min_norm: float, orientation: str, sz_sign: float
) -> SpinMap:
    vec = to_lattice(vec, orientation, sz_sign)
    norm = np.linalg.norm(vec, axis=-1)
    mask = np.isfinite(norm) & (norm >= min_norm)
    if not mask.any():
        raise InputError(f"{source}: every pixel is masked (no usable contrast)")
    spins = np.zeros_like(vec)
    spins[..., 2] = 1.0
    spins[mask] = vec[mask] / norm[mask, None]
    return SpinMap(spins.astype(np.float32), mask, source)


def _check_size(shape: tuple[int, ...], source: str, min_size: int) -> None:
    if shape[0] < min_size or shape[1] < min_size:
        raise InputError(
            f"{source}: image is {shape[0]}x{shape[1]}, smaller than {min_size}x{min_size}"
        )


def from_channels(
    sx: Path | str,
    sy: Path | str,
    sz: Path | str,
    min_norm: float = 0.3,
    min_size: int = MIN_SIZE,
    orientation: str = "xy-up",
    sz_sign: float = 1.0,
    psf_shape: str = "gaussian",
    psf_width: float = 0.0,
) -> SpinMap:
    """Three grey-scale channel images -> a (deconvolved,) calibrated, renormalized SpinMap."""
    check_orientation(orientation, sz_sign)
    check_psf(psf_shape, psf_width)
    chans = [read_grey(p) for p in (sx, sy, sz)]
    shapes = {c.shape for c in chans}
    if len(shapes) != 1:
        sizes = ", ".join(
            f"{Path(p).name} {c.shape}" for p, c in zip((sx, sy, sz), chans, strict=True)
        )
        raise InputError(f"channels differ in shape: {sizes}")
    _check_size(chans[0].shape, str(sx), min_size)
    vec = calibrate_grey(np.stack(chans), psf_shape, psf_width)
    return _finish(vec, str(sx), min_norm, orientation, sz_sign)


def calibrate_grey(
    grey: np.ndarray, psf_shape: str = "gaussian", psf_width: float = 0.0
) -> np.ndarray:
    """(3, rows, cols) grey levels -> (rows, cols, 3) calibrated vectors, deconvolved first
    by a declared PSF (the recorded channels set the scale where the deconvolved do not)."""
    if psf_width > 0:
        return calibrate_channels(deconvolve_channels(grey, psf_shape, psf_width), grey)
    return calibrate_channels(grey)


def wheel_rgb(spins: np.ndarray) -> np.ndarray:
    """(Lx, Ly, 3) unit spins -> (Lx, Ly, 3) RGB in [0, 1] on the colour wheel."""
    from matplotlib.colors import hsv_to_rgb

    sz = np.clip(spins[..., 2], -1.0, 1.0)
    hue = (np.arctan2(spins[..., 1], spins[..., 0]) / (2 * np.pi)) % 1.0
    sat = np.where(sz >= 0, 1.0 - sz, 1.0)
    val = np.where(sz >= 0, 1.0, 1.0 + sz)
    return hsv_to_rgb(np.stack([hue, sat, val], axis=-1))


def from_wheel(
    path: Path | str,
    min_norm: float = 0.3,
    min_size: int = MIN_SIZE,
    orientation: str = "xy-up",
    sz_sign: float = 1.0,
    psf_shape: str = "gaussian",
    psf_width: float = 0.0,
) -> SpinMap:
    """A colour-wheel image (RGB, 8 or 16 bit) -> SpinMap (inverse of ``wheel_rgb``)."""
    from matplotlib.colors import rgb_to_hsv

    check_orientation(orientation, sz_sign)
    check_psf(psf_shape, psf_width)
    path = Path(path)
    if psf_width > 0:
        raise InputError(
            f"{path}: a colour-wheel image cannot be deconvolved (its colours are not linear "
            "in the spin components); give sx/sy/sz channel images, or psf_width 0"
        )
    raw = _read_pixels(path, rgb=True)
    if path.suffix in (".npy", ".npz"):
        rgb = raw.astype(np.float64)  # an array: already in [0, 1]
    else:
        rgb = raw.astype(np.float64) / (65535.0 if raw.dtype == np.uint16 else 255.0)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise InputError(f"{path}: expected an RGB image, got shape {rgb.shape}")
    _check_size(rgb.shape, str(path), min_size)
    rgb = rgb[..., :3]
    finite = np.isfinite(rgb).all(axis=-1)
    hsv = rgb_to_hsv(np.clip(np.where(finite[..., None], rgb, 0.0), 0.0, 1.0))
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sz = np.where(val < 1.0 - 1e-6, val - 1.0, 1.0 - sat)
    inplane = np.sqrt(np.clip(1.0 - sz**2, 0.0, 1.0))
    phi = 2 * np.pi * hue
    vec = np.stack([inplane * np.cos(phi), inplane * np.sin(phi), sz], axis=-1)
    vec[~finite] = np.nan
    return _finish(vec, str(path), min_norm, orientation, sz_sign)


def panels(
    spin_map: SpinMap, size: int = MIN_SIZE, stride: int = MIN_SIZE, min_trusted: float = 0.9
):
    """(P, size, size, 3) panels with at least ``min_trusted`` trusted pixels, and corners."""
    corners = [
        (x, y)
        for x, y in panel_corners(spin_map.mask.shape, size, stride)
        if spin_map.mask[x : x + size, y : y + size].mean() >= min_trusted
    ]
    if not corners:
        raise InputError(f"{spin_map.source}: no {size}x{size} panel is {min_trusted:.0%} trusted")
    return cut_panels(spin_map.spins, corners, size), corners


@contextlib.contextmanager
def single_set(channels: list[Path] | None, wheel: Path | None) -> Iterator[Path]:
    """A temporary folder of image sets holding the one set given as files (three channel
    images Sx, Sy, Sz, or one colour-wheel image), linked under the names a set folder
    uses; removed afterwards."""
    if channels is not None and len(channels) != 3:
        raise InputError("--channels takes exactly three images (Sx, Sy, Sz)")
    files, stems = (channels, ("sx", "sy", "sz")) if channels else ([wheel], ("wheel",))
    for src in files:
        if not Path(src).is_file():
            raise InputError(f"{src}: no such file")
    scratch = Path(tempfile.mkdtemp(prefix="spinfer-spleem-"))
    try:
        name = Path(files[0]).stem
        folder = scratch / (name if name not in ("sx", "wheel") else "image")
        folder.mkdir()
        for src, stem in zip(files, stems, strict=True):
            (folder / f"{stem}{Path(src).suffix}").symlink_to(Path(src).resolve())
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
