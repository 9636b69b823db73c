"""Model factory and the evaluation maths (PCA axis, findings), without training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinfer.errors import ConfigError
from spinfer.models.networks import build_model, count_parameters
from spinfer.train.compare import findings
from spinfer.train.evaluate import error_pca


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "cnn"])
def test_models_map_spin_images_to_three_outputs(name):
    torch.manual_seed(0)
    model = build_model(name, cnn_width=8).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 20, 20))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_capacities_are_ordered():
    sizes = [count_parameters(build_model(n)) for n in ("cnn", "resnet18", "resnet50")]
    assert sizes == sorted(sizes) and sizes[0] < 1e6 < sizes[1] < sizes[2]


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model 'vgg'"):
        build_model("vgg")


@pytest.mark.parametrize("kshape", [2.0, 6.775])
def test_pca_recovers_an_effective_anisotropy_axis(kshape):
    """Errors that keep K - Kshape * D fixed lie along dK = Kshape dD: the axis must say so."""
    rng = np.random.default_rng(0)
    n = 500
    truth = np.column_stack(
        [rng.uniform(-0.3, 0.3, n), rng.uniform(0, 1, n), rng.uniform(0.05, 0.13, n)]
    )
    dd = rng.normal(0, 0.01, n)
    err = np.column_stack([rng.normal(0, 1e-4, n), kshape * dd, dd])
    comps, explained, ratio = error_pca(truth, truth + err)
    assert ratio == pytest.approx(kshape, rel=1e-2)
    assert explained[0] > 0.99
    assert comps[0, 1] > 0  # sign convention


def _run(mae0, inc, ratios):
    return {
        "external": {},  # not scored on the external set
        "metrics": {
            "mae_mean": mae0 + inc / 2,
            "mae_mean_ts0": mae0,
            "mae_increase_ts0_to_max": inc,
            **{
                f"mae_over_baseline_{n}_ts0": r
                for n, r in zip(("lambda", "K", "D"), ratios, strict=True)
            },
        },
    }


def test_findings_check_the_papers_two_claims():
    runs = {
        "resnet18-noisy": _run(0.05, 0.02, (0.3, 0.2, 0.4)),
        "resnet18-clean": _run(0.04, 0.20, (0.3, 0.2, 0.3)),
        "cnn-noisy": _run(0.10, 0.30, (0.6, 0.5, 0.7)),
        "cnn-clean": _run(0.10, 0.10, (0.6, 0.5, 0.7)),
    }
    out = findings(runs)
    assert out["resnet18_noisy_below_half_chance"] is True
    assert out["resnet18_noisy_degrades_less"] is True
    assert out["cnn_noisy_degrades_less"] is False
    assert "resnet50_noisy_degrades_less" not in out
    runs["resnet18-noisy"] = _run(0.05, 0.02, (0.3, 0.6, 0.4))
    assert findings(runs)["resnet18_noisy_below_half_chance"] is False
    assert "external_mae_over_centre_D" not in findings(runs)["cnn-noisy"]  # not scored externally
    runs["cnn-noisy"]["external"] = {
        f"external_mae_over_centre_{n}": 0.9 for n in ["lambda", "K", "D"]
    }
    assert findings(runs)["cnn-noisy"]["external_mae_over_centre_D"] == 0.9
