"""Dataset report: what was generated, as figures and as metrics ``dvc metrics show`` prints.

* ``contact_sheet.png``: textures across the K range, labelled with lambda, K and D;
* ``parameters.png``: histograms of lambda/D, K/Kshape and D over the textures, per split;
* ``out_of_plane.png``: mean |Sz| of every texture and the out-of-plane fraction
  (mean |Sz| > 0.5, the paper's classification) against K/Kshape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spinfer.data.generate import read_textures
from spinfer.data.split import SPLITS, load_splits
from spinfer.data.store import store_meta
from spinfer.io import atomic_write_text
from spinfer.physics.observables import OUT_OF_PLANE
from spinfer.render import save_contact_sheet, save_figure, texture_label


def _contact_rows(k_rel: np.ndarray, set_id: np.ndarray, replica: np.ndarray, n: int):
    """Replica-0 textures of up to ``n`` sets spread evenly over K/Kshape."""
    first = np.flatnonzero(replica == 0)
    first = first[np.argsort(k_rel[first], kind="stable")]
    if len(first) <= n:
        return first
    return first[np.round(np.linspace(0, len(first) - 1, n)).astype(int)]


def out_of_plane_curve(k_rel: np.ndarray, sz: np.ndarray, bins: int = 11):
    """Bin centres, out-of-plane fraction and count per K/Kshape bin (empty bins dropped)."""
    edges = np.linspace(k_rel.min(), k_rel.max() + 1e-9, bins + 1)
    which = np.clip(np.digitize(k_rel, edges) - 1, 0, bins - 1)
    centres, frac, count = [], [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            centres.append(0.5 * (edges[b] + edges[b + 1]))
            frac.append(float((sz[mask] > OUT_OF_PLANE).mean()))
            count.append(int(mask.sum()))
    return np.array(centres), np.array(frac), np.array(count)


def write_report(
    textures: Path | str,
    splits: Path | str,
    out_dir: Path | str,
    metrics: Path | str,
    sheet: int = 16,
) -> dict[str, Any]:
    """Write the three figures into ``out_dir`` and the metrics JSON; returns the metrics."""
    group = read_textures(textures)
    meta = store_meta(group)
    out_dir = Path(out_dir)
    params = group["params"][:]
    lam, k, d = params.T
    kshape = float(meta["kshape_factor"])
    k_rel, lam_rel = k / (kshape * d), lam / d
    sz = group["mean_abs_sz"][:]
    set_id, replica = group["set_id"][:], group["replica"][:]
    split_doc = load_splits(splits)
    labels = np.full(len(params), -1)
    for i, name in enumerate(SPLITS):
        labels[np.asarray(split_doc[name], dtype=int)] = i

    rows = _contact_rows(k_rel, set_id, replica, sheet)
    spins = group["spins"]
    save_contact_sheet(
        [spins[int(i)] for i in rows],
        [texture_label(lam[i], k[i], d[i], kshape) for i in rows],
        out_dir / "contact_sheet.png",
        cols=4,
    )
    _plot_parameters(lam_rel, k_rel, d, labels, out_dir / "parameters.png")
    centres, frac, count = out_of_plane_curve(k_rel, sz)
    _plot_out_of_plane(k_rel, sz, centres, frac, out_dir / "out_of_plane.png")

    result = {
        "textures": len(params),
        "sets": int(meta["sets"]),
        "size": int(meta["size"]),
        "kshape_factor": kshape,
        **{f"{name}_textures": int((labels == i).sum()) for i, name in enumerate(SPLITS)},
        "out_of_plane_fraction": float((sz > OUT_OF_PLANE).mean()),
        "mean_abs_sz": float(sz.mean()),
        "energy_per_spin_mean": float(group["energy_per_spin"][:].mean()),
        "acceptance_mean": float(np.nanmean(group["acceptance"][:])),  # NaN: instant quenches
        "max_torque_median": float(np.median(group["max_torque"][:])),
        "out_of_plane_by_k": {
            f"{c:.2f}": {"fraction": float(f), "textures": int(n)}
            for c, f, n in zip(centres, frac, count, strict=True)
        },
    }
    atomic_write_text(Path(metrics), json.dumps(result, indent=2) + "\n")
    return result


def _plot_parameters(lam_rel, k_rel, d, labels, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=110)
    data = [(lam_rel, "λ / D"), (k_rel, "K / Kshape"), (d, "D (J)")]
    for ax, (values, name) in zip(axes, data, strict=True):
        bins = np.histogram_bin_edges(values, bins=min(20, max(3, len(np.unique(values)))))
        parts = [values[labels == i] for i in range(len(SPLITS))]
        ax.hist(parts, bins=bins, stacked=True, label=list(SPLITS))
        ax.set_xlabel(name)
        ax.set_ylabel("textures")
    axes[0].legend(fontsize=8)
    fig.suptitle("Parameters of the generated textures, stacked by split")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_out_of_plane(k_rel, sz, centres, frac, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    ax.scatter(k_rel, sz, s=6, alpha=0.4, label="mean |Sz| per texture")
    ax.plot(centres, frac, "o-", color="C3", label="out-of-plane fraction (mean |Sz| > 0.5)")
    ax.axhline(OUT_OF_PLANE, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("K / Kshape")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Out-of-plane textures against anisotropy")
    fig.tight_layout()
    save_figure(fig, path)
