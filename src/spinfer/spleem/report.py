"""Figures of the experimental-image path, in the layout of Kwon et al. Fig. 4."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spinfer.render import save_figure
from spinfer.spleem.ingest import to_image, wheel_rgb
from spinfer.spleem.walls import tanh_profile


def plot_figure(results, params, path: Path) -> Path:
    """One row per set: Sx, Sy, Sz, colour image, re-simulated texture, wall profiles."""
    cols = 6
    fig, axes = plt.subplots(len(results), cols, figsize=(2.6 * cols, 2.6 * len(results)),
                             dpi=100, squeeze=False)  # fmt: skip
    for row, r in zip(axes, results, strict=True):
        spins = to_image(r.spin_map.spins)  # as the documented image convention shows it
        for c, name in enumerate(("Sx", "Sy", "Sz")):
            row[c].imshow(spins[..., c], cmap="gray", vmin=-1, vmax=1)
            row[c].set_title(f"{r.name}: {name}" if c == 0 else name, fontsize=8)
        row[3].imshow(wheel_rgb(spins))
        row[3].set_title(f"colour ({r.source})", fontsize=8)
        if r.resimulated is not None:
            row[4].imshow(wheel_rgb(to_image(r.resimulated)))
            row[4].set_title("re-simulated at the estimate", fontsize=8)
        for ax in row[:5]:
            ax.set_xticks([])
            ax.set_yticks([])
        _plot_walls(row[5], r, params.spleem.pixel_nm)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_walls(ax, r, pixel_nm: float) -> None:
    fit = r.wall_fit
    if fit is None or not len(fit.w):
        ax.text(0.5, 0.5, "no walls", ha="center", transform=ax.transAxes)
        return
    for prof, c in zip(fit.profiles[:40], fit.centre[:40], strict=False):
        ax.plot(fit.offsets - c, prof, color="grey", alpha=0.2, lw=0.7)
    x = np.linspace(fit.offsets[0], fit.offsets[-1], 200)
    label = f"tanh, w = {fit.w_median:.2f} px\nπw = {fit.width(pixel_nm):.0f} nm"
    ax.plot(x, tanh_profile(x, 0.0, fit.w_median), "C3", lw=1.5, label=label)
    ax.set_xlabel("distance across the wall (px)", fontsize=7)
    ax.set_ylabel("Sz", fontsize=7)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(f"{len(fit.w)} wall profiles", fontsize=8)


def plot_series(results, path: Path) -> Path:
    """Per-set estimates with error bars (total: panel sigma and spread combined; the
    panel spread alone as thin caps) and the truth where known."""
    names = [r.name for r in results]
    x = np.arange(len(results))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=110)
    for ax, key in zip(axes, ("lambda", "K", "D"), strict=True):
        mean = [r.mean[key] for r in results]
        std = [r.std[key] for r in results]
        total = [r.uncertainty[key]["total"] if r.uncertainty else np.nan for r in results]
        if np.isfinite(total).any():
            ax.errorbar(x, mean, yerr=total, fmt="none", ecolor="C1", elinewidth=4, alpha=0.5,
                        label="total (model + spread)")  # fmt: skip
        ax.errorbar(x, mean, yerr=std, fmt="o", capsize=4, label="estimate (panel spread)")
        truth = [r.truth[key] if r.truth else np.nan for r in results]
        if np.isfinite(truth).any():
            ax.plot(x, truth, "k_", ms=18, mew=2, label="truth")
        ax.set_xticks(x, names, rotation=30, fontsize=7)
        ax.set_title(f"{key} (units of J)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Estimates across the series")
    fig.tight_layout()
    return save_figure(fig, path)
