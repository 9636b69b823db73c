"""Training, resume, DDP, evaluation and MLflow logging on the tiny dataset (real store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from spinfer.config import load_params
from spinfer.serve.publish import publish_run
from spinfer.tracking import resolve_uri
from spinfer.train.evaluate import HEADLINE, evaluate_and_log
from spinfer.train.loop import train_run
from tests.conftest import logged_model_and_test_spins, make_project


def _client(params_path: Path):
    params = load_params(params_path)
    uri = resolve_uri(params.tracking.uri, params_path.parent)
    return mlflow.MlflowClient(tracking_uri=uri), params


def _runs(params_path: Path, name: str):
    client, params = _client(params_path)
    exp = client.get_experiment_by_name(params.tracking.experiment)
    if exp is None:
        return client, []
    runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
    return client, runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """cnn on noisy data, 2 epochs, evaluated and logged: the reference run."""
    root = tmp_path_factory.mktemp("trained")
    params_path = make_project(root, tiny_data)
    params = load_params(params_path)
    result = train_run(params, "cnn", "noisy", root, progress=False)
    publish_run(params, "cnn", "noisy", root, result.run_id)
    ev = evaluate_and_log(params, "cnn", "noisy", root, result.run_id)
    return {"root": root, "params_path": params_path, "result": result, "ev": ev}


def test_training_writes_best_and_last_checkpoints(trained):
    result = trained["result"]
    assert result.state.epoch == 2 and len(result.state.history) == 2
    assert result.paths.best.is_file() and result.paths.last.is_file()
    best = torch.load(result.paths.best, weights_only=False)
    assert best["model_name"] == "cnn" and best["epoch"] == result.state.best_epoch
    assert best["val_mse"] == pytest.approx(min(h["val_mse"] for h in result.state.history))
    assert set(best["scaler"]) >= {"min", "max"}


def test_evaluation_shows_progress_when_asked(trained, capfd):
    from spinfer.train.evaluate import evaluate_run

    params = load_params(trained["params_path"])
    ev = evaluate_run(params, "cnn", "noisy", trained["root"], progress=True)
    assert "evaluate cnn-noisy" in capfd.readouterr().err
    np.testing.assert_array_equal(ev.mae, trained["ev"].mae)  # the same numbers, from model.pt


def test_evaluation_files_for_dvc(trained):
    out = trained["root"] / "artifacts" / "eval" / "cnn-noisy"
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("lambda", "K", "D"):
        assert metrics[f"mae_{name}_ts0"] >= 0 and metrics[f"baseline_mae_{name}"] > 0
    assert "pca_dK_over_dD" in metrics and metrics["kshape_factor"] == pytest.approx(6.775, 1e-3)
    curve = json.loads((out / "mae_vs_ts.json").read_text())
    assert [row["ts"] for row in curve] == pytest.approx([0.1 * i for i in range(11)])
    for png in ("mae_vs_ts.png", "error_heatmaps.png", "error_pca.png"):
        assert (out / "figures" / png).stat().st_size > 1000


def test_mlflow_run_has_params_tags_curves_figures_and_model(trained):
    client, runs = _runs(trained["params_path"], "cnn-noisy")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["architecture"] == "cnn" and run.data.tags["training_data"] == "noisy"
    params = load_params(trained["params_path"])
    assert run.data.params["train.lr"] == str(params.train.lr)
    assert run.data.params["profile"] == "tiny"
    assert "train.out" not in run.data.params and "tracking.uri" not in run.data.params
    assert run.data.tags["dataset.textures"].startswith(("md5:", "sha256:"))
    assert run.data.tags["git_commit"] and run.data.tags["dataset.test_noise"]
    config = yaml.safe_load(
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/params.yaml")
    )
    assert config["train"]["out"] == params.train.out  # the whole config, as a file
    assert len(client.get_metric_history(run.info.run_id, "train_objective")) == 2
    steps = client.get_metric_history(run.info.run_id, "test_mae_K")
    assert sorted(m.step for m in steps) == [10 * i for i in range(11)]  # Ts in hundredths
    ts = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test_ts")}
    assert ts[30] == pytest.approx(0.3)  # the chart view's metric x-axis
    # a short headline set in the UI; every other number in the logged metrics.json
    assert set(HEADLINE) <= set(run.data.metrics)
    assert "baseline_mae_lambda" not in run.data.metrics and len(run.data.metrics) <= 32
    full = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluation/metrics.json")
    assert full["baseline_mae_lambda"] > 0 and "pca_component_0_dK" in full
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert arts >= {"figures/mae_vs_ts.png", "figures/error_heatmaps.png", "figures/error_pca.png"}
    ckpts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert ckpts == {"checkpoints/best.pt"}  # no optimizer state in MLflow
    assert run.info.status == "FINISHED"
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"textures.zarr", "noisy.zarr"}
    assert (
        run.data.tags["dataset.textures"].split(":")[1].startswith(inputs["textures.zarr"].digest)
    )
    kind = client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/mae_vs_ts.json", "evaluation/error_pca.json"} <= tables
    record = json.loads((trained["result"].paths.out / "run.json").read_text())
    assert record["run_id"] == run.info.run_id  # the evaluation stages find the run by it


def test_logged_model_returns_physical_parameters(trained):
    _, runs = _runs(trained["params_path"], "cnn-noisy")
    params = load_params(trained["params_path"])
    model, ds, spins = logged_model_and_test_spins(trained["root"], params, runs[0].info.run_id, 3)
    out = model.predict(spins)
    assert list(out.columns)[:5] == ["image", "panel", "lambda", "K", "D"] and len(out) == 3
    # the wrapper is the network averaged over train.tta's elements (the default's D4 keeps
    # lambda), plus the inverse target map
    from spinfer.data.symmetry import apply_symmetry, group_elements, lambda_sign
    from spinfer.models.predictor import load_predictor
    from spinfer.train.loop import load_best

    x = torch.from_numpy(spins.transpose(0, 3, 1, 2).copy())
    net = torch.load(trained["result"].paths.best, weights_only=False)
    model_net, _ = load_best(trained["result"].paths.best)
    elements = group_elements(params.train.tta_ops)
    assert len(elements) == 8 and all(lambda_sign(g) > 0 for g in elements)
    with torch.no_grad():
        raw = np.stack([model_net(apply_symmetry(x, g) if g else x).double().numpy()
                        for g in elements])  # fmt: skip
    mean = raw[..., :3].mean(0)
    np.testing.assert_allclose(
        out[["lambda", "K", "D"]].to_numpy(), ds.scaler.denormalize(mean), rtol=1e-5, atol=1e-6
    )
    # Gaussian head: the mixture's std (mean variance + variance of the means) x the
    # calibration factor, in physical units
    var = np.exp(raw[..., 3:]).mean(0) + (raw[..., :3] ** 2).mean(0) - mean**2
    scale = load_predictor(trained["result"].paths.out / "model.pt").scale
    std = np.sqrt(var) * scale * ds.scaler.span
    np.testing.assert_allclose(out[["lambda_std", "K_std", "D_std"]].to_numpy(), std, rtol=1e-4)
    assert net["size"] == 16 and net["head"] == "gaussian"


def test_more_epochs_resume_bit_identically(tmp_path, tiny_data, trained):
    params_path = make_project(tmp_path, tiny_data)
    one = load_params(params_path, ["train.epochs={cnn: 1}"])
    first = train_run(one, "cnn", "noisy", tmp_path, progress=False)
    assert first.state.epoch == 1
    two = load_params(params_path)
    second = train_run(two, "cnn", "noisy", tmp_path, progress=False)
    assert second.resumed_from == 1 and second.state.epoch == 2
    assert second.run_id == first.run_id
    a = torch.load(second.paths.last, weights_only=False)["model"]
    b = torch.load(trained["result"].paths.last, weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_preloaded_batches_train_bit_identically(tmp_path, tiny_data, trained):
    """train.preload: the images wait on the device and batches are cut there; the same
    batches as the DataLoader's, so the same weights and curves, bit for bit."""
    params = load_params(make_project(tmp_path, tiny_data), ["train.preload=true"])
    result = train_run(params, "cnn", "noisy", tmp_path, progress=False)
    reference = trained["result"]
    for ours, theirs in zip(result.state.history, reference.state.history, strict=True):
        for key in ("train_objective", "train_mse", "val_mse", "val_mae"):
            assert ours[key] == theirs[key]
    a = torch.load(result.paths.last, weights_only=False)["model"]
    b = torch.load(reference.paths.last, weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_device_batches_are_the_loaders_batches(tiny_data):
    """Weighted, shuffled sampling: every batch equal to the DataLoader's, the last short."""
    from torch.utils.data import DataLoader

    from spinfer.data.dataset import ShardSampler, open_dataset, phase_weights
    from spinfer.train.batches import DeviceBatches, should_preload

    ds = open_dataset(
        "train", "noisy", tiny_data["textures"], tiny_data["noisy"], tiny_data["splits"]
    )
    weights = phase_weights(np.arange(len(ds)) % 3 == 0, 0.5)
    sampler = ShardSampler(ds, True, 7, weights=weights)
    sampler.set_epoch(3)
    batch = 3 if len(ds) % 3 else 4
    ours = list(DeviceBatches(ds, sampler, batch, torch.device("cpu")))
    theirs = list(DataLoader(ds, batch_size=batch, sampler=sampler))
    assert len(ours) == len(theirs) == len(DeviceBatches(ds, sampler, batch, torch.device("cpu")))
    assert len(ours[-1][0]) < batch
    for (x, y), (x_ref, y_ref) in zip(ours, theirs, strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    cpu = torch.device("cpu")
    assert should_preload(True, [ds], cpu) and not should_preload("auto", [ds], cpu)
    assert not should_preload(False, [ds], cpu)


def test_onecycle_schedule_decays_and_resumes_bit_identically(tmp_path, tiny_data):
    """The schedule steps per batch, travels in last.pt and picks up where a stopped run
    left off; its horizon (the epochs) is in the fingerprint, so more epochs start afresh."""
    over = ["train.lr_schedule=onecycle", "train.epochs={cnn: 3}"]
    whole_root, cut_root = tmp_path / "whole", tmp_path / "cut"
    params = load_params(make_project(whole_root, tiny_data), over)
    whole = train_run(params, "cnn", "noisy", whole_root, progress=False)
    lrs = [h["lr"] for h in whole.state.history]
    assert lrs[0] < params.train.lr and lrs[0] > lrs[1] > lrs[2]
    assert lrs[2] == pytest.approx(params.train.lr / 25e4)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    params = load_params(make_project(cut_root, tiny_data), over)
    with pytest.raises(Stop):
        train_run(params, "cnn", "noisy", cut_root, progress=False, on_epoch=stop_after_two)
    resumed = train_run(params, "cnn", "noisy", cut_root, progress=False)
    assert resumed.resumed_from == 2 and [h["lr"] for h in resumed.state.history] == lrs
    a = torch.load(resumed.paths.last, weights_only=False)
    b = torch.load(whole.paths.last, weights_only=False)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    longer = load_params(cut_root / "params.yaml", [over[0], "train.epochs={cnn: 4}"])
    assert train_run(longer, "cnn", "noisy", cut_root, progress=False).resumed_from == 0


def test_changed_training_code_does_not_resume_an_old_checkpoint(tmp_path, tiny_data, monkeypatch):
    """dvc repro reruns a train stage when its code changes, and its checkpoints persist:
    the fingerprint holds the training code's hash so the rerun starts afresh."""
    from spinfer.train import fingerprint

    assert set(fingerprint.TRAINING_SOURCES) >= {"train/loop.py", "data/dataset.py"}
    params = load_params(make_project(tmp_path, tiny_data), ["train.epochs={cnn: 1}"])
    first = train_run(params, "cnn", "noisy", tmp_path, progress=False)
    assert first.state.epoch == 1
    monkeypatch.setattr(fingerprint, "training_source_hash", lambda: "edited")
    again = train_run(
        load_params(tmp_path / "params.yaml"), "cnn", "noisy", tmp_path, progress=False
    )
    assert again.resumed_from == 0 and again.state.epoch == 2


def test_out_of_plane_share_is_recorded_and_decides_the_weights(tmp_path, tiny_data):
    """The sampler's phase weights reach training, whose MLflow run says what they balance;
    the share is part of the fingerprint (another share does not resume the checkpoint)."""
    from spinfer.train.fingerprint import fingerprint

    params_path = make_project(tmp_path, tiny_data)
    half = load_params(params_path, ["train.epochs={cnn: 1}", "train.out_of_plane_share=0.5"])
    first = train_run(half, "cnn", "noisy", tmp_path, progress=False)
    client, _ = _client(params_path)
    assert " of 18, " in client.get_run(first.run_id).data.tags["out_of_plane_textures"]
    none = load_params(params_path, ["train.epochs={cnn: 1}", "train.out_of_plane_share=null"])
    prints = [fingerprint(p, "cnn", "noisy", tmp_path) for p in (half, none)]
    assert prints[0] != prints[1]
    second = train_run(none, "cnn", "noisy", tmp_path, progress=False)
    assert second.resumed_from == 0 and second.run_id != first.run_id
    assert "out_of_plane_textures" not in client.get_run(second.run_id).data.tags


def test_fresh_noise_trains_on_the_clean_textures_and_decides_the_fingerprint(tmp_path, tiny_data):
    """Under train.fresh_noise noisy training draws its copies from the clean textures each
    epoch (validation keeps the stored copies); the switch and the noise it draws are part
    of the fingerprint, and clean training does not depend on them."""
    from spinfer.data.dataset import FreshNoiseDataset
    from spinfer.train.fingerprint import fingerprint
    from spinfer.train.runs import open_training_data

    params_path = make_project(tmp_path, tiny_data)
    fresh = load_params(params_path, ["train.epochs={cnn: 1}", "train.fresh_noise=true"])
    stored = load_params(params_path, ["train.epochs={cnn: 1}", "train.fresh_noise=false"])
    train_ds, val_ds = open_training_data(fresh, "noisy", tmp_path)
    assert isinstance(train_ds, FreshNoiseDataset) and not isinstance(val_ds, FreshNoiseDataset)
    assert Path(val_ds.store).name == "noisy.zarr"  # the stored copies
    assert not isinstance(open_training_data(stored, "noisy", tmp_path)[0], FreshNoiseDataset)
    assert not isinstance(open_training_data(fresh, "clean", tmp_path)[0], FreshNoiseDataset)
    more = load_params(params_path, ["train.epochs={cnn: 1}", "train.fresh_noise=true",
                                     "noise.microscope=0.9"])  # fmt: skip
    prints = {fingerprint(p, "cnn", "noisy", tmp_path) for p in (fresh, stored, more)}
    assert len(prints) == 3
    clean = {fingerprint(p, "cnn", "clean", tmp_path) for p in (fresh, stored, more)}
    assert len(clean) == 1
    run = train_run(fresh, "cnn", "noisy", tmp_path, progress=False)
    assert run.state.epoch == 1 and np.isfinite(run.state.best_val)


def test_a_lost_tracking_store_gets_a_new_run_with_the_history(tmp_path, tiny_data):
    import shutil

    params_path = make_project(tmp_path, tiny_data)
    one = load_params(params_path, ["train.epochs={cnn: 1}"])
    first = train_run(one, "cnn", "clean", tmp_path, progress=False)
    shutil.rmtree(tmp_path / "mlruns")  # the user wiped the tracking store
    cmd = ["train", "--params", str(params_path), "--model", "cnn", "--data", "clean"]
    run = subprocess.run(_cli(*cmd, "--no-evaluate"), capture_output=True, text=True)
    assert run.returncode == 0 and "resumed at 1" in run.stderr, run.stderr
    import sqlite3  # this process caches the deleted store's engine: read the new file

    with sqlite3.connect(tmp_path / "mlruns" / "mlflow.db") as db:
        runs = db.execute("SELECT run_uuid FROM runs WHERE name = 'cnn-clean'").fetchall()
        assert len(runs) == 1 and runs[0][0] != first.run_id
        query = "SELECT count(*) FROM metrics WHERE key = 'train_objective' AND run_uuid = ?"
        assert db.execute(query, runs[0]).fetchone()[0] == 2


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "spinfer.cli", *args]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_from_last_checkpoint(tmp_path, tiny_data):
    params_path = make_project(tmp_path, tiny_data)
    cmd = _cli("train", "--params", str(params_path), "--model", "cnn", "--data", "clean",
               "--set", "train.epochs={cnn: 60}")  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, env=env)
    last = tmp_path / "artifacts" / "models" / "cnn-clean" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.is_file():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = torch.load(last, weights_only=False)["state"]["epoch"]
    assert 0 < done < 60
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    resumed = int(rerun.stderr.split("resumed at ")[1].split(")")[0])
    assert resumed >= done
    assert torch.load(last, weights_only=False)["state"]["epoch"] == 60
    _, runs = _runs(params_path, "cnn-clean")
    assert len(runs) == 1  # the resumed run continued its MLflow run


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, tiny_data):
    params_path = make_project(tmp_path, tiny_data)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "spinfer.cli", "train", "--params", str(params_path),
        "--model", "cnn", "--data", "noisy",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "artifacts" / "models" / "cnn-noisy" / "best.pt").is_file()
    assert (tmp_path / "artifacts" / "eval" / "cnn-noisy" / "metrics.json").is_file()
    assert run.stderr.count("epoch 2/2") == 1  # rank 0 reports
    _, runs = _runs(params_path, "cnn-noisy")
    assert len(runs) == 1


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [  # a bad argument exits 2, a bad configuration 1
        (["--model", "vgg", "--data", "noisy"], "unknown model 'vgg'", 2),
        (["--model", "cnn", "--data", "dirty"], "unknown training data 'dirty'", 2),
        (
            ["--model", "cnn", "--data", "noisy", "--set", "train.epochs={vgg: 1}"],
            "train.epochs",
            1,
        ),
    ],
)
def test_bad_training_requests_fail_with_one_line(tmp_path, tiny_data, args, needle, code):
    params_path = make_project(tmp_path, tiny_data)
    run = subprocess.run(_cli("train", "--params", str(params_path), *args),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == code
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith("error:") and needle in run.stderr


def test_missing_split_and_bad_tracking_store_fail_with_one_line(tmp_path, tiny_data):
    params_path = make_project(tmp_path, {k: v for k, v in tiny_data.items() if k != "splits"})
    run = subprocess.run(
        _cli("train", "--params", str(params_path), "--model", "cnn", "--data", "clean"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1 and "no split file" in run.stderr, run.stderr
    (tmp_path / "artifacts" / "splits.json").symlink_to(tiny_data["splits"])
    bad = subprocess.run(
        _cli("train", "--params", str(params_path), "--model", "cnn", "--data", "clean",
             "--set", "tracking.uri=sqlite:////proc/no/such/dir/mlflow.db"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: cannot open the MLflow")


ENGINE_COPIES = ("numba", "torch", "numba_reseeded", "torch_reseeded")


def test_engine_transfer_check_reads_both_engines(trained, tiny_data, tmp_path):
    """validation/engines.py anneals the store's test and validation textures on the other
    engine, and on both engines from fresh seeds (the control), and scores the same model on
    all four copies."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    model = trained["result"].paths.out / "model.pt"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "validation" / "engines.py"),
            "--params",
            str(trained["params_path"]),
            "--store",
            str(tiny_data["textures"]),
            "--splits",
            str(tiny_data["splits"]),
            "--model",
            str(model),
            "--split",
            "test",
            "--split",
            "val",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads((tmp_path / "transfer.json").read_text())
    assert doc["store_engine"] == "numba" and doc["other_engine"] == "torch"
    assert doc["textures"] == 12 and doc["splits"] == ["test", "val"]
    # tiny's three sets put 8 of these 12 textures out of plane: every branch below runs
    assert 0 < doc["n_out_of_plane"] < 12
    for copy, key in (("torch", ""), ("numba_reseeded", "_reseeded")):
        assert 0 <= doc[f"same_phase{key}"] <= 1
        for name in ("lambda", "K", "D"):  # over all textures, then the out-of-plane subset
            for part in ("", "_out_of_plane"):
                ratio = doc[f"ratio_{name}{key}{part}"]
                mae = doc[f"mae_{name}_{copy}{part}"]
                assert mae > 0 and ratio == pytest.approx(mae / doc[f"mae_{name}_numba{part}"])
                lo, hi = doc[f"ratio_{name}{key}{part}_ci95"]  # the interval holds the ratio
                assert lo <= ratio * (1 + 1e-9) and hi >= ratio * (1 - 1e-9)
    for name in ("lambda", "K", "D"):  # two realisations a side: the sums of their MAEs
        for part in ("", "_out_of_plane"):
            mae = {c: doc[f"mae_{name}_{c}{part}"] for c in ENGINE_COPIES}
            assert doc[f"ratio_{name}_pooled{part}"] == pytest.approx(
                (mae["torch"] + mae["torch_reseeded"]) / (mae["numba"] + mae["numba_reseeded"])
            )
    # fresh seeds give a different realisation of each texture, not a copy of the store's
    assert doc["mae_K_numba_reseeded"] != doc["mae_K_numba"]
    assert "ratio_K_pooled=" in run.stdout.strip().splitlines()[-1]
    for copy in ENGINE_COPIES:  # each copy described
        d = doc[f"textures_{copy}_out_of_plane"]
        assert d["energy_per_spin"] < 0 and 0 <= d["median_max_torque"] < 0.1
        assert 0 <= d["abs_neel_chirality"] <= 1
        for name in ("lambda", "K", "D"):  # a mean signed error is at most the MAE
            bias = doc[f"bias_{name}_{copy}_out_of_plane"]
            assert abs(bias) <= doc[f"mae_{name}_{copy}_out_of_plane"] + 1e-12
    assert doc["textures_numba_out_of_plane"]["mean_abs_sz"] > 0.5
    assert 0 <= doc["energy_gap_out_of_plane"]["lower_share"] <= 1
    assert "ratio_D=" in run.stdout.strip().splitlines()[-1]


def test_transfer_bias_reads_textures_through_a_psf(trained, tiny_data, tmp_path):
    """validation/transfer_bias.py --blur: every source through every PSF width, the width
    at which a source reads without bias, the figure; an external set that *is* the test
    split's out-of-plane textures reads exactly as they do, blurred or not."""
    import subprocess
    import sys

    from spinfer.data.dataset import open_dataset
    from tests.conftest import ROOT, make_project

    root = tmp_path / "project"
    params_path = make_project(root, tiny_data)
    test = open_dataset("test", "clean", tiny_data["textures"], splits=tiny_data["splits"])
    oop = np.flatnonzero(test.out_of_plane())
    assert len(oop) > 0  # tiny's test split holds out-of-plane textures
    (root / "data" / "external").mkdir(parents=True)
    np.savez(
        root / "data" / "external" / "spirit.npz",
        spins=np.stack([test.spins(i) for i in oop]).astype(np.float32),
        params=test.params[oop],
    )
    model = trained["result"].paths.out / "model.pt"
    script = [sys.executable, str(ROOT / "validation" / "transfer_bias.py")]
    args = ["--params", str(params_path), "--model", str(model), "--out", "out/tb.json"]
    run = subprocess.run(
        [*script, *args, "--blur", "1.5", "0", "0.75", "0"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads((root / "out" / "tb.json").read_text())
    rows = doc["sources"]
    for sigma in ("0", "0.75", "1.5"):  # sorted, each once
        own, ext = rows[f"spinfer test, blur {sigma}"], rows[f"Spirit, blur {sigma}"]
        assert own["n"] == len(oop) and own == ext
    assert rows["spinfer test, blur 0"] == rows["spinfer test, clean"]
    assert rows["spinfer test, blur 1.5"] != rows["spinfer test, clean"]
    crossing = doc["blur_unbiased_D"]
    assert set(crossing) == {"spinfer test", "Spirit"}
    assert crossing["spinfer test"] == crossing["Spirit"]
    assert crossing["Spirit"] is None or 0 <= crossing["Spirit"] <= 1.5
    assert (root / "out" / "transfer_bias_blur.png").stat().st_size > 10_000
    assert "blur_unbiased_D=" in run.stdout.strip().splitlines()[-1]
    bad = subprocess.run(
        [*script, *args, "--blur", "-0.5"], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --blur: PSF widths must be >= 0, got [-0.5]"
    ]
