"""Estimates with uncertainty: one model or a deep ensemble, optionally averaged over the
symmetry group (test-time augmentation), with a calibrated standard deviation.

Every (member, group element) pair is one component of an equally weighted Gaussian
mixture: a Gaussian head gives each component a mean and a variance, a point head a mean
only. The estimate is the mixture mean and its variance the mixture variance (mean of the
component variances, the aleatoric part, plus the variance of the component means, the
epistemic part). A single point-head model has no uncertainty (std NaN).

Intervals are recalibrated on the validation set (quantile recalibration, Kuleshov et
al. 2018): for every level p the half-width of the central interval is q_p sigma, q_p the
p-quantile of the standardized errors |y - mu| / sigma there, per parameter. A Gaussian
would give q_p = z_p; the errors of a weak model on bounded targets are closer to uniform
(|e| <= sigma holds 58%, |e| <= 1.96 sigma 100% of the time), so a single variance factor
cannot make both the 68% and the 95% interval right. The reported standard deviation is
the calibrated one-sigma half-width, q_0.6827 sigma (the std for Gaussian errors). The
bundle (``model.pt`` of a run) holds the members' weights, the head, the averaging group,
the target ranges and the quantile table: it is what the served model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from spinfer.data.symmetry import apply_symmetry, flip_lambda, group_elements, lambda_sign
from spinfer.data.targets import TargetScaler
from spinfer.errors import InputError
from spinfer.models.networks import lambda_offset, net_from_payload, save_atomic, split_output

FORMAT = "spinfer-predictor/1"
ONE_SIGMA = 0.6827
QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, ONE_SIGMA, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class Predictor:
    members: list[dict[str, Any]]  # best-checkpoint payloads
    tta: tuple[str, ...] = ()
    quantiles: np.ndarray | None = None  # (QUANTILE_LEVELS, 3) half-widths in raw sigmas
    nets: list[nn.Module] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.members:
            raise InputError("a predictor needs at least one member")
        self.nets = [net_from_payload(p) for p in self.members]
        if self.quantiles is None:  # uncalibrated: Gaussian intervals
            self.quantiles = np.repeat([[z_of(p)] for p in QUANTILE_LEVELS], 3, axis=1)
        self.quantiles = np.asarray(self.quantiles, dtype=np.float64)

    @property
    def scale(self) -> np.ndarray:
        """(3,) factor from the raw mixture sigma to the calibrated standard deviation."""
        return self.quantiles[QUANTILE_LEVELS.index(ONE_SIGMA)]

    def half_width(self, std: np.ndarray, level: float) -> np.ndarray:
        """Half-width of the central ``level`` interval given calibrated stds."""
        return std * (self.quantiles[QUANTILE_LEVELS.index(level)] / self.scale)

    @property
    def head(self) -> str:
        return self.members[0].get("head", "point")

    @property
    def scaler(self) -> TargetScaler:
        return TargetScaler.from_meta({"targets": self.members[0]["scaler"]})

    @property
    def size(self) -> int:
        return int(self.members[0]["size"])

    @property
    def elements(self) -> tuple[int, ...]:
        return group_elements(self.tta)

    @property
    def has_uncertainty(self) -> bool:
        return self.head == "gaussian" or len(self.nets) * len(self.elements) > 1

    def raw(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Mixture mean and (uncalibrated) variance, normalized units, of a (B, 3, L, L)
        batch."""
        offset = lambda_offset(self.scaler)
        means, variances = [], []
        with torch.no_grad():
            for g in self.elements:
                xg = apply_symmetry(x, g) if g else x
                for net in self.nets:
                    mean, log_var = split_output(net(xg).float(), self.head)
                    if lambda_sign(g) < 0:
                        mean = flip_lambda(mean, offset)
                    means.append(mean.double())
                    variances.append(
                        torch.zeros_like(means[-1]) if log_var is None else log_var.double().exp()
                    )
        m = torch.stack(means)
        mu = m.mean(0)
        var = (torch.stack(variances).mean(0) + (m**2).mean(0) - mu**2).clamp_min(0.0)
        if not self.has_uncertainty:
            var = torch.full_like(mu, float("nan"))
        return mu.numpy(), var.numpy()

    def predict(self, x: torch.Tensor, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) in normalized units; ``calibrated`` applies the fitted factors."""
        mu, var = self.raw(x)
        std = np.sqrt(var)
        return mu, std * self.scale if calibrated else std

    def predict_dataset(
        self, ds, batch: int = 200, calibrated: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) means and standard deviations over a dataset, in its order."""
        mus, stds = [], []
        for x, _ in DataLoader(ds, batch_size=batch, shuffle=False):
            mu, std = self.predict(x, calibrated)
            mus.append(mu)
            stds.append(std)
        if not mus:
            return np.empty((0, 3)), np.empty((0, 3))
        return np.concatenate(mus), np.concatenate(stds)

    def payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "members": self.members,
            "tta": list(self.tta),
            "quantiles": self.quantiles.tolist(),
        }


def fit_quantiles(mu: np.ndarray, std: np.ndarray, truth: np.ndarray) -> np.ndarray | None:
    """(QUANTILE_LEVELS, 3) quantiles of |y - mu| / std per parameter (None without
    uncertainty): interval half-widths in units of the raw sigma."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(truth - mu) / np.where(std > 0, std, np.nan)
    if not np.isfinite(z).any():
        return None
    q = np.nanquantile(z, QUANTILE_LEVELS, axis=0)
    return np.maximum.accumulate(np.where(np.isfinite(q) & (q > 0), q, 1e-12), axis=0)


def z_of(level: float) -> float:
    """Half-width in standard deviations of the central interval holding ``level``."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def coverage(mu: np.ndarray, half_width: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(3,) fraction of truths inside mu +- half_width."""
    return (np.abs(truth - mu) <= half_width).mean(axis=0)


def save_predictor(predictor: Predictor, path: Path) -> Path:
    save_atomic(predictor.payload(), path)
    return path


def load_predictor(path: Path | str) -> Predictor:
    """A bundle (model.pt) or a single best checkpoint (one member, no averaging)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no model at {path} (train and evaluate the run first)")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") == FORMAT:
        return Predictor(payload["members"], tuple(payload["tta"]), payload.get("quantiles"))
    return Predictor([payload])


def member_checkpoints(out: Path, ensemble: int | None) -> list[Path]:
    """The best checkpoints of a run: one, or one per ensemble member."""
    if ensemble is None:
        return [out / "best.pt"]
    return [out / f"member{k}" / "best.pt" for k in range(ensemble)]


def assemble(checkpoints: list[Path], tta: tuple[str, ...]) -> Predictor:
    """A predictor from members' best checkpoints (uncalibrated)."""
    members = []
    for path in checkpoints:
        if not path.is_file():
            raise InputError(f"no checkpoint at {path} (train the run first)")
        members.append(torch.load(path, map_location="cpu", weights_only=False))
    return Predictor(members, tuple(tta))
