"""Training-step throughput of each model against the data loader's, on this machine.

For resnet18, resnet50 and cnn: images/s of a full training step (forward, MSE, backward,
Adam) at 100 x 100 on the GPU when one is available, else on the CPU threads torch uses;
and the DataLoader's textures/s from a scratch Zarr store in the real layout (augmentation
included). The loader must not be the bottleneck: ``loader_margin`` = loader / fastest
model (target > 1). Last line: key=value pairs.

    python benchmarks/train_speed.py [--batch 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spinfer.config import OPERATIONS
from spinfer.data.dataset import ShardSampler, open_dataset
from spinfer.data.symmetry import Augmenter
from spinfer.models.networks import build_model

L = 100


def step_rate(name: str, batch: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(name).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, L, L, device=device)
    y = torch.rand(batch, 3, device=device)
    amp = device.type == "cuda"

    def one() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def loader_rate(n: int, batch: int) -> float:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from loader_speed import scratch_store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch_store(root, n, 50)
        ds = open_dataset("train", "clean", root / "textures.zarr", root, root / "splits.json")
        loader = DataLoader(ds, batch_size=batch, sampler=ShardSampler(ds))
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        count = 0
        augment = Augmenter(OPERATIONS)  # as in training: a random element + translation
        for x, y in loader:
            x, y = augment(x, y, rng)
            count += len(x)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--textures", type=int, default=1000)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}"
    )
    rates = {
        name: step_rate(name, args.batch, args.steps, device)
        for name in ("cnn", "resnet18", "resnet50")
    }
    loader = loader_rate(args.textures, args.batch)
    for name, rate in rates.items():
        print(f"{name:9s} training step: {rate:8.1f} images/s on {where}")
    print(f"loader (with augmentation): {loader:8.1f} textures/s, single process")
    margin = loader / max(rates.values())
    print(f"loader / fastest model: {margin:.1f}x ({'PASS' if margin > 1 else 'FAIL'}: > 1)")
    print(
        f"device={where.replace(' ', '_')} "
        + " ".join(f"{k}_per_s={v:.1f}" for k, v in rates.items())
        + f" loader_per_s={loader:.1f} loader_margin={margin:.2f}"
    )


if __name__ == "__main__":
    main()
