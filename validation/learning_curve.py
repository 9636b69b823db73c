"""Learning curve: MAE at Ts = 0 against training-set size and optimizer steps, with power laws.

Beyond the paper: how far are we from its "most errors ~ 0.01", and is it data or steps that
stand in the way? On the pipeline's own data (train/val with a ~ U[0, 1] noise, the Ts = 0
test split), a network (``--model``, default resnet18, Gaussian head, beta-NLL with beta 1,
every symmetry of H as augmentation, AdamW 1e-3 one-cycle, batch ``--batch``) is trained on
random subsets of the training textures (``--fractions``, at least 4 sizes) for ``--steps``
steps each, scored on the whole test split at ``--evals`` step counts (log-spaced), and the
best-validation weights give each size's final MAE. Draws give out-of-plane textures the
pipeline's ``train.out_of_plane_share`` of each batch. Per target, over all test textures and
over the out-of-plane ones (mean |Sz| > 1/2: a uniform in-plane state is torque-free for
every coupling, so its error stays at the prior's whatever the data, and a fit over all
textures flattens towards that floor):

* MAE ~ a N^-b over the sizes (least squares in log-log) and the N at which the fit reaches
  ``--goal`` (0.01 normalized: the paper's "most errors ~ 0.01");
* MAE ~ a' s^-b' over the second half of the step counts of the largest size, and the steps
  that fit says the goal needs at that size.

Writes ``--out``/learning_curve.json and learning_curve.png, and logs both with the numbers
to MLflow (one run, tag kind=learning_curve). On a GPU host (CUDA is used when present) run it
after the gpu profile's pipeline; the tests run a tiny CPU version. Last line: key=value.

    python validation/learning_curve.py [--params params.yaml] [--steps 5000] [--model resnet18]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from spinfer.config import OPERATIONS, load_params
from spinfer.data.dataset import open_dataset, phase_weights
from spinfer.data.symmetry import Augmenter
from spinfer.data.targets import TARGET_NAMES
from spinfer.models.networks import build_model, outputs_of
from spinfer.train.evaluate import out_of_plane_images
from spinfer.train.loop import lambda_offset, objective, split_output

HEAD = "gaussian"
#: the two test populations every MAE is given for: all textures, and the out-of-plane ones
CLASSES = ("all", "out_of_plane")


def load(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole dataset as (N, 3, L, L) float32 images and (N, 3) normalized targets."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack(xs), torch.stack(ys)


def errors(net, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> np.ndarray:
    """(N, 3) absolute errors of the network's means, normalized units."""
    net.eval()
    with torch.no_grad():
        out = [
            split_output(net(x[i : i + 256].to(device)).float(), HEAD)[0].cpu()
            for i in range(0, len(x), 256)
        ]
    net.train()
    return (torch.cat(out) - y).abs().numpy()


def class_maes(err: np.ndarray, out_of_plane: np.ndarray) -> dict[str, list[float] | None]:
    """(3,) MAE over all textures and over the out-of-plane ones (None when there are none)."""
    oop = err[out_of_plane].mean(0).tolist() if out_of_plane.any() else None
    return {"all": err.mean(0).tolist(), "out_of_plane": oop}


def train_size(args, data, n: int, device: torch.device, seed: int) -> dict:
    """Train on ``n`` random training textures; test MAE along the steps, best-val MAE."""
    (xtr, ytr, oop_tr), (xva, yva), (xte, yte, oop_te), offset = data
    gen = np.random.default_rng(seed)
    keep = np.sort(gen.choice(len(xtr), n, replace=False))
    xtr, ytr = xtr[torch.from_numpy(keep)], ytr[torch.from_numpy(keep)]
    weights = phase_weights(oop_tr[keep], args.out_of_plane_share)
    torch.manual_seed(seed)
    net = build_model(args.model, args.cnn_width, 3, outputs_of(HEAD)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1
    )
    augment = Augmenter(OPERATIONS, offset)
    checkpoints = sorted({round(float(s)) for s in np.geomspace(1, args.steps, args.evals)})
    curve, best, best_mae = [], math.inf, None
    batch = min(args.batch, n)
    for step in range(1, args.steps + 1):
        picks = (
            gen.choice(n, batch, replace=False)
            if weights is None
            else gen.choice(n, batch, p=weights)  # with replacement, as the pipeline's sampler
        )
        idx = torch.from_numpy(picks)
        x, y = augment(xtr[idx], ytr[idx], gen)
        mean, log_var = split_output(net(x.to(device)).float(), HEAD)
        loss = objective(mean, log_var, y.to(device), beta=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step in checkpoints:
            test = class_maes(errors(net, xte, yte, device), oop_te)
            val = float((errors(net, xva, yva, device).mean(0) ** 2).mean())
            curve.append({"step": step, "mae": test["all"],
                          "mae_out_of_plane": test["out_of_plane"], "val": val})  # fmt: skip
            if val < best:
                best, best_mae = val, test
    return {
        "n": n,
        "out_of_plane_trained": int(oop_tr[keep].sum()),
        "curve": curve,
        "mae": best_mae["all"],
        "mae_out_of_plane": best_mae["out_of_plane"],
    }


def power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of y = a x^-b by least squares in log-log."""
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(intercept)), float(-slope)


def law(var: str, b: float) -> str:
    """``var^-b`` as text, a rising fit (b < 0) as ``var^+|b|``."""
    return f"{var}^{-b:+.2f}"


def needed(a: float, b: float, goal: float) -> float:
    """x at which a x^-b reaches ``goal`` (inf when the fit does not decrease, or so slowly
    that the answer overflows a float)."""
    if b <= 0 or a <= 0:
        return math.inf if b <= 0 else 0.0
    exponent = math.log(a / goal) / b
    return math.exp(exponent) if exponent < 700 else math.inf


def fits(runs: list[dict], goal: float, key: str = "mae") -> dict:
    """Per target: the power laws over the sizes and over the largest size's late steps of
    the MAE under ``key`` (``mae``: all test textures; ``mae_out_of_plane``), and the
    textures and steps at which they reach ``goal``."""
    sizes = np.array([r["n"] for r in runs], dtype=float)
    largest = runs[-1]["curve"]
    tail = largest[len(largest) // 2 :] if len(largest) >= 4 else largest
    steps = np.array([c["step"] for c in tail], dtype=float)
    out = {}
    for j, t in enumerate(TARGET_NAMES):
        a, b = power_law(sizes, np.array([r[key][j] for r in runs]))
        a_s, b_s = power_law(steps, np.array([c[key][j] for c in tail]))
        out[t] = {
            "a": a, "b": b, "textures_needed": needed(a, b, goal),
            "a_steps": a_s, "b_steps": b_s, "steps_needed": needed(a_s, b_s, goal),
        }  # fmt: skip
    return out


def _key(cls: str) -> str:
    """The run and curve key of a test population's MAE."""
    return "mae" if cls == "all" else f"mae_{cls}"


def plot(doc: dict, path: Path) -> Path:
    """MAE against N with the fits, over all test textures and over the out-of-plane ones,
    and the mean MAE along the steps of every size."""
    classes = [c for c in CLASSES if c in doc["fits"]]
    fig, axes = plt.subplots(1, len(classes) + 1, figsize=(5 * (len(classes) + 1), 4))
    sizes = np.array([r["n"] for r in doc["runs"]], dtype=float)
    grid = np.geomspace(sizes.min(), max(sizes.max(), 1) * 4, 50)
    for ax, cls in zip(axes, classes, strict=False):
        for j, t in enumerate(TARGET_NAMES):
            f = doc["fits"][cls][t]
            line = ax.loglog(sizes, [r[_key(cls)][j] for r in doc["runs"]], "o", label=t)[0]
            ax.loglog(grid, f["a"] * grid ** -f["b"], "--", color=line.get_color(), lw=1,
                      label=f"{t} ~ {law('N', f['b'])}")  # fmt: skip
        ax.set_xlabel("training textures N")
        ax.set_title(f"test textures: {cls.replace('_', ' ')}", fontsize=9)
    right = axes[-1]
    for k, run in enumerate(doc["runs"]):
        steps = [c["step"] for c in run["curve"]]
        alpha = 0.4 + 0.6 * (k + 1) / len(doc["runs"])
        line = right.loglog(steps, [float(np.mean(c["mae"])) for c in run["curve"]], "-o",
                            ms=3, alpha=alpha, label=f"N = {run['n']}")[0]  # fmt: skip
        if run["mae_out_of_plane"] is not None:
            oop = [float(np.mean(c["mae_out_of_plane"])) for c in run["curve"]]
            right.loglog(steps, oop, ":s", ms=3, alpha=alpha, color=line.get_color())
    right.set_xlabel("optimizer steps (mean over lambda, K, D; dotted: out of plane)")
    for ax in axes:
        ax.axhline(doc["goal"], color="k", ls=":", lw=1, label=f"goal {doc['goal']}")
        ax.set_ylabel("test MAE at Ts = 0 (normalized)")
        ax.legend(fontsize=7)
    title = (
        f"{doc['model']}, {doc['steps']} steps of batch {doc['batch']} per size, "
        f"{doc['device']}, profile {doc['profile']}, {doc['date']}"
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_to_mlflow(params, root: Path, doc: dict, figure: Path, data: Path) -> str:
    import mlflow

    from spinfer.tracking import setup_tracking

    experiment = setup_tracking(params, root)
    with mlflow.start_run(experiment_id=experiment, run_name="learning-curve") as run:
        mlflow.set_tags({"kind": "learning_curve", "profile": params.profile})
        mlflow.log_params({"model": doc["model"], "steps": doc["steps"], "batch": doc["batch"],
                           "goal": doc["goal"], "out_of_plane_share": doc["out_of_plane_share"],
                           "sizes": ",".join(str(r["n"]) for r in doc["runs"])})  # fmt: skip
        for cls in doc["fits"]:
            suffix = "" if cls == "all" else f"_{cls}"
            for r in doc["runs"]:
                for j, t in enumerate(TARGET_NAMES):
                    mlflow.log_metric(f"mae_{t}_ts0{suffix}", r[_key(cls)][j], step=r["n"])
            for t, f in doc["fits"][cls].items():
                mlflow.log_metrics(
                    {f"{k}_{t}{suffix}": v for k, v in f.items() if math.isfinite(v)}
                )
        mlflow.log_artifact(str(figure), artifact_path="figures")
        mlflow.log_artifact(str(data))
        return run.info.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], help="section.key=value")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--cnn-width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--evals", type=int, default=8, help="step counts scored per size")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--goal", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("artifacts/validation/learning_curve"))
    args = parser.parse_args()
    if len(args.fractions) < 4 or not all(0 < f <= 1 for f in args.fractions):
        parser.error("--fractions needs at least 4 values in (0, 1]")
    params = load_params(args.root / args.params, args.set)
    args.out_of_plane_share = params.train.out_of_plane_share
    root = args.root
    paths = {
        "textures": root / params.dataset.out,
        "noisy": root / params.noise.out,
        "splits": root / "artifacts" / "splits.json",
        "test_noise": root / params.noise.test_out,
    }
    train, val = open_dataset("train", "noisy", **paths), open_dataset("val", "noisy", **paths)
    test = open_dataset("test", 0.0, **paths)
    data = (
        (*load(train), out_of_plane_images(train)),
        load(val),
        (*load(test), out_of_plane_images(test)),
        lambda_offset(train.scaler),
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    sizes = sorted({max(2, round(f * len(train))) for f in args.fractions})
    runs = [train_size(args, data, n, device, params.base.seed + k) for k, n in enumerate(sizes)]
    classes = [c for c in CLASSES if all(r[_key(c)] is not None for r in runs)]
    doc = {
        "model": args.model, "steps": args.steps, "batch": args.batch, "goal": args.goal,
        "out_of_plane_share": args.out_of_plane_share, "profile": params.profile,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - start, 1),
        "train_textures": len(train), "test_textures": len(test),
        "test_out_of_plane": int(data[2][2].sum()), "runs": runs,
        "fits": {c: fits(runs, args.goal, _key(c)) for c in classes},
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    data_path = args.out / "learning_curve.json"
    data_path.write_text(json.dumps(doc, indent=2) + "\n")
    figure = plot(doc, args.out / "learning_curve.png")
    run_id = log_to_mlflow(params, root, doc, figure, data_path)
    keys = {}
    for cls, per_target in doc["fits"].items():
        suffix = "" if cls == "all" else f"_{cls}"
        for t, f in per_target.items():
            print(
                f"{t} ({cls.replace('_', ' ')}): MAE ~ {f['a']:.3g} {law('N', f['b'])} -> "
                f"{args.goal} at N ~ {f['textures_needed']:.3g}; along the steps "
                f"~ {law('s', f['b_steps'])} -> {f['steps_needed']:.3g} steps"
            )
            keys[f"textures_needed_{t}{suffix}"] = f"{f['textures_needed']:.3g}"
            keys[f"steps_needed_{t}{suffix}"] = f"{f['steps_needed']:.3g}"
    print(" ".join(f"{k}={v}" for k, v in {**keys, "run_id": run_id}.items()))


if __name__ == "__main__":
    main()
