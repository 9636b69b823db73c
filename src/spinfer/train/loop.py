"""Training one (model, training data) run: single process or DDP under torchrun.

MSE on normalized (lambda, K, D) (``head: point``) or the beta-NLL of a mean and variance
(``head: gaussian``), Adam, the checkpoint with the lowest validation MSE kept as
``best.pt``; ``last.pt`` is written after every epoch (atomically) and a killed run resumes
from it when its fingerprint (config, model, data, dataset) still matches. An ensemble
(``train.ensemble: N``) trains N members under ``<run>/member<k>/`` with seeds base.seed + k,
each a nested MLflow run under the ensemble's run, each resumable on its own. Under
``torchrun --nproc_per_node=N`` the same entry point runs DDP (gloo on CPU, nccl on GPU,
autocast on GPU); only rank 0 writes checkpoints and talks to MLflow.
"""

from __future__ import annotations

import dataclasses
import logging
import math
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

from spinfer.config import Params
from spinfer.data.dataset import (
    EpochItems,
    FreshNoiseDataset,
    ShardSampler,
    TextureDataset,
    phase_weights,
    shuffle_window,
)
from spinfer.data.symmetry import Augmenter
from spinfer.errors import InputError, TrainingDiverged
from spinfer.models.networks import (
    build_model,
    count_parameters,
    lambda_offset,
    net_from_payload,
    outputs_of,
    save_atomic,
    split_output,
)
from spinfer.train.batches import DeviceBatches, should_preload
from spinfer.train.distributed import Dist, init_group, pick_device
from spinfer.train.fingerprint import fingerprint
from spinfer.train.runs import (
    RunPaths,
    check_run,
    member_params,
    member_paths,
    open_training_data,
    run_paths,
)
from spinfer.train.tracker import Tracker, start_run

log = logging.getLogger(__name__)


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


def _phase_weights(ds: TextureDataset, share: float | None) -> tuple[np.ndarray | None, dict]:
    """The training sampler's weights for ``train.out_of_plane_share`` (None: none) and
    the MLflow tag that says what they balance."""
    if share is None:
        return None, {}
    out = ds.out_of_plane()
    weights = phase_weights(out, share)
    drawn = f"drawn as {share:.0%} of each epoch" if weights is not None else "one phase only"
    return weights, {"out_of_plane_textures": f"{out.sum()} of {len(out)}, {drawn}"}


def _loader(
    ds: TextureDataset, params: Params, sampler: ShardSampler, device: torch.device
) -> DataLoader:
    workers = params.train.loader_workers
    return DataLoader(
        ds,
        batch_size=params.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",  # page-locked batches: asynchronous copies
    )


def make_optimizer(net: nn.Module, params: Params) -> torch.optim.Optimizer:
    """AdamW: decoupled weight decay (Loshchilov & Hutter); Adam itself at decay 0."""
    return torch.optim.AdamW(
        net.parameters(), lr=params.train.lr, weight_decay=params.train.weight_decay
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step learning-rate schedule (None = constant). ``onecycle`` is torch's OneCycleLR
    (Smith 2018): from lr/25 up to ``train.lr`` over the first 10 % of the steps (at least
    two), then a cosine down to lr/25e4, with Adam's beta1 cycling 0.95 -> 0.85 -> 0.95."""
    if schedule == "constant":
        return None
    total = max(total_steps, 4)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=total,
        pct_start=max(0.1, 2 / total),
    )


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise negative log-likelihood of y under N(mean, exp(log_var))."""
    return 0.5 * (log_var + (y - mean) ** 2 / log_var.exp() + math.log(2 * math.pi))


def objective(
    mean: torch.Tensor, log_var: torch.Tensor | None, y: torch.Tensor, beta: float
) -> torch.Tensor:
    """MSE (point head) or beta-NLL: the NLL weighted by the detached variance**beta, so
    beta = 1 trains the mean exactly as MSE does while the variance is learned."""
    if log_var is None:
        return ((mean - y) ** 2).mean()
    nll = gaussian_nll(mean, log_var, y)
    if beta > 0:
        nll = nll * log_var.detach().exp() ** beta
    return nll.mean()


def _epoch_pass(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: bool,
    optimizer: torch.optim.Optimizer | None,
    bar: tqdm | None,
    head: str = "point",
    beta: float = 1.0,
    augment: tuple[Augmenter, np.random.Generator] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, float]:
    """One pass; returns sums over items of the objective, and over items and outputs of
    the squared and absolute errors of the means and of the Gaussian NLL, with the item
    count ``n`` (and the learning rate of the last update as ``lr``). A non-finite loss
    raises TrainingDiverged at the end of the pass.

    With ``augment`` (training only) every image gets a random symmetry of the Hamiltonian
    (labels follow the lambda-reversing ones); ``scheduler`` steps after every update.
    """
    training = optimizer is not None
    model.train(training)
    keys = ("loss", "sse", "sae", "nll")
    # summed on the device, read once per pass: no host-device sync per step, so the host
    # prepares the next batch while the device computes this one
    acc = torch.zeros(len(keys), dtype=torch.float64, device=device)
    n, lr = 0, None
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:  # exact permutations and negations, on the device
            x, y = augment[0](x, y, augment[1])
        x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.set_grad_enabled(training),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp),
        ):
            mean, log_var = split_output(model(x).float(), head)
            loss = objective(mean, log_var, y, beta)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]  # the rate this update used
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        err = mean.detach() - y
        nll = (
            gaussian_nll(mean.detach(), log_var.detach(), y).sum()
            if log_var is not None
            else torch.zeros((), device=device)
        )
        acc += torch.stack(
            (
                loss.detach().double() * len(x),
                (err**2).sum().double(),
                err.abs().sum().double(),
                nll.double(),
            )
        )
        n += len(x)
        if bar is not None:
            bar.update(len(x))
            if not bar.disable:  # a terminal's bar only: reading the loss waits for the device
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    sums = dict(zip(keys, acc.tolist(), strict=True))
    sums["n"] = float(n)
    if not math.isfinite(sums["loss"]):
        what = "training" if training else "validation"
        raise TrainingDiverged(f"the {what} loss is {sums['loss'] / max(n, 1)}")
    if training:
        sums["lr"] = lr
    return sums


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
    root = Path(root)
    paths = run_paths(params, model_name, data, root)
    if params.train.ensemble is None:
        return _train_one(params, model_name, data, root, paths, resume, progress, on_epoch, tags)
    return _train_ensemble(params, model_name, data, root, paths, resume, progress, tags)


def _train_ensemble(params, model_name, data, root, paths, resume, progress, tags) -> TrainResult:
    """Members one after the other (each resumable), nested under one MLflow run."""
    start_time = time.perf_counter()
    dist = Dist.from_env()
    parent = _ensemble_run(params, model_name, data, root, paths, tags) if dist.main else None
    results = []
    for k in range(params.train.ensemble):
        member_tags = {"kind": "member", "member": str(k)}
        if parent is not None:
            member_tags["mlflow.parentRunId"] = parent
        results.append(
            _train_one(
                member_params(params, k),
                model_name,
                data,
                root,
                member_paths(paths, k),
                resume,
                progress,
                None,
                member_tags,
            )
        )
    state = TrainState(
        epoch=min(r.state.epoch for r in results),
        best_val=float(np.mean([r.state.best_val for r in results])),
        best_epoch=max(r.state.best_epoch for r in results),
        run_id=parent,
    )
    resumed = min(r.resumed_from for r in results)
    return TrainResult(paths.name, paths, state, resumed, time.perf_counter() - start_time, parent)


def _ensemble_run(params, model_name, data, root, paths, tags) -> str:
    """The ensemble's MLflow run (created once; its id kept in <run>/ensemble.json)."""
    import mlflow

    from spinfer.tracking import recorded_run, setup_tracking

    experiment = setup_tracking(params, root)

    def create() -> str:
        t = params.train
        net = build_model(model_name, t.cnn_width, t.cnn_depth, outputs_of(t.head))
        run_id = start_run(params, root, experiment, paths.name, model_name, data, net, tags)
        mlflow.end_run()  # the members' runs nest under it; evaluation reopens it
        mlflow.MlflowClient().set_tag(run_id, "ensemble", str(params.train.ensemble))
        return run_id

    return recorded_run(paths.out / "ensemble.json", create, members=params.train.ensemble)


def _train_one(params, model_name, data, root, paths, resume, progress, on_epoch, tags):
    start_time = time.perf_counter()
    dist = Dist.from_env()
    device = pick_device(params.train.device, dist)
    init_group(dist, device)
    amp = params.train.amp and device.type == "cuda"
    head, beta = params.train.head, params.train.beta
    train_ds, val_ds = open_training_data(params, data, root)
    fp = fingerprint(params, model_name, data, root)
    epochs = params.train.epochs.get(model_name, 1)
    augmenter = None
    if params.train.augment_ops:
        augmenter = Augmenter(params.train.augment_ops, lambda_offset(train_ds.scaler))

    torch.manual_seed(params.base.seed)
    net = build_model(
        model_name, params.train.cnn_width, params.train.cnn_depth, outputs_of(head)
    ).to(device, memory_format=torch.channels_last)  # NHWC: ~25 % faster convs on CPU too
    optimizer = make_optimizer(net, params)
    state, resumed = TrainState(), None
    if resume and paths.last.is_file():
        ckpt = torch.load(paths.last, map_location=device, weights_only=False)
        if ckpt.get("fingerprint") == fp:
            net.load_state_dict(ckpt["model"])
            state, resumed = TrainState(**ckpt["state"]), ckpt
    resumed_from = state.epoch
    model = net
    if dist.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)

    seed = params.base.seed
    window = shuffle_window(train_ds)
    train_ds.cache_shards(window)
    weights, phase_tag = _phase_weights(train_ds, params.train.out_of_plane_share)
    if phase_tag:
        log.debug("%s: out-of-plane training textures %s", paths.name, phase_tag)
        tags = {**(tags or {}), **phase_tag}
    train_sampler = ShardSampler(train_ds, True, seed, dist.rank, dist.world, window, weights)
    if isinstance(train_ds, FreshNoiseDataset):  # a new noisy copy of every texture each epoch
        train_sampler = EpochItems(train_sampler)
    val_sampler = ShardSampler(val_ds, False, seed, dist.rank, dist.world)
    if should_preload(params.train.preload, [train_ds, val_ds], device):
        batch = params.train.batch_size
        train_loader = DeviceBatches(train_ds, train_sampler, batch, device)
        val_loader = DeviceBatches(val_ds, val_sampler, batch, device)
    else:
        train_loader = _loader(train_ds, params, train_sampler, device)
        val_loader = _loader(val_ds, params, val_sampler, device)
    scheduler = make_scheduler(optimizer, params.train.lr_schedule, epochs * len(train_loader))
    if resumed is not None:  # after the scheduler, whose start resets the rates
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resumed["scheduler"])

    tracker = Tracker(params, paths, root, state, dist, model_name, data, net, tags)
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
            aug = None
            if augmenter is not None:
                aug = (augmenter, np.random.default_rng([seed, epoch, dist.rank]))
            try:
                tr = _epoch_pass(
                    model, train_loader, device, amp, optimizer, bar, head, beta, aug, scheduler
                )
            finally:
                bar.close()
            va = _epoch_pass(model, val_loader, device, amp, None, None, head, beta)
            lr = tr["lr"]
            keys = ("loss", "sse", "n")
            totals = _all_sum([tr[k] for k in keys] + list(va.values()), dist, device)
            tr = dict(zip(keys, totals[:3], strict=True))
            va = dict(zip(va, totals[3:], strict=True))
            record = {
                "epoch": epoch + 1,
                "train_objective": tr["loss"] / tr["n"],
                "train_mse": tr["sse"] / (3 * tr["n"]),
                "val_mse": va["sse"] / (3 * va["n"]),
                "val_mae": va["sae"] / (3 * va["n"]),
                "seconds": time.perf_counter() - t0,
                "lr": lr,
            }
            if head == "gaussian":
                record["val_nll"] = va["nll"] / (3 * va["n"])
            state.history.append(record)
            state.epoch = epoch + 1
            improved = record["val_mse"] < state.best_val
            if improved:
                state.best_val, state.best_epoch = record["val_mse"], epoch + 1
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
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        "state": dataclasses.asdict(state),
                    },
                    paths.last,
                )
                tracker.epoch(record)
                log.info(
                    "%s epoch %d/%d: train %.5f val %.5f (%.1f s)%s",
                    paths.name,
                    epoch + 1,
                    epochs,
                    record["train_objective"],
                    record["val_mse"],
                    record["seconds"],
                    " *" if improved else "",
                )
                if on_epoch is not None:
                    on_epoch(record)
            if dist.world > 1:
                torch.distributed.barrier()
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracker.end()
    return TrainResult(
        paths.name, paths, state, resumed_from, time.perf_counter() - start_time, state.run_id
    )


def _best_payload(net, params, model_name, data, train_ds, state) -> dict[str, Any]:
    """Everything needed to rebuild the model and map its outputs to physical units."""
    return {
        "model_name": model_name,
        "training_data": data,
        "head": params.train.head,
        "cnn_width": params.train.cnn_width,
        "cnn_depth": params.train.cnn_depth,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "scaler": train_ds.scaler.as_dict(),
        "size": int(train_ds.spins(0).shape[0]),
        "epoch": state.epoch,
        "val_mse": state.best_val,
        "parameters": count_parameters(net),
    }


def load_best(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The best-validation model (eval mode) and its payload."""
    if not Path(path).is_file():
        raise InputError(f"no checkpoint at {path} (train the run first)")
    payload = torch.load(path, map_location=device, weights_only=False)
    return net_from_payload(payload, device), payload


def predict_normalized(
    net: nn.Module, ds: TextureDataset, batch: int = 200, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(N, 3) normalized predictions over a dataset, in its order."""
    loader = DataLoader(ds, batch_size=batch, shuffle=False)
    out = []
    with torch.no_grad():
        for x, _ in loader:
            out.append(net(x.to(device)).float()[:, :3].cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 3))
