"""The PyTorch Dataset: lazy, by shard, every split and noise variant; target scaling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spinfer.data.dataset import (
    EpochItems,
    FreshNoiseDataset,
    ShardSampler,
    noise_levels,
    open_dataset,
    phase_weights,
)
from spinfer.data.split import load_splits
from spinfer.data.store import open_store
from spinfer.data.targets import TargetScaler
from spinfer.errors import InputError


def _open(tiny_data, split, noise="clean"):
    return open_dataset(split, noise, **tiny_data)


@pytest.mark.parametrize(
    ("split", "noise", "n"),
    [("train", "clean", 18), ("train", "noisy", 18), ("val", "noisy", 6), ("val", "clean", 6),
     ("test", "clean", 6), ("test", 0.0, 6), ("test", 0.5, 6), ("test", 1.0, 6)],
)  # fmt: skip
def test_every_variant_yields_unit_images_and_normalized_targets(tiny_data, split, noise, n):
    ds = _open(tiny_data, split, noise)
    assert len(ds) == n
    x, y = ds[n - 1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close((x**2).sum(0), torch.ones(16, 16), atol=1e-5, rtol=0)
    assert y.shape == (3,) and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_images_are_the_stored_textures_channels_first(tiny_data):
    ds = _open(tiny_data, "test", "clean")
    row = load_splits(tiny_data["splits"])["test"][2]
    stored = open_store(tiny_data["textures"])["spins"][row]
    np.testing.assert_array_equal(ds[2][0].numpy(), stored.transpose(2, 0, 1))


def test_targets_round_trip_through_the_scaler(tiny_data):
    ds = _open(tiny_data, "train")
    back = ds.scaler.denormalize(ds._targets.numpy())
    np.testing.assert_allclose(back, ds.params, rtol=1e-6, atol=1e-7)
    scaler = TargetScaler(lo=(-0.39, 0.0339, 0.05), hi=(0.39, 1.0569, 0.13))
    np.testing.assert_allclose(scaler.normalize([[-0.39, 0.0339, 0.05]]), [[0, 0, 0]])
    np.testing.assert_allclose(scaler.normalize([[0.39, 1.0569, 0.13]]), [[1, 1, 1]])


def test_reading_is_lazy_and_by_shard(tiny_data):
    ds = _open(tiny_data, "train")
    assert ds._array is None or not ds._shards  # nothing decoded yet
    ds[0]
    assert len(ds._shards) == 1
    same_shard = [i for i in range(len(ds)) if ds.shard_of(i) == ds.shard_of(0)]
    for i in same_shard:
        ds[i]
    assert len(ds._shards) == 1


def test_shard_sampler_covers_each_item_once_shard_by_shard(tiny_data):
    ds = _open(tiny_data, "train")
    sampler = ShardSampler(ds, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(ds)))
    shards = [int(ds.shard_of(i)) for i in order]
    changes = sum(a != b for a, b in itertools.pairwise(shards))
    assert changes == len(set(shards)) - 1  # each shard visited in one run
    sampler.set_epoch(1)
    assert list(sampler) != order
    assert list(ShardSampler(ds, seed=3)) == order


def test_shard_sampler_window_mixes_shards_and_the_cache_holds_them(tiny_data):
    """Shard by shard a batch sees one or two values of D (the grid runs over D first);
    a window mixes the items of that many shards, every item once, seeded."""
    from spinfer.data.dataset import shuffle_window

    ds = _open(tiny_data, "train")
    n_shards = len({int(ds.shard_of(i)) for i in range(len(ds))})
    assert n_shards >= 2 and shuffle_window(ds) == n_shards  # tiny: all fit
    assert shuffle_window(ds, budget_bytes=1) == 2  # never below two
    mixed = ShardSampler(ds, seed=3, window=n_shards)
    order = list(mixed)
    assert sorted(order) == list(range(len(ds))) and order == list(
        ShardSampler(ds, seed=3, window=n_shards)
    )
    shards = [int(ds.shard_of(i)) for i in order]
    assert sum(a != b for a, b in itertools.pairwise(shards)) > n_shards - 1
    parts = [list(ShardSampler(ds, seed=0, rank=r, world=2, window=n_shards)) for r in (0, 1)]
    assert set(parts[0]).isdisjoint(parts[1]) and set(parts[0]) | set(parts[1]) == set(
        range(len(ds))
    )
    ds.cache_shards(n_shards)
    for i in order:
        ds[i]
    assert len(ds._shards) == n_shards  # each shard decoded once per pass


def test_shard_sampler_partitions_between_ranks(tiny_data):
    ds = _open(tiny_data, "train")
    parts = [list(ShardSampler(ds, seed=0, rank=r, world=2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 9
    assert set(parts[0]).isdisjoint(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(range(len(ds)))


def test_phase_weights_give_out_of_plane_items_their_share():
    out = np.array([True, False, False, False, True, False])
    w = phase_weights(out, 0.5)
    assert w[out].sum() == pytest.approx(0.5) and w.sum() == pytest.approx(1.0)
    assert len(set(w[out])) == 1 and len(set(w[~out])) == 1  # equal within a phase
    assert phase_weights(out, None) is None
    assert phase_weights(np.zeros(4, bool), 0.5) is None  # one phase only: nothing to balance
    assert phase_weights(np.ones(4, bool), 0.5) is None


def test_datasets_know_each_items_phase_from_its_clean_texture(tiny_data):
    column = open_store(tiny_data["textures"])["mean_abs_sz"][:]
    splits = load_splits(tiny_data["splits"])
    for split, noise in (("train", "clean"), ("train", "noisy"), ("test", 0.0), ("test", 1.0)):
        ds = _open(tiny_data, split, noise)
        assert np.allclose(ds.mean_abs_sz, column[splits[split]])  # noise leaves the phase
        assert (ds.out_of_plane() == (ds.mean_abs_sz > 0.5)).all()
    clean = _open(tiny_data, "test", 0.0)
    sz = [float(np.abs(clean[i][0][2].numpy()).mean()) for i in range(len(clean))]
    assert np.allclose(sz, clean.mean_abs_sz, atol=1e-3)  # Ts = 0 images are the textures


def test_weighted_sampler_draws_the_share_seeded_within_windows(tiny_data):
    ds = _open(tiny_data, "train")
    n_shards = len({int(ds.shard_of(i)) for i in range(len(ds))})
    out = np.arange(len(ds)) % 3 == 0  # a third "out of plane", whatever the store holds
    weights = phase_weights(out, 0.75)
    sampler = ShardSampler(ds, seed=3, window=1, weights=weights)
    drawn = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(ds)  # an epoch keeps its length
        shards = [int(ds.shard_of(i)) for i in order]
        assert sum(a != b for a, b in itertools.pairwise(shards)) <= n_shards - 1  # by shard
        drawn += order
    assert np.mean(out[drawn]) == pytest.approx(0.75, abs=0.02)
    sampler.set_epoch(7)
    again = ShardSampler(ds, seed=3, window=1, weights=weights)
    again.set_epoch(7)
    assert list(again) == list(sampler)
    parts = [list(ShardSampler(ds, seed=0, rank=r, world=2, weights=weights)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(ds) // 2
    with pytest.raises(InputError, match="one non-negative weight per item"):
        ShardSampler(ds, weights=np.ones(len(ds) + 1))
    with pytest.raises(InputError, match="one non-negative weight per item"):
        ShardSampler(ds, weights=np.zeros(len(ds)))


def test_dataloader_with_worker_processes(tiny_data):
    ds = _open(tiny_data, "train", "noisy")
    loader = DataLoader(ds, batch_size=5, sampler=ShardSampler(ds), num_workers=2)
    batches = list(loader)
    assert sum(len(b[0]) for b in batches) == 18
    assert batches[0][0].shape == (5, 3, 16, 16) and batches[0][1].shape == (5, 3)


def test_noise_levels_and_bad_requests(tiny_data, tmp_path):
    assert noise_levels(tiny_data["test_noise"]) == pytest.approx([0.1 * i for i in range(11)])
    with pytest.raises(InputError, match="unknown split"):
        _open(tiny_data, "holdout")
    with pytest.raises(InputError, match="fixed levels"):
        _open(tiny_data, "test", "noisy")
    with pytest.raises(InputError, match="test split only"):
        _open(tiny_data, "train", 0.3)
    with pytest.raises(InputError, match="no variant"):
        _open(tiny_data, "test", 0.35)
    with pytest.raises(InputError, match="no Zarr store"):
        open_dataset("train", "clean", tmp_path / "none.zarr", tmp_path, tmp_path / "s.json")


def test_fresh_noise_shows_a_new_seeded_copy_of_each_clean_texture_every_epoch(tiny_data):
    from spinfer.data.noise import fresh_copy

    clean = open_dataset("train", "clean", **tiny_data)
    fresh = FreshNoiseDataset(clean, 11, (0.0, 1.0), 0.5)
    assert (
        len(fresh) == len(clean) and fresh.out_of_plane().tolist() == clean.out_of_plane().tolist()
    )
    x0, y0 = fresh[(2, 0)]
    x1, y1 = fresh[(2, 1)]
    assert x0.dtype == torch.float32 and x0.shape == clean[2][0].shape
    torch.testing.assert_close(y0, clean[2][1])
    torch.testing.assert_close(y1, y0)
    assert not torch.equal(x0, x1)
    row = int(clean.index[2])
    expected = fresh_copy(clean.spins(2).astype(np.float64), 11, row, 1, (0.0, 1.0), 0.5)
    np.testing.assert_array_equal(x1.numpy(), expected.astype(np.float32).transpose(2, 0, 1))

    sampler = EpochItems(ShardSampler(fresh, True, seed=3))
    sampler.set_epoch(4)
    items = list(sampler)
    assert len(items) == len(sampler) == len(fresh) and {e for _, e in items} == {4}
    order = ShardSampler(fresh, True, seed=3)
    order.set_epoch(4)
    assert [i for i, _ in items] == list(order)
    batch = next(iter(DataLoader(fresh, batch_size=4, sampler=sampler)))
    torch.testing.assert_close(batch[0][0], fresh[items[0]][0])
