"""Zarr store layout, manifest and verification: a flipped byte anywhere is found."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from spinfer.data.store import (
    MANIFEST,
    open_store,
    shard_bounds,
    shard_file,
    small_array,
    texture_array,
    verify_store,
    write_manifest,
)
from spinfer.errors import InputError


def _store(path, n=5, size=4, shard=2, complete=True):
    group = zarr.open_group(path, mode="w")
    group.attrs["spinfer"] = {"format": 1, "kind": "textures", "complete": complete}
    arr = texture_array(group, "spins", n, size, "float32", shard)
    rng = np.random.default_rng(0)
    spins = rng.normal(size=(n, size, size, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    arr[:] = spins.astype(np.float32)
    small_array(group, "params", rng.random((n, 3)))
    write_manifest(path)
    return spins


def test_shard_bounds_cover_every_texture_once():
    assert shard_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert shard_bounds(6, 3) == [(0, 3), (3, 6)]


def test_texture_array_is_sharded_one_file_per_shard(tmp_path):
    spins = _store(tmp_path / "s.zarr", n=5, shard=2)
    arr = zarr.open_array(tmp_path / "s.zarr" / "spins", mode="r")
    assert arr.shards == (2, 4, 4, 3) and arr.chunks == (2, 4, 4, 3)
    files = [p for p in (tmp_path / "s.zarr" / "spins").rglob("*") if p.is_file()]
    assert len(files) == 1 + 3  # metadata + 3 shard files
    assert (tmp_path / "s.zarr" / "spins" / shard_file(arr, 2)).is_file()
    np.testing.assert_array_equal(arr[:], spins.astype(np.float32))


def test_verify_passes_on_an_intact_store(tmp_path):
    _store(tmp_path / "s.zarr")
    report = verify_store(tmp_path / "s.zarr")
    assert report.ok, report.problems
    assert report.textures == 5 and report.files > 0


@pytest.mark.parametrize("target", ["shard", "metadata", "table"])
def test_verify_finds_a_flipped_byte(tmp_path, target):
    path = tmp_path / "s.zarr"
    _store(path)
    arr = zarr.open_array(path / "spins", mode="r")
    files = {
        "shard": path / "spins" / shard_file(arr, 1),
        "metadata": path / "zarr.json",
        "table": next(p for p in (path / "params" / "c").rglob("*") if p.is_file()),
    }
    victim = files[target]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = verify_store(path)
    assert not report.ok
    rel = victim.relative_to(path).as_posix()
    assert any(rel in p and "checksum" in p for p in report.problems), report.problems


def test_a_corrupt_chunk_fails_on_read_even_without_verify(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    arr = zarr.open_array(path / "spins", mode="r")
    victim = path / "spins" / shard_file(arr, 0)
    data = bytearray(victim.read_bytes())
    data[40] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(path / "spins", mode="r")[0:2]


def test_verify_reports_missing_and_extra_files(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    (path / "stray.bin").write_bytes(b"x")
    arr = zarr.open_array(path / "spins", mode="r")
    (path / "spins" / shard_file(arr, 2)).unlink()
    problems = verify_store(path).problems
    assert any("stray.bin" in p and "not in the manifest" in p for p in problems)
    assert any("is missing" in p for p in problems)
    assert any("missing or non-finite" in p for p in problems)  # fill value NaN


def test_incomplete_or_foreign_stores_are_refused(tmp_path):
    _store(tmp_path / "partial.zarr", complete=False)
    with pytest.raises(InputError, match="incomplete"):
        open_store(tmp_path / "partial.zarr")
    assert not verify_store(tmp_path / "partial.zarr").ok
    with pytest.raises(InputError, match="no Zarr store"):
        open_store(tmp_path / "nothing.zarr")
    zarr.open_group(tmp_path / "foreign.zarr", mode="w")
    with pytest.raises(InputError, match="not a spinfer store"):
        open_store(tmp_path / "foreign.zarr")


def test_manifest_is_sha256sum_compatible(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum on this machine")
    import subprocess

    run = subprocess.run(["sha256sum", "-c", "--quiet", MANIFEST], cwd=path, capture_output=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads((path / "zarr.json").read_text())["attributes"]["spinfer"]["complete"]
