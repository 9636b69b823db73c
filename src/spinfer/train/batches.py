"""Training batches cut from device memory: a split's images copied to the device once.

A GPU trains a small ResNet on 100x100 images faster than a DataLoader can decode, collate,
pin and copy them (~2,000 images/s measured on one H200). A split of the gpu profile takes
a few hundred MB as float32 and the paper's 56,000 training textures 6.7 GB, so the whole
split can wait on the device and each batch is one gather there. The batches are the ones
the DataLoader would give: the sampler's order cut into ``batch_size`` runs, the last one
short, the same float32 values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from spinfer.data.dataset import FreshNoiseDataset, TextureDataset
from spinfer.errors import InputError

log = logging.getLogger(__name__)

DEVICE_SHARE = 0.5  # of the device's free memory the preloaded images may take


def image_bytes(ds: TextureDataset) -> int:
    """Bytes of a dataset's images as float32."""
    return len(ds) * 4 * int(ds.spins(0).size)


def should_preload(
    setting: bool | str, datasets: list[TextureDataset], device: torch.device
) -> bool:
    """Whether to preload ``datasets`` onto ``device`` for ``train.preload`` (true, false,
    auto). ``auto`` preloads on CUDA when they take under DEVICE_SHARE of its free memory;
    ``true`` that does not fit there is an InputError. Fresh noisy copies never preload."""
    if setting is False or any(isinstance(d, FreshNoiseDataset) for d in datasets):
        return False
    if device.type != "cuda":
        return setting is True
    need = sum(image_bytes(d) for d in datasets)
    free, _ = torch.cuda.mem_get_info(device)
    fits = need <= DEVICE_SHARE * free
    if setting is True and not fits:
        raise InputError(
            f"train.preload: the images take {need / 2**30:.1f} GiB, more than half of the "
            f"{free / 2**30:.1f} GiB free on {device}; set train.preload to auto or false"
        )
    return fits


class DeviceBatches:
    """(x, y) batches of ``ds`` in ``sampler``'s order, cut from tensors on ``device``.

    Stands in for a DataLoader over the same dataset, sampler and batch size (no
    ``drop_last``): ``len`` is the number of batches and ``set_epoch`` goes to the
    sampler through the caller, as with a loader.
    """

    def __init__(
        self, ds: TextureDataset, sampler: Sampler, batch_size: int, device: torch.device
    ) -> None:
        if isinstance(ds, FreshNoiseDataset):
            raise InputError("fresh noisy copies are drawn per epoch and cannot be preloaded")
        self.sampler, self.batch_size, self.device = sampler, int(batch_size), device
        first, target = ds[0]
        images = torch.empty((len(ds), *first.shape), dtype=first.dtype)
        targets = torch.empty((len(ds), *target.shape), dtype=target.dtype)
        for i in range(len(ds)):  # in store order: shard by shard through the dataset's cache
            images[i], targets[i] = ds[i]
        self.images, self.targets = images.to(device), targets.to(device)
        log.debug("%s: %d images preloaded on %s", ds.name, len(ds), device)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.images.index_select(0, idx), self.targets.index_select(0, idx)
