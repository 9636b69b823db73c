"""The external test set: reading it, scoring estimates against the range centre, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinfer.data.external import load_external, panel_tiles
from spinfer.data.targets import TargetScaler
from spinfer.errors import InputError
from spinfer.train.external import CENTRE, external_metrics
from tests.conftest import ROOT, smooth_texture
from tests.test_cli import _one_error_line, run

SCALER = TargetScaler((-0.39, 0.03, 0.05), (0.39, 1.06, 0.13))


def _write(path, n=6, size=16, **override):
    spins = np.stack([smooth_texture(i, size) for i in range(n)]).astype(np.float32)
    rng = np.random.default_rng(0)
    params = SCALER.denormalize(rng.random((n, 3)))
    arrays = {"spins": spins, "params": params, **override}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return spins, params


def test_load_external_reads_spins_params_and_phase(tmp_path):
    spins, params = _write(tmp_path / "set.npz")
    ext = load_external(tmp_path / "set.npz")
    assert ext.name == "set" and len(ext) == 6 and ext.meta == {}
    np.testing.assert_array_equal(ext.spins, spins)
    np.testing.assert_allclose(ext.params, params)
    expected = np.abs(spins[..., 2]).mean(axis=(1, 2)) > 0.5
    np.testing.assert_array_equal(ext.out_of_plane, expected)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"params": None}, "no 'params' array"),
        ({"spins": None}, "no 'spins' array"),
        ({"params": np.zeros((5, 3))}, "params must be (6, 3)"),
        ({"spins": np.ones((6, 16, 16, 2), np.float32)}, "spins must be (N, L, L, 3)"),
        ({"spins": np.full((6, 16, 16, 3), 0.5, np.float32)}, "not unit vectors"),
        ({"params": np.full((6, 3), np.nan)}, "NaN"),
    ],
)
def test_load_external_names_what_is_wrong(tmp_path, override, needle):
    _write(tmp_path / "bad.npz", **override)
    with pytest.raises(InputError, match="external set") as err:
        load_external(tmp_path / "bad.npz")
    assert needle in str(err.value)


def test_load_external_missing_or_not_npz(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_external(tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(InputError, match="not a NumPy"):
        load_external(tmp_path / "text.npz")


def test_panel_tiles_cover_the_texture_without_overlap():
    spins = smooth_texture(3, 40)
    tiles = panel_tiles(spins, 16)
    assert tiles.shape == (4, 16, 16, 3)  # 40 // 16 = 2 panels each way
    np.testing.assert_array_equal(tiles[1], spins[0:16, 16:32])
    np.testing.assert_array_equal(tiles[2], spins[16:32, 0:16])
    assert panel_tiles(spins, 40).shape == (1, 40, 40, 3)
    with pytest.raises(InputError, match="smaller than the model"):
        panel_tiles(spins, 41)


def test_metrics_are_zero_for_the_truth_and_one_for_the_range_centre(tmp_path):
    _write(tmp_path / "set.npz", n=40)
    ext = load_external(tmp_path / "set.npz")
    truth_n = SCALER.normalize(ext.params)
    perfect = external_metrics(truth_n, ext, SCALER)
    centre = external_metrics(np.full_like(truth_n, CENTRE), ext, SCALER)
    for name in ("lambda", "K", "D"):
        assert perfect[f"external_mae_over_centre_{name}"] == 0.0
        assert perfect[f"external_corr_{name}"] == pytest.approx(1.0)
        assert centre[f"external_mae_over_centre_{name}"] == pytest.approx(1.0)
        assert np.isnan(centre[f"external_corr_{name}"])  # a constant carries nothing
        phys = np.abs(SCALER.denormalize(np.full_like(truth_n, CENTRE)) - ext.params)
        j = ("lambda", "K", "D").index(name)
        assert centre[f"external_mae_{name}_phys"] == pytest.approx(phys[:, j].mean())
    assert centre["external_n"] == 40 and centre["external_mae_over_centre_max"] == pytest.approx(
        1
    )


def test_external_cli_errors_are_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    args = ("train", "external", "--params", str(tmp_path / "params.yaml"))
    _one_error_line(run(*args, "--model", "cnn", "--data", "noisy"), 1, "no trained predictor")
    off = run(*args, "--model", "cnn", "--data", "noisy", "--set", "external.data=null")
    _one_error_line(off, 1, "external.data is null")
    _one_error_line(run(*args, "--model", "nope", "--data", "noisy"), 2, "nope")  # a bad argument
    _one_error_line(run(*args), 2, "--model")
    (tmp_path / "tuned.yaml").write_text("")
    nothing = run(*args, "--tuned", str(tmp_path / "tuned.yaml"))
    assert nothing.returncode == 0 and "nothing to do" in nothing.stderr, nothing.stderr


def test_evaluate_cli_errors_are_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    args = ("train", "evaluate", "--params", str(tmp_path / "params.yaml"))
    _one_error_line(run(*args, "--model", "cnn", "--data", "noisy"), 1, "no trained predictor")
    _one_error_line(run(*args, "--model", "cnn", "--data", "wet"), 2, "wet")  # a bad argument
    _one_error_line(run(*args), 2, "--model")
    skipped = run(*args, "--model", "resnet50", "--data", "noisy")  # not in train.grid
    assert skipped.returncode == 0, skipped.stderr
    metrics = json.loads((tmp_path / "artifacts/eval/resnet50-noisy/metrics.json").read_text())
    assert metrics["skipped"] and "train.grid" in metrics["reason"]
