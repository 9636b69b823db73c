"""At what scale the noisy-trained ResNet18 meets the accuracy target, measured on one GPU host.

Self-contained on purpose: it needs numpy, numba, scipy, PyYAML, torch and timm only (no
Zarr, Dask or MLflow), so it runs on a bare GPU image with ``PYTHONPATH=src``. It anneals
textures with the project's own kernels (``spinfer.physics.anneal``, the default schedule
and lattice) on every core until ``--gen-seconds`` have passed or ``--sets`` parameter sets
of ``--replicas`` textures are done, keeping complete sets only; then trains the ResNet18
as the pipeline's noisy runs do (one stored noisy copy per train/val texture with
a ~ U[0, 1]; a random symmetry of H per image, translations included; Gaussian head,
beta-NLL with beta = 1; best validation MSE kept), here with AdamW (1e-3, decay 1e-4),
a one-cycle schedule, batch 128 and bfloat16 autocast for ``--steps`` steps, and scores
MAE / mean-predictor MAE at Ts = 0, 0.5, 1 (and per texture kind at Ts = 0).

Layouts (``--runs``): ``paper`` (every set in train/val/test, replicas 14/4/2),
``held_out`` (a quarter of the sets never seen in training; 14/4 replicas of the rest),
``default`` (the default profile's 3/1/1 of 5 replicas). Writes ``--out``/NAME.json.
``--plot`` draws every ``--out``/scale_check*.json beside the pipeline's own resnet18-noisy
(artifacts/metrics/training.json) into ``--out``/scale_check.png, with the target line.

    PYTHONPATH=src python validation/scale_check.py --gen-seconds 330 --steps 5000
    PYTHONPATH=src python validation/scale_check.py --sets 160 --replicas 5 --runs default
    python validation/scale_check.py --plot
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from spinfer.config import RangeParams
from spinfer.data.grid import draw_set_indices, parameter_grid, target_bounds
from spinfer.physics.anneal import Schedule, anneal
from spinfer.physics.dipolar import dipolar_kernel
from spinfer.physics.energy import Hamiltonian

KSHAPE = 6.775  # E_dip(+z) - E_dip(+x) per spin / D on the periodic square lattice
RANGES = RangeParams()
GRID = parameter_grid(RANGES, KSHAPE)
LO, HI = target_bounds(RANGES, KSHAPE)
ORDER = np.random.default_rng(7).permutation(draw_set_indices(len(GRID), 4000, 2020))
SCHEDULE = Schedule(sweeps=500, relax_sweeps=100)  # the default profile's
LAYOUTS = ("paper", "held_out", "default")
T0 = time.time()


def log(*args) -> None:
    print(f"[{time.time() - T0:6.0f}s]", *args, flush=True)


def _anneal(task: tuple[int, int, int]) -> tuple[int, int, np.ndarray]:
    s, r, size = task
    lam, k, d = GRID[ORDER[s]]
    seed = np.random.SeedSequence([2020, int(ORDER[s]), r, 0x5EED])
    res = anneal(Hamiltonian(dmi=lam, anisotropy=k, dipolar=d), (size, size), SCHEDULE, seed)
    return s, r, res.spins.astype(np.float32)


def generate(size: int, sets: int, replicas: int, seconds: float, workers: int):
    """(S, R, L, L, 3) spins and (S, 3) couplings of the sets completed in time."""
    anneal(
        Hamiltonian(dmi=0.1, anisotropy=0.3, dipolar=0.1),
        (8, 8),
        Schedule(sweeps=2, relax_sweeps=1),
        0,
    )
    dipolar_kernel(size, size, None)  # compiled and cached before the workers fork
    log("kernels ready; workers", workers)
    tasks = [(s, r, size) for s in range(sets) for r in range(replicas)]
    done = {}
    pool = mp.get_context("fork").Pool(workers)
    try:
        for s, r, spins in pool.imap_unordered(_anneal, tasks, chunksize=1):
            done[(s, r)] = spins
            if time.time() - T0 > seconds:
                break
    finally:
        pool.terminate()
    kept = sorted({s for s, _ in done if all((s, q) in done for q in range(replicas))})
    log("textures", len(done), "complete sets", len(kept))
    x = np.stack([[done[(s, r)] for r in range(replicas)] for s in kept])
    return x, np.stack([GRID[ORDER[s]] for s in kept])


def train_and_score(name, xs, ps, train, val, tests, steps, device, result) -> None:
    """Train the noisy ResNet18 on (set, replica) lists and score every test list."""
    import timm
    import torch

    from spinfer.data.symmetry import apply_symmetry, flip_lambda, group_elements, lambda_sign

    elements = group_elements(("rotate", "mirror", "time_reversal", "inplane_reversal"))
    offset = float(-2.0 * LO[0] / (HI[0] - LO[0]))
    size = xs.shape[2]
    t0 = time.time()
    gen = torch.Generator(device=device).manual_seed(0)
    rng = np.random.default_rng(0)

    def take(idx):
        s, r = np.array(idx).T
        x = torch.from_numpy(np.ascontiguousarray(xs[s, r].transpose(0, 3, 1, 2))).to(device)
        y = torch.tensor((ps[s] - LO) / (HI - LO), dtype=torch.float32, device=device)
        return x, y, ps[s]

    def noisy(x, a):  # normalize(S + a R), R uniform on the sphere
        r = torch.randn(x.shape, device=device, generator=gen)
        y = x + a.view(-1, 1, 1, 1) * r / r.norm(dim=1, keepdim=True)
        return y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def augment(x, y, chunks=8):  # one random element (and translation) per chunk
        xs_, ys_ = [], []
        for xc, yc in zip(x.chunk(chunks), y.chunk(chunks), strict=True):
            e = elements[int(rng.integers(len(elements)))]
            out = torch.roll(
                apply_symmetry(xc, e), (int(rng.integers(size)), int(rng.integers(size))), (-2, -1)
            )
            xs_.append(out)
            ys_.append(flip_lambda(yc, offset) if lambda_sign(e) < 0 else yc)
        return torch.cat(xs_), torch.cat(ys_)

    def objective(out, y):  # beta-NLL, beta = 1 (spinfer.train.loop.objective)
        mean, lv = out[:, :3], out[:, 3:].clamp(-12, 4)
        return (0.5 * (lv + (y - mean) ** 2 / lv.exp()) * lv.detach().exp()).mean()

    amp = dict(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")
    xtr, ytr, _ = take(train)
    xva, yva, _ = take(val)
    xtr = noisy(xtr, torch.rand(len(xtr), device=device, generator=gen))
    xva = noisy(xva, torch.rand(len(xva), device=device, generator=gen))
    torch.manual_seed(2020)
    net = timm.create_model("resnet18", pretrained=False, in_chans=3, num_classes=6).to(device)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)

    def predict(x):
        net.eval()
        with torch.no_grad(), torch.autocast(**amp):
            out = [net(x[i : i + 500].contiguous(memory_format=torch.channels_last))[:, :3].float()
                   for i in range(0, len(x), 500)]  # fmt: skip
        net.train()
        return torch.cat(out)

    best, state, step, curve, bs = 1e9, None, 0, [], 128
    while step < steps:
        perm = torch.randperm(len(xtr), device=device, generator=gen)
        for i in range(max(1, len(xtr) // bs)):
            idx = perm[i * bs : (i + 1) * bs]
            x, y = augment(xtr[idx], ytr[idx])
            with torch.autocast(**amp):
                out = net(x.contiguous(memory_format=torch.channels_last))
            loss = objective(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break
        vl = float(((predict(xva) - yva) ** 2).mean())
        curve.append(round(vl, 5))
        if vl < best:
            best, state = vl, {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    res = {"train": len(train), "val": len(val), "steps": steps, "best_val_mse": best,
           "val_curve": curve[:: max(1, len(curve) // 20)],
           "seconds": round(time.time() - t0, 1)}  # fmt: skip
    chance_mean = ytr.mean(0)
    for tname, idx in tests.items():
        x, y, p = take(idx)
        chance = (y - chance_mean).abs().mean(0)
        oop = (x[:, 2].abs().mean((-2, -1)) > 0.5).cpu().numpy()
        weak = np.abs(p[:, 0]) < p[:, 2]
        kinds = {"out_of_plane": oop, "in_plane_small_lambda": ~oop & weak,
                 "in_plane_large_lambda": ~oop & ~weak}  # fmt: skip
        for ts in (0.0, 0.5, 1.0):
            xt = x if ts == 0 else noisy(x, torch.full((len(x),), ts, device=device))
            err = (predict(xt) - y).abs()
            res[f"{tname}/ts{ts}"] = (err.mean(0) / chance).cpu().numpy().round(3).tolist()
            for k, m in kinds.items() if ts == 0 else ():
                if m.sum():
                    sub = (err[torch.from_numpy(m).to(device)].mean(0) / chance).cpu().numpy()
                    res[f"{tname}/ts0/{k}"] = [int(m.sum()), *sub.round(3).tolist()]
    log(name, json.dumps(res))
    result["runs"][name] = res


def _label(result: dict, run: str, test: str) -> str:
    layout = {"default": "3/1/1", "paper": "14/4/2", "paper_14_4_2": "14/4/2"}.get(run, "14/4")
    where = {"test": "", "seen": ", seen sets", "held_out": ", held-out sets"}[test]
    steps = next(iter(result["runs"].values()))["steps"]
    return f"GPU: {result['sets']} sets x {result['replicas']} ({layout}), {steps} steps{where}"


def plot(out: str, training_json: str = "artifacts/metrics/training.json") -> None:
    """Ratio to chance at Ts = 0 per coupling: the CPU pipeline's run and each scale check."""
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = {}
    if os.path.isfile(training_json):
        cpu = json.loads(Path(training_json).read_text())["resnet18-noisy"]
        bars["CPU: make run (default profile, resnet18-noisy)"] = [
            cpu[f"mae_over_baseline_{c}_ts0"] for c in ("lambda", "K", "D")
        ]
    for path in sorted(glob.glob(os.path.join(out, "scale_check*.json"))):
        result = json.loads(Path(path).read_text())
        for run, res in result["runs"].items():
            for key, value in res.items():
                if key.endswith("/ts0.0"):
                    bars[_label(result, run, key.split("/")[0])] = value
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / max(1, len(bars))
    for i, (label, values) in enumerate(bars.items()):
        ax.bar(np.arange(3) + (i - (len(bars) - 1) / 2) * width, values, width, label=label)
    ax.axhline(0.5, color="k", ls="--", lw=1, label="target: half the mean predictor's MAE")
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_xticks(range(3), ["lambda", "K", "D"])
    ax.set_ylabel("MAE / mean predictor's MAE at Ts = 0")
    ax.set_title("Noisy-trained ResNet18: training steps, not data, decide the target")
    ax.set_ylim(0, 1.6)
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scale_check.png"), dpi=120)
    plt.close(fig)
    print(f"figure={os.path.join(out, 'scale_check.png')} bars={len(bars)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--sets", type=int, default=4000, help="at most this many parameter sets")
    ap.add_argument("--replicas", type=int, default=20)
    ap.add_argument("--gen-seconds", type=float, default=330.0)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--runs", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    ap.add_argument("--out", default=os.environ.get("OUT", "artifacts/validation"))
    ap.add_argument("--name", default="scale_check")
    ap.add_argument("--plot", action="store_true", help="only draw the saved results")
    a = ap.parse_args()
    if a.plot:
        return plot(a.out)
    need = 20 if {"paper", "held_out"} & set(a.runs) else 5
    if a.replicas < need:
        ap.error(f"--runs {' '.join(a.runs)} needs --replicas >= {need}")
    os.makedirs(a.out, exist_ok=True)
    xs, ps = generate(a.size, a.sets, a.replicas, a.gen_seconds, a.workers)
    import torch  # after the workers are gone: no CUDA context before a fork

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    result = {"args": vars(a), "device": gpu,
              "sets": len(ps), "replicas": a.replicas, "gen_seconds": round(time.time() - T0, 1),
              "runs": {}}  # fmt: skip
    every = range(len(ps))
    pairs = lambda sets, reps: [(s, r) for s in sets for r in reps]  # noqa: E731
    tr, va, te = range(14), range(14, 18), range(18, 20)
    held = set(np.random.default_rng(1).choice(len(ps), len(ps) // 4, replace=False).tolist())
    seen = [s for s in every if s not in held]
    plans = {
        "paper": (pairs(every, tr), pairs(every, va), {"test": pairs(every, te)}),
        "held_out": (pairs(seen, tr), pairs(seen, va),
                     {"seen": pairs(seen, te), "held_out": pairs(sorted(held), te)}),
        "default": (pairs(every, range(3)), pairs(every, [3]), {"test": pairs(every, [4])}),
    }  # fmt: skip
    for name in a.runs:
        train_and_score(name, xs, ps, *plans[name], a.steps, device, result)
        with open(os.path.join(a.out, f"{a.name}.json"), "w") as f:
            json.dump(result, f, indent=1)
    print(" ".join(
        f"{run}_{test}_{c}={r[f'{test}/ts0.0'][i]}"
        for run, r in result["runs"].items()
        for test in ("test", "seen", "held_out") if f"{test}/ts0.0" in r
        for i, c in enumerate(("lambda", "K", "D"))
    ))  # fmt: skip


if __name__ == "__main__":
    main()
