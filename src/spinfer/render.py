"""Spin textures as pictures: hue = in-plane angle, lightness = Sz (white +z, black -z)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _hls_to_rgb(h: np.ndarray, lightness: np.ndarray, s: float = 1.0) -> np.ndarray:
    """Vectorised HLS -> RGB (colorsys formulas), all inputs in [0, 1]."""
    q = np.where(lightness < 0.5, lightness * (1 + s), lightness + s - lightness * s)
    p = 2 * lightness - q

    def channel(t: np.ndarray) -> np.ndarray:
        t = t % 1.0
        return np.select(
            [t < 1 / 6, t < 1 / 2, t < 2 / 3],
            [p + (q - p) * 6 * t, q, p + (q - p) * (2 / 3 - t) * 6],
            default=p,
        )

    return np.stack([channel(h + 1 / 3), channel(h), channel(h - 1 / 3)], axis=-1)


def spins_to_rgb(spins: np.ndarray) -> np.ndarray:
    """(Lx, Ly, 3) spins -> (Ly, Lx, 3) RGB in [0, 1], image rows = y (origin at bottom).

    Hue is the in-plane angle atan2(Sy, Sx) (red = +x), lightness (1 + Sz) / 2.
    """
    s = np.asarray(spins, dtype=np.float64)
    hue = (np.arctan2(s[..., 1], s[..., 0]) / (2 * np.pi)) % 1.0
    light = np.clip((1.0 + s[..., 2]) / 2.0, 0.0, 1.0)
    rgb = _hls_to_rgb(hue, light)
    return np.clip(np.swapaxes(rgb, 0, 1), 0.0, 1.0)


def colour_wheel(n: int = 129) -> np.ndarray:
    """RGBA legend: the in-plane direction as hue, Sz from +1 (centre) to -1 (rim) ... 0 at
    half radius, as a disc of unit vectors seen from above."""
    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    r = np.hypot(x, y)
    sz = np.cos(np.pi * np.clip(r, 0, 1))
    sp = np.sqrt(np.clip(1 - sz**2, 0, 1))
    phi = np.arctan2(y, x)
    vec = np.stack([sp * np.cos(phi), sp * np.sin(phi), sz], axis=-1)
    rgb = np.swapaxes(spins_to_rgb(np.swapaxes(vec, 0, 1)), 0, 1)
    alpha = (r <= 1.0).astype(float)[..., None]
    return np.concatenate([rgb, alpha], axis=-1)


def texture_label(dmi: float, anisotropy: float, dipolar: float, kshape_factor: float) -> str:
    """Two lines for a texture's title: lambda in units of D, K in units of Kshape, D."""
    return (
        f"λ={dmi:+.3f} ({dmi / dipolar:+.1f}D)\n"
        f"K={anisotropy:.3f} ({anisotropy / (kshape_factor * dipolar):.2f}Ks) D={dipolar:.3f}"
    )


def _draw(ax, spins: np.ndarray, title: str | None) -> None:
    # x to the right, y up (the image convention of spinfer.spleem.ingest)
    ax.imshow(spins_to_rgb(spins).transpose(1, 0, 2), origin="lower", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _legend(fig) -> None:
    ax = fig.add_axes([0.86, 0.02, 0.12, 0.12])
    ax.imshow(colour_wheel(), origin="lower")
    ax.set_axis_off()
    ax.set_title("+z centre, -z rim\nhue: in-plane", fontsize=6)


def save_texture_png(spins: np.ndarray, path: Path | str, title: str | None = None) -> Path:
    """One texture with a colour-wheel legend, written atomically."""
    fig = plt.figure(figsize=(4.6, 4.2), dpi=120)
    ax = fig.add_axes([0.03, 0.05, 0.8, 0.85])
    _draw(ax, spins, title)
    _legend(fig)
    return save_figure(fig, Path(path))


def save_contact_sheet(
    textures: Sequence[np.ndarray], titles: Sequence[str], path: Path | str, cols: int = 4
) -> Path:
    """A grid of textures labelled with their parameters, plus the legend."""
    n = len(textures)
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.6, 2.5 * rows + 0.4), dpi=110)
    axes = np.atleast_1d(axes).ravel()
    for ax, spins, title in zip(axes, textures, titles, strict=False):
        _draw(ax, spins, title)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.subplots_adjust(left=0.02, right=0.84, top=0.93, bottom=0.02, wspace=0.08, hspace=0.3)
    _legend(fig)
    return save_figure(fig, Path(path))


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
