"""Where a process sits in a torchrun job, its device, and the process group's life.

``torchrun --nproc_per_node=N`` sets RANK, WORLD_SIZE and LOCAL_RANK; a plain run is rank 0
of 1. The group is started by the first training in the process (gloo on CPU, nccl on CUDA)
and ended once by the command that started it (:func:`teardown`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from spinfer.errors import InputError


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(setting: str, dist: Dist) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("train.device is cuda but no CUDA device is available")
        return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_group(dist: Dist, device: torch.device) -> None:
    """Start the process group once (DDP) and bind this process to its GPU."""
    if dist.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)


def teardown() -> None:
    """End the process group if one was started (a no-op in a plain run)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
