"""Training one (model, training data) run: single process or DDP under torchrun.

MSE on normalized (lambda, K, D), Adam, the checkpoint with the lowest validation loss kept
as ``best.pt``; ``last.pt`` is written after every epoch (atomically) and a killed run
resumes from it when its fingerprint (config, model, data, dataset) still matches. Under
``torchrun --nproc_per_node=N`` the same entry point runs DDP (gloo on CPU, nccl on GPU,
autocast on GPU); only rank 0 writes checkpoints and talks to MLflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from spinfer.config import MODEL_NAMES, TRAINING_DATA, Params
from spinfer.data.dataset import ShardSampler, TextureDataset, open_dataset
from spinfer.data.store import MANIFEST
from spinfer.data.symmetry import random_symmetry
from spinfer.errors import ConfigError, InputError, SpinferError, TrainingDiverged
from spinfer.train.models import build_model, count_parameters, is_known_model


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


def run_name(model: str, data: str) -> str:
    return f"{model}-{data}"


def check_run(model: str, data: str) -> None:
    if not is_known_model(model):
        raise ConfigError(
            f"unknown model '{model}' (known: {', '.join(MODEL_NAMES)} or a timm model name)"
        )
    if data not in TRAINING_DATA:
        raise ConfigError(f"unknown training data '{data}' (known: {', '.join(TRAINING_DATA)})")


def pick_device(setting: str, dist: Dist) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("train.device is cuda but no CUDA device is available")
        return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@dataclass(frozen=True)
class RunPaths:
    root: Path
    name: str
    out: Path
    eval_out: Path

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "best.pt"


def run_paths(params: Params, model: str, data: str, root: Path) -> RunPaths:
    name = run_name(model, data)
    return RunPaths(
        root, name, root / params.train.out / name, root / params.train.eval_out / name
    )


def data_paths(params: Params, root: Path) -> dict[str, Path]:
    return {
        "textures": root / params.dataset.out,
        "noisy": root / params.noise.out,
        "splits": root / "artifacts" / "splits.json",
    }


def open_training_data(
    params: Params, data: str, root: Path
) -> tuple[TextureDataset, TextureDataset]:
    """Train and val sets of the chosen variant (``noisy``: a ~ U[0, 1]; ``clean``)."""
    paths = data_paths(params, root)
    variant = "noisy" if data == "noisy" else "clean"
    try:
        train = open_dataset("train", variant, **paths)
        val = open_dataset("val", variant, **paths)
    except InputError as exc:
        raise InputError(f"the dataset lacks what training needs: {exc}") from None
    return train, val


def fingerprint(params: Params, model: str, data: str, root: Path) -> str:
    """What decides the run's weights: a checkpoint is resumed only under the same one.

    The number of epochs is left out on purpose: asking for more epochs continues a run.
    """
    train = dataclasses.asdict(params.train)
    for key in ("loader_workers", "device", "out", "eval_out", "epochs"):
        train.pop(key)
    stores = data_paths(params, root)
    manifests = [
        hashlib.sha256((stores[k] / MANIFEST).read_bytes()).hexdigest()
        for k in ("textures", "noisy")
        if (stores[k] / MANIFEST).is_file()
    ]
    what = {"train": train, "model": model, "data": data, "seed": params.base.seed}
    what["stores"] = manifests
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def save_atomic(obj: Any, path: Path) -> None:
    """Write a checkpoint next to ``path`` and rename it into place: a failed write (disk
    full, file size limit) leaves the previous file as it was and says so in one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports failed writes as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or "the write failed (disk full?)"
        raise SpinferError(f"cannot write checkpoint {path}: {reason}") from None


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_val: float = math.inf
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None


@dataclass(frozen=True)
class TrainResult:
    name: str
    paths: RunPaths
    state: TrainState
    resumed_from: int
    seconds: float
    run_id: str | None


def _loader(ds: TextureDataset, params: Params, sampler: ShardSampler) -> DataLoader:
    workers = params.train.loader_workers
    return DataLoader(
        ds,
        batch_size=params.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def _epoch_pass(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: bool,
    optimizer: torch.optim.Optimizer | None,
    bar: tqdm | None,
    augment: np.random.Generator | None = None,
) -> tuple[float, float, int]:
    """One pass; returns the sums of squared and of absolute errors (over items and
    outputs) and the item count. A non-finite loss raises TrainingDiverged.

    With ``augment`` (training only) every image gets a random symmetry of the Hamiltonian
    (D4 x time reversal, then a periodic translation): the targets are unchanged.
    """
    training = optimizer is not None
    model.train(training)
    total, total_abs, count = 0.0, 0.0, 0
    loss_fn = nn.MSELoss()
    for x, y in loader:
        if augment is not None:
            x = torch.stack([random_symmetry(item, augment) for item in x])
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with (
            torch.set_grad_enabled(training),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp),
        ):
            pred = model(x).float()
            loss = loss_fn(pred, y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the {'training' if training else 'validation'} loss is {float(loss.detach())}"
            )
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total += float(loss.detach()) * len(x) * y.shape[1]
        total_abs += float((pred.detach() - y).abs().sum())
        count += len(x)
        if bar is not None:
            bar.update(len(x))
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return total, total_abs, count


def _all_sum(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def train_run(
    params: Params,
    model_name: str,
    data: str,
    root: Path | str = ".",
    resume: bool = True,
    progress: bool | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train one run to ``train.epochs[model]`` epochs (resuming), logging to MLflow.

    ``on_epoch`` is called with every epoch's record on rank 0 (a tuning study reports to
    its pruner there; an exception it raises stops the run). ``tags`` go on the MLflow run
    (``mlflow.parentRunId`` nests it under a study). A non-finite loss raises
    TrainingDiverged and marks the MLflow run failed; ``best.pt`` keeps the best epoch.
    """
    check_run(model_name, data)
    start_time = time.perf_counter()
    root = Path(root)
    dist = Dist.from_env()
    device = pick_device(params.train.device, dist)
    if dist.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    amp = params.train.amp and device.type == "cuda"
    paths = run_paths(params, model_name, data, root)
    train_ds, val_ds = open_training_data(params, data, root)
    fp = fingerprint(params, model_name, data, root)
    epochs = params.train.epochs.get(model_name, 1)

    torch.manual_seed(params.base.seed)
    net = build_model(model_name, params.train.cnn_width, params.train.cnn_depth).to(device)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=params.train.lr, weight_decay=params.train.weight_decay
    )
    state = TrainState()
    if resume and paths.last.is_file():
        ckpt = torch.load(paths.last, map_location=device, weights_only=False)
        if ckpt.get("fingerprint") == fp:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            state = TrainState(**ckpt["state"])
    resumed_from = state.epoch
    model = net
    if dist.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)

    seed = params.base.seed
    train_sampler = ShardSampler(train_ds, True, seed, dist.rank, dist.world)
    val_sampler = ShardSampler(val_ds, False, seed, dist.rank, dist.world)
    train_loader = _loader(train_ds, params, train_sampler)
    val_loader = _loader(val_ds, params, val_sampler)

    tracker = _Tracker(params, paths, root, state, dist, model_name, data, net, tags)
    show = (sys.stderr.isatty() if progress is None else progress) and dist.main
    try:
        for epoch in range(state.epoch, epochs):
            train_sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            bar = tqdm(
                total=len(train_sampler),
                desc=f"{paths.name} {epoch + 1}/{epochs}",
                unit="img",
                disable=not show,
                leave=False,
            )
            rng = np.random.default_rng([seed, epoch, dist.rank]) if params.train.augment else None
            try:
                sse, _, n = _epoch_pass(model, train_loader, device, amp, optimizer, bar, rng)
            finally:
                bar.close()
            vsse, vsae, vn = _epoch_pass(model, val_loader, device, amp, None, None)
            sse, n, vsse, vsae, vn = _all_sum([sse, n, vsse, vsae, vn], dist, device)
            record = {
                "epoch": epoch + 1,
                "train_loss": sse / (3 * n),
                "val_loss": vsse / (3 * vn),
                "val_mae": vsae / (3 * vn),
                "seconds": time.perf_counter() - t0,
            }
            state.history.append(record)
            state.epoch = epoch + 1
            improved = record["val_loss"] < state.best_val
            if improved:
                state.best_val, state.best_epoch = record["val_loss"], epoch + 1
            if dist.main:
                if improved:
                    save_atomic(
                        _best_payload(net, params, model_name, data, train_ds, state), paths.best
                    )
                save_atomic(
                    {
                        "fingerprint": fp,
                        "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "state": dataclasses.asdict(state),
                    },
                    paths.last,
                )
                tracker.epoch(record)
                print(
                    f"{paths.name} epoch {epoch + 1}/{epochs}: train {record['train_loss']:.5f} "
                    f"val {record['val_loss']:.5f} ({record['seconds']:.1f} s)"
                    + (" *" if improved else ""),
                    file=sys.stderr,
                )
                if on_epoch is not None:
                    on_epoch(record)
            if dist.world > 1:
                torch.distributed.barrier()
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    return TrainResult(
        paths.name, paths, state, resumed_from, time.perf_counter() - start_time, state.run_id
    )


def _best_payload(net, params, model_name, data, train_ds, state) -> dict[str, Any]:
    """Everything needed to rebuild the model and map its outputs to physical units."""
    return {
        "model_name": model_name,
        "training_data": data,
        "cnn_width": params.train.cnn_width,
        "cnn_depth": params.train.cnn_depth,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "scaler": train_ds.scaler.as_dict(),
        "size": int(train_ds.spins(0).shape[0]),
        "epoch": state.epoch,
        "val_loss": state.best_val,
        "parameters": count_parameters(net),
    }


class _Tracker:
    """MLflow for rank 0: one run per (model, data); a resumed run continues its run."""

    def __init__(self, params, paths, root, state, dist, model_name, data, net, tags) -> None:
        self.enabled = dist.main
        self.state = state
        if not self.enabled:
            return
        import mlflow

        from spinfer.tracking import flat_params, provenance_tags, setup_tracking

        experiment = setup_tracking(params, root)
        if state.run_id is not None and _run_exists(state.run_id):
            run = mlflow.start_run(run_id=state.run_id)
        else:  # a new run, or the store lost it: start one and replay the history
            run = mlflow.start_run(experiment_id=experiment, run_name=paths.name)
            extra, tags = tags, provenance_tags(params, root)
            mlflow.log_params(flat_params(params))
            mlflow.log_params(
                {
                    "dataset_hash": tags["dataset.textures"],
                    "noisy_dataset_hash": tags["dataset.noisy"],
                    "git_commit": tags["git_commit"],
                    "model": model_name,
                    "training_data": data,
                    "parameters": count_parameters(net),
                }
            )
            mlflow.set_tags(
                {
                    "architecture": model_name,
                    "training_data": data,
                    "run": paths.name,
                    "kind": "training",
                    **tags,
                    **(extra or {}),
                }
            )
        state.run_id = run.info.run_id
        mlflow.end_run()
        if state.history and not _has_history(state.run_id):
            for record in state.history:
                self.epoch(record)

    def epoch(self, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        import mlflow

        step = int(record["epoch"])
        with mlflow.start_run(run_id=self.state.run_id):
            mlflow.log_metrics(
                {
                    "train_loss": record["train_loss"],
                    "val_loss": record["val_loss"],
                    **({"val_mae": record["val_mae"]} if "val_mae" in record else {}),
                    "epoch_seconds": record["seconds"],
                    "best_val_loss": self.state.best_val,
                },
                step=step,
            )

    def end(self, status: str) -> None:
        """Mark the MLflow run as ended with ``status`` (FAILED, KILLED) after an error."""
        if not self.enabled or self.state.run_id is None:
            return
        import mlflow

        mlflow.MlflowClient().set_terminated(self.state.run_id, status=status)


def _run_exists(run_id: str) -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def _has_history(run_id: str) -> bool:
    import mlflow

    return bool(mlflow.MlflowClient().get_metric_history(run_id, "train_loss"))


def load_best(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The best-validation model (eval mode) and its payload."""
    if not Path(path).is_file():
        raise InputError(f"no checkpoint at {path} (train the run first)")
    payload = torch.load(path, map_location=device, weights_only=False)
    net = build_model(payload["model_name"], payload["cnn_width"], payload.get("cnn_depth", 3))
    net.load_state_dict(payload["model"])
    return net.to(device).eval(), payload


def predict_normalized(
    net: nn.Module, ds: TextureDataset, batch: int = 200, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(N, 3) normalized predictions over a dataset, in its order."""
    loader = DataLoader(ds, batch_size=batch, shuffle=False)
    out = []
    with torch.no_grad():
        for x, _ in loader:
            out.append(net(x.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 3))
