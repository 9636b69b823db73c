"""PyTorch access to the stores: lazy, shard by shard, for any split and noise variant.

``open_dataset(split, noise)`` gives a map-style Dataset of (x, y) with x the (3, L, L)
float32 image (Sx, Sy, Sz) and y the targets (lambda, K, D) normalized to [0, 1] by the
ranges recorded in the store. Nothing is read until an item is asked for; a whole shard
is then decoded at once and kept (per process, ``cache_shards`` of them), so a
``ShardSampler`` that walks windows of as many shards reads every file once per epoch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset, Sampler

from spinfer.data.microscope import MICROSCOPE
from spinfer.data.noise import fresh_copy, level_group
from spinfer.data.split import SPLITS, load_splits
from spinfer.data.store import open_store, store_meta
from spinfer.data.targets import TargetScaler
from spinfer.errors import InputError
from spinfer.physics.observables import OUT_OF_PLANE

NOISE_VARIANTS = ("clean", "noisy")


UNIT_TOLERANCE = 1e-2  # |S| - 1 allowed in a stored texture (float16 storage included)


def check_block(block: np.ndarray, start: int, where: str) -> None:
    """Refuse textures holding NaN/inf or vectors far from unit length (zero vectors too),
    naming the first bad texture: they would turn the loss into NaN."""
    finite = np.isfinite(block).all(axis=(1, 2, 3))
    with np.errstate(invalid="ignore"):
        norm = np.linalg.norm(block.astype(np.float32), axis=-1)
        off = np.abs(norm - 1.0).max(axis=(1, 2))
    bad = ~finite | ~(off <= UNIT_TOLERANCE)
    if bad.any():
        i = int(np.argmax(bad))
        what = "NaN or infinite values" if not finite[i] else f"|S| off by {off[i]:.3g}"
        raise InputError(f"{where}: texture {start + i} holds {what}")


class TextureDataset(Dataset):
    """Rows ``index`` of the (N, L, L, 3) array ``array`` in the store at ``store``."""

    def __init__(
        self,
        store: Path | str,
        array: str,
        index: np.ndarray,
        params: np.ndarray,
        scaler: TargetScaler,
        name: str = "",
        cached_shards: int = 2,
        mean_abs_sz: np.ndarray | None = None,
    ) -> None:
        self.store = str(store)
        self.array_path = array
        self.index = np.asarray(index, dtype=np.int64)
        self.params = np.asarray(params, dtype=np.float64).reshape(-1, 3)
        # per item, of the clean texture it shows (noise leaves the phase alone)
        self.mean_abs_sz = None if mean_abs_sz is None else np.asarray(mean_abs_sz, np.float64)
        self.scaler = scaler
        self.name = name
        self._targets = torch.from_numpy(scaler.normalize(self.params).astype(np.float32))
        self._cached = cached_shards
        self._array: zarr.Array | None = None
        self._shards: OrderedDict[int, np.ndarray] = OrderedDict()
        self.shard_size = int(self._open().shards[0])

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # reopened in each DataLoader worker
        state["_shards"] = OrderedDict()
        return state

    def _open(self) -> zarr.Array:
        if self._array is None:
            self._array = zarr.open_array(Path(self.store) / self.array_path, mode="r")
        return self._array

    def shard_of(self, i: int | np.ndarray) -> int | np.ndarray:
        """The storage shard that item ``i`` lives in."""
        return self.index[i] // self.shard_size

    def _shard(self, k: int) -> np.ndarray:
        block = self._shards.get(k)
        if block is None:
            start = k * self.shard_size
            block = self._open()[start : start + self.shard_size]
            check_block(block, start, f"{self.store}/{self.array_path}")
            self._shards[k] = block
            while len(self._shards) > self._cached:
                self._shards.popitem(last=False)
        else:
            self._shards.move_to_end(k)
        return block

    def out_of_plane(self) -> np.ndarray:
        """(N,) bool: the item's texture is out of plane (mean |Sz| above OUT_OF_PLANE)."""
        if self.mean_abs_sz is None:
            raise InputError(
                f"{self.store}: no mean |Sz| per texture (the texture store's mean_abs_sz "
                "column) to tell out-of-plane textures from in-plane ones"
            )
        return self.mean_abs_sz > OUT_OF_PLANE

    def cache_shards(self, n: int) -> None:
        """Keep up to ``n`` decoded shards per process (LRU)."""
        self._cached = max(1, int(n))

    def spins(self, i: int) -> np.ndarray:
        """Item ``i`` as stored: (L, L, 3) in the store's dtype."""
        row = int(self.index[i])
        return self._shard(row // self.shard_size)[row % self.shard_size]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(self.spins(i).transpose(2, 0, 1)))
        return x.float(), self._targets[i]

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self[i] for i in items]


class FreshNoiseDataset(TextureDataset):
    """Clean textures shown as a new noisy copy every epoch (spinfer.data.noise.fresh_copy):
    items are (i, epoch) pairs, which ``EpochItems`` makes of a sampler's indices."""

    def __init__(
        self,
        clean: TextureDataset,
        seed: int,
        amplitude: tuple[float, float],
        microscope: float,
        psf_sigma: tuple[float, float] = MICROSCOPE["psf_sigma"],
    ) -> None:
        super().__init__(
            clean.store, clean.array_path, clean.index, clean.params, clean.scaler,
            clean.name.replace("/clean", "/fresh noise"), clean._cached, clean.mean_abs_sz,
        )  # fmt: skip
        self.seed = int(seed)
        self.amplitude = (float(amplitude[0]), float(amplitude[1]))
        self.microscope = float(microscope)
        self.psf_sigma = (float(psf_sigma[0]), float(psf_sigma[1]))

    def copy(self, i: int, epoch: int) -> np.ndarray:
        """Item ``i``'s (L, L, 3) copy of epoch ``epoch``, float32."""
        row = int(self.index[i])
        noisy = fresh_copy(
            self.spins(i), self.seed, row, epoch, self.amplitude, self.microscope, self.psf_sigma
        )
        return noisy.astype(np.float32)

    def __getitem__(self, item) -> tuple[torch.Tensor, torch.Tensor]:
        i, epoch = item
        x = torch.from_numpy(np.ascontiguousarray(self.copy(i, epoch).transpose(2, 0, 1)))
        return x, self._targets[i]


class EpochItems(Sampler):
    """A sampler's indices paired with its epoch, for datasets that draw per epoch."""

    def __init__(self, sampler: ShardSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((i, epoch) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class ShardSampler(Sampler[int]):
    """Shuffle shard order, then items within each window of ``window`` consecutive shards
    (1: shard by shard), seeded per epoch.

    A shard holds consecutive grid points, which run over D first: shard by shard, a batch
    sees one or two values of D, and batch normalization then removes exactly what the
    network should read. Training mixes every shard the dataset's cache can hold
    (``shuffle_window``). With ``world > 1`` (DDP) every rank gets a disjoint, equally long
    share of the items (padded by repetition like ``DistributedSampler``).

    ``weights`` (per item, summing to 1; see ``phase_weights``): each epoch draws as many
    items as the dataset holds, with replacement, item i with probability ``weights[i]``
    (seeded per epoch), instead of every item once.
    """

    def __init__(
        self,
        dataset: TextureDataset,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        window: int = 1,
        weights: np.ndarray | None = None,
    ) -> None:
        self.shards = np.asarray(dataset.shard_of(np.arange(len(dataset))))
        self.shuffle, self.seed, self.rank, self.world = shuffle, seed, rank, world
        self.window = max(1, int(window))
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != self.shards.shape or (weights < 0).any() or weights.sum() <= 0:
                raise InputError("sampler weights: one non-negative weight per item, not all 0")
            weights = weights / weights.sum()
        self.weights = weights
        self.epoch = 0
        self.per_rank = -(-len(dataset) // world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        items = np.arange(len(self.shards))
        if not self.shuffle:
            return items
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        keys = np.unique(self.shards)
        rank_of = dict(zip(keys.tolist(), rng.permutation(len(keys)).tolist(), strict=True))
        if self.weights is not None:
            items = np.sort(rng.choice(len(items), size=len(items), p=self.weights))
        primary = np.array([rank_of[s] // self.window for s in self.shards[items].tolist()])
        return items[np.lexsort((rng.random(len(items)), primary))]

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        total = self.per_rank * self.world
        if total > len(order):
            order = np.concatenate([order, order[: total - len(order)]])
        # contiguous blocks per rank keep each rank on few shards
        return iter(order[self.rank * self.per_rank : (self.rank + 1) * self.per_rank].tolist())

    def __len__(self) -> int:
        return self.per_rank


def phase_weights(out_of_plane: np.ndarray, share: float | None) -> np.ndarray | None:
    """Sampling weights that give out-of-plane items ``share`` of the draws (None: none).

    A uniform in-plane state is torque-free for every coupling, so it holds nothing of
    (lambda, K, D); most textures of the paper's K range are in plane. Drawing out-of-plane
    textures more often spends the training steps where the couplings can be read. With
    one phase only there is nothing to balance (None).
    """
    out = np.asarray(out_of_plane, dtype=bool)
    n_out = int(out.sum())
    if share is None or n_out in (0, len(out)):
        return None
    return np.where(out, share / n_out, (1.0 - share) / (len(out) - n_out))


def shuffle_window(dataset: TextureDataset, budget_bytes: int = 1 << 30) -> int:
    """Shards to mix per window: all of them if their decoded spins fit ``budget_bytes``
    (the default's 480 training textures take 58 MB), else as many as fit (at least 2)."""
    n_shards = len(np.unique(dataset.shard_of(np.arange(len(dataset)))))
    shard_bytes = dataset.shard_size * dataset.spins(0).nbytes
    return int(min(n_shards, max(2, budget_bytes // max(shard_bytes, 1))))


def open_dataset(
    split: str,
    noise: str | float = "clean",
    textures: Path | str = "artifacts/textures.zarr",
    noisy: Path | str = "artifacts/noisy.zarr",
    splits: Path | str = "artifacts/splits.json",
    test_noise: Path | str = "artifacts/test_noise.zarr",
) -> TextureDataset:
    """One split in one noise variant.

    ``noise``: ``"clean"`` (the annealed textures), ``"noisy"`` (train/val: a ~ U[0, 1] per
    texture, from the store ``noisy``) or a test level Ts (a float, e.g. 0.3; test split
    only, from the store ``test_noise``).
    """
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    if noise == "clean":
        group = open_store(textures)
        index = np.asarray(load_splits(splits)[split], dtype=np.int64)
        if len(index) == 0:
            raise InputError(f"the '{split}' split of {splits} is empty")
        params = group["params"][:][index]
        scaler = TargetScaler.from_meta(store_meta(group))
        return TextureDataset(
            textures, "spins", index, params, scaler, f"{split}/clean",
            mean_abs_sz=_column(group, "mean_abs_sz", index),
        )  # fmt: skip
    if noise == "noisy":
        if split == "test":
            raise InputError("the test split has fixed levels: pass noise=Ts (0.0 .. 1.0)")
        name = split
    else:
        noisy = test_noise
        if split != "test":
            raise InputError(f"noise levels Ts exist for the test split only, not '{split}'")
        try:
            level = float(noise)
        except (TypeError, ValueError):
            raise InputError(
                f"noise must be one of {', '.join(NOISE_VARIANTS)} or a level Ts, got {noise!r}"
            ) from None
        name = f"test/{level_group(level)}"
    group = open_store(noisy)
    if name not in group:
        raise InputError(f"{noisy} has no variant '{name}'")
    sub = group[name]
    index = sub["index"][:]
    if len(index) == 0:
        raise InputError(f"variant '{name}' of {noisy} is empty")
    scaler = TargetScaler.from_meta(store_meta(group))
    return TextureDataset(
        noisy, f"{name}/spins", np.arange(len(index)), sub["params"][:], scaler, name,
        mean_abs_sz=_texture_column(textures, "mean_abs_sz", index),
    )  # fmt: skip


def _texture_column(textures: Path | str, column: str, rows: np.ndarray) -> np.ndarray | None:
    """A per-texture column of the texture store at ``rows`` (noisy copies name their
    texture's row in ``index``); None where the store or the column is absent."""
    if not (Path(textures) / "zarr.json").is_file():
        return None
    return _column(open_store(textures), column, rows)


def _column(group, column: str, rows: np.ndarray) -> np.ndarray | None:
    """``column`` of an open texture store at ``rows``; None where the store lacks it."""
    return group[column][:][np.asarray(rows)] if column in group else None


def noise_levels(test_noise: Path | str = "artifacts/test_noise.zarr") -> list[float]:
    """The test noise levels Ts present in a test-noise store, ascending."""
    meta = store_meta(open_store(test_noise))
    return sorted(float(t) for t in meta["noise"]["test_levels"])
