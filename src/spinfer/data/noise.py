"""Noisy variants, S* = normalize(S + a R) with R uniform random unit vectors (Kwon et al.).

Two stores, so that the test levels can change without retraining anything:

* ``noise.out`` (the training copies): train and val get one noisy copy each, a ~ U[amplitude]
  drawn per texture; with probability ``noise.microscope`` a copy is instead what a virtual
  microscope records of the texture (spinfer.data.microscope: PSF blur of a width drawn
  from ``noise.psf_sigma``, per-channel gain and offset, shot noise, quantisation, read back
  by the reader's calibration; its settings drawn per image and stored in ``microscope``,
  one row per image: used, psf_sigma, offsets, gains, counts, bits);
* ``noise.test_out`` (the test copies): the test split gets one S + aR copy per level Ts of
  ``noise.test_levels``, as in the paper.

Every copy is seeded by (base seed, variant, texture index), so both stores are
bit-identical on every rerun and a test level's copy does not depend on the other levels.

``fresh_copy`` draws a training copy the same way for one epoch (``train.fresh_noise``:
training then sees a new copy of every texture each epoch, seeded by the epoch too).
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from spinfer.config import Params
from spinfer.data.generate import read_textures
from spinfer.data.microscope import MICROSCOPE, Microscope, draw_microscope
from spinfer.data.split import SPLITS, load_splits
from spinfer.data.store import (
    MANIFEST,
    sha256_file,
    shard_bounds,
    small_array,
    store_meta,
    texture_array,
    verify_store,
    write_manifest,
)
from spinfer.errors import SpinferError
from spinfer.io import remove_if_empty, replace_dir

_NOISE_KEY = 0x401CE
_MICROSCOPE_KEY = 0x3C0
_FRESH_KEY = 0xF2E5
MICROSCOPE_COLUMNS = ("used", "psf_sigma", "offset_x", "offset_y", "offset_z", "gain_x",
                      "gain_y", "gain_z", "counts", "bits")  # fmt: skip


def add_noise(spins: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """normalize(S + a R) for one (L, L, 3) texture; R uniform on the unit sphere."""
    r = rng.standard_normal(spins.shape)
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    noisy = spins.astype(np.float64) + amplitude * r
    norm = np.linalg.norm(noisy, axis=-1, keepdims=True)
    return noisy / np.maximum(norm, 1e-12)


def fresh_copy(
    clean: np.ndarray,
    seed: int,
    row: int,
    epoch: int,
    amplitude: tuple[float, float],
    microscope: float,
    psf_sigma: tuple[float, float] = MICROSCOPE["psf_sigma"],
) -> np.ndarray:
    """A training copy of the (L, L, 3) texture at store row ``row`` for one epoch: with
    probability ``microscope`` what a drawn virtual microscope records, else S + aR with
    a ~ U[amplitude]; the same (seed, row, epoch) gives the same copy, bit for bit."""
    key = [seed, _NOISE_KEY, _variant_code("train"), int(row), _FRESH_KEY, int(epoch)]
    return draw_copy(clean, key, amplitude, microscope, psf_sigma)[0]


def draw_copy(
    clean: np.ndarray,
    key: list[int],
    amplitude: float | tuple[float, float],
    share: float,
    psf_sigma: tuple[float, float] = MICROSCOPE["psf_sigma"],
) -> tuple[np.ndarray, Microscope | None]:
    """One noisy copy of a (L, L, 3) texture, seeded by ``key``: with probability ``share``
    what a drawn virtual microscope records (and that microscope, its PSF width drawn from
    ``psf_sigma``), else S + aR (and None) with ``amplitude`` a, or a ~ U[amplitude] drawn
    first from the copy's stream."""
    instrument = _instrument(key, share, psf_sigma)
    if instrument is None:
        rng = np.random.default_rng(np.random.SeedSequence(key))
        a = rng.uniform(*amplitude) if np.ndim(amplitude) == 1 else amplitude
        return add_noise(clean, a, rng), None
    rng = np.random.default_rng(np.random.SeedSequence([*key, _MICROSCOPE_KEY, 1]))
    return instrument.view(clean, rng), instrument


def level_group(level: float) -> str:
    """Group name of one test noise level: ``ts_0.30``."""
    return f"ts_{level:.2f}"


def _variant_code(name: str) -> int:
    if name in ("train", "val"):
        return SPLITS.index(name)
    return 1000 + round(float(name.removeprefix("ts_")) * 1000)


@dataclass(frozen=True)
class Variant:
    """One noisy copy: which raw textures, under which group, with which amplitudes."""

    group: str  # "train", "val", "test/ts_0.3"
    index: np.ndarray  # rows of the texture store
    level: float | None  # fixed Ts (test) or None (a ~ U[amplitude])


#: the two noisy stores: which variants each holds
PARTS = ("training", "test")


def variants(splits: dict, levels: tuple[float, ...], part: str) -> list[Variant]:
    """The copies of one store: ``training`` (train, val) or ``test`` (one per level)."""
    idx = {name: np.asarray(splits[name], dtype=np.int64) for name in SPLITS}
    if part == "training":
        return [Variant("train", idx["train"], None), Variant("val", idx["val"], None)]
    return [Variant(f"test/{level_group(t)}", idx["test"], t) for t in levels]


def amplitudes(variant: Variant, seed: int, bounds: tuple[float, float]) -> np.ndarray:
    if variant.level is not None:
        return np.full(len(variant.index), variant.level)
    code = _variant_code(variant.group)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _NOISE_KEY, code, 0xA]))
    return rng.uniform(bounds[0], bounds[1], size=len(variant.index))


def make_noisy(
    params: Params,
    textures: Path | str,
    splits_path: Path | str,
    out: Path | str,
    progress: bool | None = None,
    part: str = "training",
) -> tuple[int, float]:
    """Write one noisy store at ``out`` (atomically): the training copies (train, val) or,
    with ``part="test"``, the test copies, one per level of ``noise.test_levels``;
    returns (textures written, seconds)."""
    if part not in PARTS:
        raise SpinferError(f"unknown noisy store part '{part}' (known: {', '.join(PARTS)})")
    return _make_store(params, textures, splits_path, out, part, progress)


def _noise_attrs(params: Params, part: str) -> dict:
    formula = "S* = normalize(S + a R), R uniform random unit vectors"
    if part == "test":
        return {"formula": formula, "test_levels": list(params.noise.test_levels),
                "seed": params.base.seed}  # fmt: skip
    return {
        "formula": formula,
        "microscope": params.noise.microscope,
        "microscope_ranges": _ranges(params) if params.noise.microscope > 0 else None,
        "microscope_columns": list(MICROSCOPE_COLUMNS),
        "amplitude": list(params.noise.amplitude),
        "seed": params.base.seed,
    }


def _make_store(params, textures, splits_path, out, part: str, progress) -> tuple[int, float]:
    start = time.perf_counter()
    out = Path(out)
    raw = read_textures(textures)
    meta = store_meta(raw)
    splits = load_splits(splits_path)
    if splits.get("textures_fingerprint") != meta["fingerprint"]:
        raise SpinferError(f"{splits_path} was made for another texture store; rerun the split")
    tmp = out.parent / ".partial" / f"{out.name}-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(tmp, mode="w")
    attrs = {
        **meta,
        "kind": "noisy" if part == "training" else "test_noise",
        "complete": False,
        "noise": _noise_attrs(params, part),
        "source": {
            "textures_fingerprint": meta["fingerprint"],
            "textures_manifest_sha256": sha256_file(Path(textures) / MANIFEST),
            "splits": list(splits["split"]),
        },
    }
    group.attrs["spinfer"] = attrs
    todo = variants(splits, params.noise.test_levels, part)
    total = sum(len(v.index) for v in todo)
    show = sys.stderr.isatty() if progress is None else progress
    spins_in = raw["spins"]
    raw_params = raw["params"][:]
    desc = "noise" if part == "training" else "test noise"
    with tqdm(total=total, desc=desc, unit="tex", disable=not show) as bar:
        for variant in todo:
            _write_variant(group, variant, spins_in, raw_params, meta, params, bar)
    group.attrs["spinfer"] = {**attrs, "complete": True}
    write_manifest(tmp)
    report = verify_store(tmp)
    if not report.ok:
        raise SpinferError(f"{out.name} failed verification: {report.problems[0]}")
    replace_dir(tmp, out)
    remove_if_empty(out.parent / ".partial")
    return total, time.perf_counter() - start


def _write_variant(group, variant, spins_in, raw_params, meta, params, bar) -> None:
    sub = group.require_group(variant.group)
    n = len(variant.index)
    shard = meta["shard_textures"]
    arr = texture_array(sub, "spins", n, meta["size"], meta["dtype"], shard)
    amp = amplitudes(variant, params.base.seed, params.noise.amplitude)
    code = _variant_code(variant.group.split("/")[-1])
    scope = np.zeros((n, len(MICROSCOPE_COLUMNS)))
    share = params.noise.microscope if variant.level is None else 0.0
    psf = params.noise.psf_sigma
    for lo, hi in shard_bounds(n, shard):
        rows = variant.index[lo:hi]
        clean = spins_in.oindex[rows] if len(rows) else np.empty((0,))
        block = np.empty((hi - lo, meta["size"], meta["size"], 3))
        for j, row in enumerate(rows):
            key = [params.base.seed, _NOISE_KEY, code, int(row)]
            block[j], instrument = draw_copy(clean[j], key, amp[lo + j], share, psf)
            if instrument is not None:
                scope[lo + j] = (1.0, instrument.psf_sigma, *instrument.offset,
                                 *instrument.gain, instrument.counts, instrument.bits)  # fmt: skip
        arr[lo:hi] = block.astype(arr.dtype)
        bar.update(hi - lo)
    small_array(sub, "index", variant.index)
    small_array(sub, "params", raw_params[variant.index].reshape(n, 3))
    small_array(sub, "amplitude", np.where(scope[:, 0] > 0, np.nan, amp).astype(np.float64))
    if share > 0:
        small_array(sub, "microscope", scope)


def _ranges(params: Params) -> dict:
    """The ranges the store's microscopes were drawn from (MICROSCOPE, its PSF width set by
    ``noise.psf_sigma``)."""
    return {**MICROSCOPE, "psf_sigma": list(params.noise.psf_sigma)}


def _instrument(key: list[int], share: float, psf_sigma: tuple[float, float]) -> Microscope | None:
    """The virtual microscope of one copy, or None for S + aR (drawn from its own stream)."""
    if share <= 0:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([*key, _MICROSCOPE_KEY]))
    if rng.random() >= share:
        return None
    return draw_microscope(rng, psf_sigma)
