"""Uncertainty: the beta-NLL objective, the mixture predictor, test-time averaging,
calibration, ensembles, and the symmetry ablation (tiny dataset, real MLflow store)."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
from torch import nn

from spinfer.config import load_params
from spinfer.data.symmetry import apply_symmetry, group_elements
from spinfer.models.predictor import (
    Predictor,
    coverage,
    fit_quantiles,
    load_predictor,
    z_of,
)
from spinfer.serve.publish import publish_run
from spinfer.tracking import resolve_uri
from spinfer.train.evaluate import LEVELS, evaluate_and_log
from spinfer.train.loop import gaussian_nll, lambda_offset, objective, train_run
from tests.conftest import ROOT, logged_model_and_test_spins, make_project


def test_beta_one_trains_the_mean_exactly_as_mse():
    """beta = 1: the mean's gradient is (mu - y) / n, half of MSE's, at any variance."""
    y = torch.tensor([[0.2, 0.5, 0.9]])
    mean = torch.tensor([[0.4, 0.1, 0.8]], requires_grad=True)
    log_var = torch.tensor([[-3.0, 0.5, -1.0]], requires_grad=True)
    objective(mean, log_var, y, beta=1.0).backward()
    torch.testing.assert_close(mean.grad, (mean - y).detach() / 3)
    # the variance is pulled to the squared error: zero gradient where exp(log_var) = err^2
    err2 = ((mean - y) ** 2).detach()
    lv = err2.log().requires_grad_(True)
    objective(mean.detach(), lv, y, beta=0.0).backward()
    torch.testing.assert_close(lv.grad, torch.zeros_like(lv), atol=1e-6, rtol=0)


def test_gaussian_nll_is_the_normal_log_density():
    mean, log_var, y = (
        torch.tensor([0.3]),
        torch.tensor([float(np.log(0.04))]),
        torch.tensor([0.5]),
    )
    expected = -torch.distributions.Normal(mean, 0.2).log_prob(y)
    torch.testing.assert_close(gaussian_nll(mean, log_var, y), expected)


def _calibrated(mu, std, truth):
    p = Predictor([_payload()], quantiles=fit_quantiles(mu, std, truth))
    return p, std * p.scale


def test_recalibration_recovers_a_known_miscalibration():
    rng = np.random.default_rng(0)
    mu = rng.uniform(size=(20000, 3))
    std = rng.uniform(0.01, 0.1, size=(20000, 3))
    truth = mu + rng.normal(size=mu.shape) * std * np.array([2.0, 0.5, 1.0])
    p, calibrated = _calibrated(mu, std, truth)
    np.testing.assert_allclose(p.scale, [2.0, 0.5, 1.0], rtol=0.03)  # std factor
    for level in LEVELS:
        hw = p.half_width(calibrated, level)
        np.testing.assert_allclose(coverage(mu, hw, truth), level, atol=0.01)
        np.testing.assert_allclose(hw / calibrated, z_of(level), rtol=0.05)  # Gaussian
    assert z_of(0.95) == pytest.approx(1.959964, abs=1e-5)
    assert fit_quantiles(mu, np.full_like(mu, np.nan), truth) is None  # no uncertainty


def test_recalibration_fixes_uniform_errors_a_variance_factor_cannot():
    """Near-chance errors on a bounded target are uniform: a Gaussian interval with the
    true std covers 58% at 'one sigma' and 100% at 'two'; the quantile table fixes both."""
    rng = np.random.default_rng(1)
    truth = rng.uniform(size=(20000, 3))
    mu, std = np.full_like(truth, 0.5), np.full_like(truth, 0.3)
    gaussian = coverage(mu, truth.std(axis=0) * 1.0, truth)
    assert (gaussian < 0.6).all()
    p, calibrated = _calibrated(mu, std, truth)
    for level in LEVELS:
        np.testing.assert_allclose(
            coverage(mu, p.half_width(calibrated, level), truth), level, atol=0.01
        )


class _Constant(nn.Module):
    def __init__(self, out: list[float]) -> None:
        super().__init__()
        self.out = torch.tensor(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(len(x), -1)


def _payload(head: str = "gaussian") -> dict:
    """A real best-checkpoint payload of a fresh tiny CNN."""
    from spinfer.models.networks import build_model, outputs_of

    net = build_model("cnn", 4, 1, outputs_of(head))
    return {
        "model_name": "cnn", "cnn_width": 4, "cnn_depth": 1, "head": head,
        "model": net.state_dict(), "size": 8,
        "scaler": {"names": ["lambda", "K", "D"], "min": [-0.39, 0.0, 0.05],
                   "max": [0.39, 1.0, 0.13]},
    }  # fmt: skip


def test_mixture_of_members_is_mean_of_means_plus_spread():
    p = Predictor([_payload(), _payload()])
    p.nets = [_Constant([0.2, 0.4, 0.6, *np.log([0.01, 0.04, 0.09])]),
              _Constant([0.4, 0.4, 0.2, *np.log([0.03, 0.04, 0.01])])]  # fmt: skip
    mu, var = p.raw(torch.zeros(2, 3, 8, 8))
    np.testing.assert_allclose(mu[0], [0.3, 0.4, 0.4], atol=1e-6)
    # mean of variances + variance of means
    np.testing.assert_allclose(var[0], [0.02 + 0.01, 0.04, 0.05 + 0.04], atol=1e-6)
    single = Predictor([_payload("point")])
    assert not single.has_uncertainty
    assert np.isnan(single.predict(torch.zeros(1, 3, 8, 8))[1]).all()


def test_test_time_averaging_makes_the_predictor_equivariant():
    """Averaged over the group, any network gives K, D invariant and lambda reversed under
    the in-plane reversal: exactly what the Hamiltonian's symmetry demands."""
    torch.manual_seed(0)
    p = Predictor([_payload()], tta=("rotate", "mirror", "time_reversal", "inplane_reversal"))
    assert len(p.elements) == 32
    x = torch.nn.functional.normalize(torch.randn(3, 3, 8, 8), dim=1)
    mu, std = p.predict(x)
    offset = lambda_offset(p.scaler)
    for element in group_elements(["rotate", "mirror", "time_reversal"]):
        mu_g, std_g = p.predict(apply_symmetry(x, element))
        np.testing.assert_allclose(mu_g, mu, atol=1e-5)
        np.testing.assert_allclose(std_g, std, atol=1e-5)
    mu_r, _ = p.predict(apply_symmetry(x, 16))
    np.testing.assert_allclose(mu_r[:, 0], offset - mu[:, 0], atol=1e-5)
    np.testing.assert_allclose(mu_r[:, 1:], mu[:, 1:], atol=1e-5)
    # without averaging the same network is not equivariant
    plain = Predictor([_payload()])
    plain.nets = p.nets
    assert np.abs(plain.predict(apply_symmetry(x, 1))[0] - plain.predict(x)[0]).max() > 1e-4


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, tiny_data):
    """A 2-member Gaussian ensemble of the tiny CNN, evaluated and logged."""
    root = tmp_path_factory.mktemp("ensemble")
    params_path = make_project(root, tiny_data)
    params = load_params(params_path, ["train.ensemble=2", "train.epochs={cnn: 1}"])
    result = train_run(params, "cnn", "noisy", root, progress=False)
    publish_run(params, "cnn", "noisy", root, result.run_id)
    ev = evaluate_and_log(params, "cnn", "noisy", root, result.run_id)
    return {"root": root, "params": params, "result": result, "ev": ev}


def test_ensemble_members_are_separate_seeded_runs_nested_in_mlflow(ensemble):
    out = ensemble["result"].paths.out
    w0 = torch.load(out / "member0" / "best.pt", weights_only=False)["model"]
    w1 = torch.load(out / "member1" / "best.pt", weights_only=False)["model"]
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # independently seeded
    params = ensemble["params"]
    client = mlflow.MlflowClient(resolve_uri(params.tracking.uri, ensemble["root"]))
    parent = client.get_run(ensemble["result"].run_id)
    assert parent.data.tags["ensemble"] == "2" and parent.data.tags["kind"] == "training"
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["member"] for r in children) == ["0", "1"]
    assert all(r.data.params["base.seed"] != children[0].data.params["base.seed"]
               for r in children[1:])  # fmt: skip
    assert all(client.get_metric_history(r.info.run_id, "val_nll") for r in children)


def test_ensemble_bundle_is_calibrated_and_logged(ensemble):
    out = ensemble["result"].paths.out
    predictor = load_predictor(out / "model.pt")
    assert len(predictor.nets) == 2 and predictor.head == "gaussian"
    assert np.all(predictor.scale > 0)
    assert (np.diff(predictor.quantiles, axis=0) >= 0).all()
    ev, params = ensemble["ev"], ensemble["params"]
    m = ev.metrics()
    keys = ("coverage68_max_deviation", "coverage95_max_deviation", "interval95_width_mean",
            "calibration_scale_lambda", "calibrated_within_5pts",
            "coverage95_beyond_2se")  # fmt: skip
    for key in keys:
        assert key in m and np.isfinite(m[key])
    assert ((ev.observed >= 0) & (ev.observed <= 1)).all()
    assert (np.diff(ev.observed, axis=1) >= 0).all()  # coverage grows with the level
    eval_dir = ensemble["root"] / params.train.eval_out / "cnn-noisy"
    assert (eval_dir / "figures" / "calibration.png").stat().st_size > 10_000
    rows = json.loads((eval_dir / "mae_vs_ts.json").read_text())
    assert "coverage95_K" in rows[0]
    client = mlflow.MlflowClient(resolve_uri(params.tracking.uri, ensemble["root"]))
    run_id = ensemble["result"].run_id
    assert len(client.get_metric_history(run_id, "test_mae_lambda")) == len(ev.levels)
    table = mlflow.artifacts.load_dict(f"runs:/{run_id}/evaluation/mae_vs_ts.json")
    assert len(table["data"]) == len(ev.levels) and "coverage68_lambda" in table["columns"]
    assert "coverage68_max_deviation" in client.get_run(run_id).data.metrics  # headline
    figures = [a.path for a in client.list_artifacts(run_id, "figures")]
    assert "figures/calibration.png" in figures
    # the logged model serves the ensemble with its standard deviations
    model, _, spins = logged_model_and_test_spins(ensemble["root"], params, run_id, 2)
    frame = model.predict(spins)
    x = torch.from_numpy(spins.transpose(0, 3, 1, 2).copy())
    mu, std = predictor.predict(x)
    np.testing.assert_allclose(frame[["lambda_n", "K_n", "D_n"]].to_numpy(), mu, rtol=1e-5)
    np.testing.assert_allclose(frame[["lambda_n_std", "K_n_std", "D_n_std"]].to_numpy(), std,
                               rtol=1e-5)  # fmt: skip
    assert (frame[["lambda_std", "K_std", "D_std"]].to_numpy() > 0).all()


def test_ensemble_resumes_member_by_member(ensemble, tmp_path, tiny_data):
    """Asking for more epochs continues each member from its own last.pt."""
    root = ensemble["root"]
    params = load_params(root / "params.yaml", ["train.ensemble=2", "train.epochs={cnn: 2}"])
    result = train_run(params, "cnn", "noisy", root, progress=False)
    assert result.resumed_from == 1 and result.state.epoch == 2
    assert result.run_id == ensemble["result"].run_id


def test_ablation_logs_conditions_seeds_and_verdicts(tmp_path, tiny_data):
    params_path = make_project(tmp_path, tiny_data)
    params = load_params(params_path, ["train.epochs={cnn: 1}"])
    from spinfer.train.ablation import CONDITIONS, ablate

    summary = ablate(params, tmp_path, "cnn", "noisy", seeds=3, out="artifacts/ablation")
    assert set(summary["conditions"]) == set(CONDITIONS) and summary["seeds"] == 3
    n_levels = len(params.noise.test_levels)
    for cond, entry in summary["conditions"].items():
        assert len(entry["mae_mean"]) == n_levels and all(s >= 0 for s in entry["mae_seed_std"])
        if cond != "plain":
            assert len(entry["beyond_spread"]) == n_levels
            diff = np.array(entry["mae_mean"]) - np.array(
                summary["conditions"]["plain"]["mae_mean"]
            )
            np.testing.assert_allclose(entry["diff_vs_plain"], diff, atol=1e-12)
    folder = tmp_path / "artifacts/ablation/cnn-noisy"
    assert (folder / "ablation.png").is_file() and (folder / "summary.json").is_file()
    client = mlflow.MlflowClient(resolve_uri(params.tracking.uri, tmp_path))
    exp = client.get_experiment_by_name(f"{params.tracking.experiment}-ablation")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "ablation-summary"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 6  # 3 seeds x with/without augmentation
    assert client.get_metric_history(parents[0].info.run_id, "diff_augment_tta")
    assert (
        "beyond_spread_tta" in parents[0].data.metrics
        or client.get_run(parents[0].info.run_id).data.metrics.get("beyond_spread_tta") is not None
    )
    # the registry's experiment is untouched
    assert client.get_experiment_by_name(params.tracking.experiment) is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.augment=[rotate, spin_flip]", "train.augment: unknown operation 'spin_flip'"),
        ("train.tta=[translate]", "train.tta: unknown operation 'translate'"),
        ("train.ensemble=1", "an ensemble needs at least 2 members"),
        ("train.head=laplace", "train.head: unknown head 'laplace'"),
    ],
)
def test_bad_uncertainty_and_symmetry_config_is_one_line(override, message):
    proc = subprocess.run(
        [sys.executable, "-m", "spinfer.cli", "train", "--params", str(ROOT / "params.yaml"),
         "--model", "cnn", "--data", "noisy", "--set", override],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_lambda_reversal_needs_a_symmetric_range():
    from spinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="symmetric"):
        load_params(ROOT / "params.yaml", ["ranges.dmi_over_dipolar=[-1.0, 3.0]"])
    p = load_params(
        ROOT / "params.yaml",
        ["ranges.dmi_over_dipolar=[-1.0, 3.0]", "train.augment=[rotate, mirror]"],
    )
    assert p.train.augment_ops == ("rotate", "mirror")


def _ablate(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spinfer.cli", "train", "ablate",
         "--params", str(ROOT / "params.yaml"), *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip


def test_ablation_needs_three_seeds(tmp_path):
    proc = _ablate(tmp_path, "--seeds", "2")
    assert proc.returncode == 1 and "at least 3 seeds" in proc.stderr


def test_ablation_of_an_unknown_model_is_a_bad_argument(tmp_path):
    proc = _ablate(tmp_path, "--model", "nope")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error:") and "unknown model 'nope'" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
