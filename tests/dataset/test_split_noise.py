"""Splits within every parameter set, and the noise model S* = normalize(S + a R)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinfer.data.microscope import MICROSCOPE
from spinfer.data.noise import add_noise, level_group, make_noisy
from spinfer.data.split import SPLITS, assign_splits, load_splits, make_splits
from spinfer.data.store import MANIFEST, open_store, store_meta
from spinfer.errors import ConfigError, InputError, SpinferError
from tests.conftest import smooth_texture, tiny_params


def _layout(sets=5, per_set=20):
    grid_index = np.repeat(np.arange(100, 100 + sets), per_set)
    replica = np.tile(np.arange(per_set), sets)
    return grid_index, replica


def test_every_set_splits_14_4_2_without_sharing_a_texture():
    grid_index, replica = _layout()
    labels = assign_splits(grid_index, replica, (14, 4, 2), seed=1)
    for g in np.unique(grid_index):
        counts = np.bincount(labels[grid_index == g], minlength=3)
        np.testing.assert_array_equal(counts, [14, 4, 2])
    assert labels.shape == grid_index.shape  # one label per texture: disjoint by construction


def test_split_is_seeded_and_per_set():
    grid_index, replica = _layout()
    a = assign_splits(grid_index, replica, (14, 4, 2), seed=1)
    np.testing.assert_array_equal(a, assign_splits(grid_index, replica, (14, 4, 2), seed=1))
    assert not np.array_equal(a, assign_splits(grid_index, replica, (14, 4, 2), seed=2))
    # a set's split does not depend on which other sets exist
    first = assign_splits(grid_index[:20], replica[:20], (14, 4, 2), seed=1)
    np.testing.assert_array_equal(first, a[:20])


def test_split_rejects_a_rule_that_does_not_fit_the_store():
    grid_index, replica = _layout()
    with pytest.raises(ConfigError, match="sums to 10"):
        assign_splits(grid_index, replica, (6, 2, 2), seed=1)


def test_split_file_partitions_the_store(tiny_data):
    doc = load_splits(tiny_data["splits"])
    n = sum(len(doc[s]) for s in SPLITS)
    everything = np.concatenate([doc[s] for s in SPLITS])
    assert len(np.unique(everything)) == n == 30
    assert doc["counts"] == {"train": 18, "val": 6, "test": 6}
    meta = store_meta(open_store(tiny_data["textures"]))
    assert doc["textures_fingerprint"] == meta["fingerprint"]


def test_split_file_errors(tmp_path, tiny_data):
    with pytest.raises(InputError, match="no split file"):
        load_splits(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text(json.dumps({"train": []}))
    with pytest.raises(InputError, match="'val'"):
        load_splits(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="per_set=10"):
        make_splits(tiny_data["textures"], (14, 4, 2), 1, tmp_path / "s.json")


def _random_spins(n, seed=0):
    s = np.random.default_rng(seed).normal(size=(n, n, 3))
    return s / np.linalg.norm(s, axis=-1, keepdims=True)


def test_zero_amplitude_changes_nothing_and_output_is_unit():
    spins = _random_spins(16)
    rng = np.random.default_rng(3)
    np.testing.assert_allclose(add_noise(spins, 0.0, rng), spins, atol=1e-15)
    noisy = add_noise(spins, 0.7, rng)
    np.testing.assert_allclose(np.linalg.norm(noisy, axis=-1), 1.0, atol=1e-12)


def test_noise_overlap_matches_the_analytic_mean():
    """<S.S*> = 2/3 at a = 1 (R uniform on the sphere); 1 - a^2/3 + O(a^4) for small a."""
    spins = np.zeros((300, 300, 3))
    spins[..., 2] = 1.0
    rng = np.random.default_rng(5)
    overlap = add_noise(spins, 1.0, rng)[..., 2].mean()
    assert overlap == pytest.approx(2 / 3, abs=3e-3)
    small = add_noise(spins, 0.1, rng)[..., 2].mean()
    assert small == pytest.approx(1 - 0.01 / 3, abs=2e-4)
    # isotropic: no in-plane bias
    assert abs(add_noise(spins, 1.0, rng)[..., :2].mean()) < 3e-3


def test_noisy_store_layout_and_amplitudes(tiny_data):
    group = open_store(tiny_data["noisy"])
    tests = open_store(tiny_data["test_noise"])
    assert set(group) == {"train", "val"} and set(tests) == {"test"}  # apart: levels train nothing
    params = tiny_params()
    doc = load_splits(tiny_data["splits"])
    raw = open_store(tiny_data["textures"])
    for split in ("train", "val"):
        sub = group[split]
        np.testing.assert_array_equal(sub["index"][:], doc[split])
        amp = sub["amplitude"][:]
        scope = sub["microscope"][:]  # used, psf, offsets, gains, counts, bits per image
        used = scope[:, 0] > 0
        assert used.any() and (~used).any()  # noise.microscope = 0.5: both kinds of copy
        np.testing.assert_array_equal(np.isnan(amp), used)  # S + aR copies keep their a
        assert amp[~used].min() >= 0.0 and amp[~used].max() <= 1.0 and amp[~used].std() > 0
        assert set(scope[used, -1]) <= {8, 12, 16} and (scope[used, 1] <= 1.5).all()
        np.testing.assert_allclose(np.linalg.norm(sub["spins"][:], axis=-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(sub["params"][:], raw["params"][:][doc[split]])
    for level in params.noise.test_levels:
        sub = tests[f"test/{level_group(level)}"]
        np.testing.assert_array_equal(sub["amplitude"][:], level)
        assert sub["spins"].shape[0] == len(doc["test"])
    clean = raw["spins"].oindex[np.asarray(doc["test"])]
    np.testing.assert_allclose(tests["test/ts_0.00/spins"][:], clean, atol=1e-6)
    # overlap with the clean texture falls with Ts
    overlaps = [
        float((tests[f"test/{level_group(t)}/spins"][:] * clean).sum(-1).mean())
        for t in params.noise.test_levels
    ]
    assert all(np.diff(overlaps) < 0)


def test_noisy_store_is_reproduced_bit_for_bit(tmp_path, tiny_data):
    params = tiny_params()
    make_noisy(params, tiny_data["textures"], tiny_data["splits"], tmp_path / "n.zarr", False)
    a = (tiny_data["noisy"] / MANIFEST).read_text()
    assert (tmp_path / "n.zarr" / MANIFEST).read_text() == a
    assert not (tmp_path / ".partial").exists()


def test_a_test_level_copy_does_not_depend_on_the_other_levels(tmp_path, tiny_data):
    params = tiny_params("noise.test_levels=[0.3, 1.0]")
    make_noisy(
        params, tiny_data["textures"], tiny_data["splits"], tmp_path / "t.zarr", part="test"
    )
    ours, full = open_store(tmp_path / "t.zarr"), open_store(tiny_data["test_noise"])
    assert set(ours["test"]) == {"ts_0.30", "ts_1.00"}
    for group in ("test/ts_0.30/spins", "test/ts_1.00/spins"):
        np.testing.assert_array_equal(ours[group][:], full[group][:])


def test_the_psf_range_is_a_setting_the_store_records(tmp_path, tiny_data):
    params = tiny_params("noise.psf_sigma=[2.0, 3.0]", "noise.microscope=1.0")
    make_noisy(params, tiny_data["textures"], tiny_data["splits"], tmp_path / "n.zarr", False)
    store = open_store(tmp_path / "n.zarr")
    assert store.attrs["spinfer"]["noise"]["microscope_ranges"]["psf_sigma"] == [2.0, 3.0]
    psf = np.concatenate([store[split]["microscope"][:, 1] for split in ("train", "val")])
    assert psf.min() >= 2.0 and psf.max() <= 3.0 and psf.std() > 0
    default = open_store(tiny_data["noisy"]).attrs["spinfer"]["noise"]["microscope_ranges"]
    assert default == json.loads(json.dumps(MICROSCOPE))  # the default: the module's ranges


def test_noise_refuses_a_split_file_of_another_store(tmp_path, tiny_data):
    doc = json.loads(tiny_data["splits"].read_text())
    doc["textures_fingerprint"] = "0" * 64
    (tmp_path / "s.json").write_text(json.dumps(doc))
    with pytest.raises(SpinferError, match="another texture store"):
        make_noisy(tiny_params(), tiny_data["textures"], tmp_path / "s.json", tmp_path / "n")
    assert not (tmp_path / "n").exists()


def test_noisy_group_names_are_stable():
    assert level_group(0.3) == "ts_0.30"
    assert level_group(1.0) == "ts_1.00"


def test_fresh_copies_are_seeded_by_texture_and_epoch():
    from spinfer.data.noise import fresh_copy

    spins = smooth_texture(5, 24)

    def draw(row: int, epoch: int, scope: float = 0.5) -> np.ndarray:
        return fresh_copy(spins, 7, row, epoch, (0.0, 1.0), scope)

    np.testing.assert_array_equal(draw(3, 2), draw(3, 2))  # bit for bit
    assert not np.array_equal(draw(3, 2), draw(3, 3))
    assert not np.array_equal(draw(3, 2), draw(4, 2))
    copies = [draw(row, epoch) for row in range(6) for epoch in range(6)]
    np.testing.assert_allclose(np.linalg.norm(copies, axis=-1), 1.0, atol=1e-9)
    # S + aR only: the overlap with the texture lies between a = 1 (2/3 on average) and a = 0
    overlaps = [float((draw(r, e, 0.0) * spins).sum(-1).mean()) for r, e in np.ndindex(4, 4)]
    assert min(overlaps) > 0.55 and max(overlaps) <= 1.0 and len(set(overlaps)) == 16
    # a wider PSF range blurs the microscope's copies more: lower overlap with the texture
    sharp = fresh_copy(spins, 7, 3, 2, (0.0, 1.0), 1.0, (0.0, 0.0))
    blurred = fresh_copy(spins, 7, 3, 2, (0.0, 1.0), 1.0, (4.0, 4.0))
    assert float((blurred * spins).sum(-1).mean()) < float((sharp * spins).sum(-1).mean())
