"""Register, promote, roll back, predict: a real MLflow registry on the tiny dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from spinfer.config import load_params
from spinfer.errors import InputError
from spinfer.serve.predict import read_spin_images
from spinfer.serve.publish import publish_run
from spinfer.serve.registry import best_run, promote, register, rollback
from spinfer.tracking import resolve_uri
from spinfer.train.evaluate import evaluate_and_log
from spinfer.train.loop import train_run
from tests.conftest import make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_data):
    """Two evaluated runs (cnn on noisy data, cnn on clean data) in one tracking store."""
    root = tmp_path_factory.mktemp("registry")
    params_path = make_project(root, tiny_data)
    params = load_params(params_path)
    for data in ("noisy", "clean"):
        result = train_run(params, "cnn", data, root, progress=False)
        publish_run(params, "cnn", data, root, result.run_id)
        evaluate_and_log(params, "cnn", data, root, result.run_id)
    client = mlflow.MlflowClient(resolve_uri(params.tracking.uri, root))
    return {"root": root, "params_path": params_path, "params": params, "client": client}


def _alias(client, alias):
    return str(client.get_model_version_by_alias("spinfer", alias).version)


def _same_run_in_both_names(client, *aliases):
    """The compact variant's aliases point at the tensor model's runs."""
    for alias in aliases:
        tensor = client.get_model_version_by_alias("spinfer", alias)
        compact = client.get_model_version_by_alias("spinfer-compact", alias)
        assert compact.run_id == tensor.run_id, alias


def test_register_picks_the_lowest_mean_test_mae_and_is_idempotent(project):
    params, root, client = project["params"], project["root"], project["client"]
    best = best_run(params, root)
    exp = client.get_experiment_by_name("spinfer")
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'training'")
    assert best.data.metrics["mae_mean"] == min(r.data.metrics["mae_mean"] for r in runs)
    first = register(params, root)
    assert first.created and _alias(client, "challenger") == first.version
    again = register(params, root)
    assert not again.created and again.version == first.version
    assert len(client.search_model_versions("name = 'spinfer'")) == 1
    tags = client.get_model_version("spinfer", first.version).tags
    assert tags["run_name"] == first.run_name and "lowest mae_mean" in tags["rule"]
    # the compact variant of the same run: registered once, challenger too, same tags
    assert first.compact_version is not None and again.compact_version == first.compact_version
    assert len(client.search_model_versions("name = 'spinfer-compact'")) == 1
    _same_run_in_both_names(client, "challenger")
    compact_tags = client.get_model_version("spinfer-compact", first.compact_version).tags
    assert compact_tags["run_name"] == first.run_name


def test_promote_first_champion_then_nothing_changes(project):
    params, root, client = project["params"], project["root"], project["client"]
    register(params, root)
    decision = promote(params, root)
    assert decision.decision == "promoted" and "first champion" in decision.reason, decision.reason
    champion = _alias(client, "champion")
    tags = client.get_model_version("spinfer", champion).tags
    assert tags["promotion.decision"] == "promoted"
    assert float(tags["promotion.challenger_mae"]) == pytest.approx(decision.challenger_mae)
    assert tags["promotion.dataset"].startswith(("md5:", "sha256:"))
    assert promote(params, root).decision == "unchanged"
    assert _alias(client, "champion") == champion
    _same_run_in_both_names(client, "champion")
    # a store registered before the compact variant existed: promote fills its aliases in
    client.delete_registered_model_alias("spinfer-compact", "champion")
    assert promote(params, root).decision == "unchanged"
    _same_run_in_both_names(client, "champion")


def _register_other_run(project) -> str:
    """Register the run that the rule did not pick (the worse one) as a second version."""
    params, root, client = project["params"], project["root"], project["client"]
    best = best_run(params, root)
    exp = client.get_experiment_by_name("spinfer")
    other = next(
        r for r in client.search_runs([exp.experiment_id], "tags.kind = 'training'")
        if r.info.run_id != best.info.run_id
    )  # fmt: skip
    versions = client.search_model_versions(f"name = 'spinfer' and run_id = '{other.info.run_id}'")
    if versions:
        return str(versions[0].version)
    mv = mlflow.register_model(f"runs:/{other.info.run_id}/model", "spinfer")
    return str(mv.version)


def test_a_worse_challenger_is_kept_out_then_a_better_one_wins_and_rollback_works(project):
    params, root, client = project["params"], project["root"], project["client"]
    register(params, root)
    promote(params, root)
    good = _alias(client, "champion")
    worse = _register_other_run(project)
    client.set_registered_model_alias("spinfer", "challenger", worse)
    kept = promote(params, root)
    assert kept.decision == "kept" and "does not beat" in kept.reason
    assert _alias(client, "champion") == good
    assert client.get_model_version("spinfer", worse).tags["promotion.decision"] == "kept"
    # now the worse one is champion and the good one challenges: promoted, previous kept
    client.set_registered_model_alias("spinfer", "champion", worse)
    client.set_registered_model_alias("spinfer", "challenger", good)
    won = promote(params, root)
    assert won.decision == "promoted" and won.challenger_mae < won.champion_mae
    assert _alias(client, "champion") == good and _alias(client, "previous") == worse
    # the worse run was registered by hand (tensor model only): its compact model was
    # registered on first use, so both names serve the same runs
    _same_run_in_both_names(client, "champion", "previous")
    rollback(params, root)
    assert _alias(client, "champion") == worse and _alias(client, "previous") == good
    _same_run_in_both_names(client, "champion", "previous")
    rollback(params, root)
    assert _alias(client, "champion") == good
    _same_run_in_both_names(client, "champion", "previous")


def test_scoring_runs_without_the_source_tree(project, capfd):
    from spinfer.serve.registry import score_in_clean_process

    params, root = project["params"], project["root"]
    register(params, root)
    promote(params, root)
    capfd.readouterr()
    score = score_in_clean_process(params, root, "models:/spinfer@champion", progress=True)
    assert "/code/spinfer/" in score["code"] and "/src/spinfer/" not in score["code"]
    assert len(score["per_level"]) == 11 and score["mae_mean"] > 0
    shown = capfd.readouterr().err  # the clean process's progress bar reaches our stderr
    assert "score models:/spinfer@champion" in shown and "11/11" in shown


def test_a_model_that_imports_an_undeclared_package_is_refused(project, monkeypatch):
    from spinfer.serve import pyfunc
    from spinfer.serve.registry import score_in_clean_process

    params, root, client = project["params"], project["root"], project["client"]
    run = best_run(params, root)
    checkpoint = root / params.train.out / run.info.run_name / "best.pt"
    declared = [p for p in pyfunc.SERVED_PACKAGES if p not in ("torch", "timm")]
    monkeypatch.setattr(pyfunc, "SERVED_PACKAGES", tuple(declared))
    mlflow.set_tracking_uri(resolve_uri(params.tracking.uri, root))
    with mlflow.start_run(experiment_id=run.info.experiment_id, run_name="undeclared") as bad:
        pyfunc.log_pyfunc_model(checkpoint, "model")
    try:
        with pytest.raises(Exception, match="undeclared import: torch"):
            score_in_clean_process(params, root, f"runs:/{bad.info.run_id}/model")
    finally:
        client.delete_run(bad.info.run_id)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "spinfer.cli", *args], capture_output=True, text=True,
        timeout=600, cwd=cwd,
    )  # fmt: skip


def test_predict_cli_table_and_json(project, tiny_data, tmp_path):
    params, root = project["params"], project["root"]
    register(params, root)
    promote(params, root)
    spins = np.asarray(
        __import__("zarr").open_array(tiny_data["textures"] / "spins", mode="r")[:2]
    )
    np.save(tmp_path / "two.npy", spins)
    table = _cli("predict", str(tmp_path / "two.npy"), "--params", str(project["params_path"]))
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.strip().splitlines()) == 3
    header = table.stdout.splitlines()[0].split()
    assert header[:8] == ["image", "panel", "lambda", "K", "D", "lambda_std", "K_std", "D_std"]
    out = _cli("predict", str(tmp_path / "two.npy"), "--json", "--params",
               str(project["params_path"]))  # fmt: skip
    records = json.loads(out.stdout)
    assert len(records) == 2 and {"lambda", "K", "D", "lambda_n", "K_std"} <= set(records[0])
    assert records[0]["K_std"] > 0
    store = _cli("predict", str(tiny_data["textures"]), "--json", "--params",
                 str(project["params_path"]))  # fmt: skip
    assert len(json.loads(store.stdout)) == 30


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "models:/spinfer@nosuchalias"], "cannot load model"),
        (["--model", "models:/nosuchmodel@champion"], "cannot load model"),
        (["--crops", "diagonal"], "--crops"),
    ],
)
def test_predict_cli_errors(project, tmp_path, extra, needle):
    spins = np.zeros((1, 16, 16, 3), np.float32)
    spins[..., 2] = 1
    np.save(tmp_path / "one.npy", spins)
    run = _cli("predict", str(tmp_path / "one.npy"), "--params", str(project["params_path"]),
               *extra)  # fmt: skip
    assert run.returncode == 1, run.stdout
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and needle in run.stderr


def test_predict_refuses_non_spin_input(project, tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    run = _cli("predict", str(tmp_path / "junk.npy"), "--params", str(project["params_path"]))
    assert run.returncode == 1 and "not a NumPy .npy/.npz spin array" in run.stderr
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(InputError, match="expected spins of shape"):
        read_spin_images(tmp_path / "flat.npy")
    nan = np.full((1, 16, 16, 3), np.nan, np.float32)
    np.save(tmp_path / "nan.npy", nan)
    run = _cli("predict", str(tmp_path / "nan.npy"), "--params", str(project["params_path"]))
    assert run.returncode == 1 and "NaN" in run.stderr


def test_no_champion_and_no_challenger_are_one_line_errors(tmp_path, tiny_data):
    params_path = make_project(tmp_path, tiny_data)
    params = load_params(params_path, ["tracking.registered_model=empty"])
    with pytest.raises(InputError, match="no version with the alias 'challenger'"):
        promote(params, tmp_path)
    run = _cli("registry", "promote", "--params", str(params_path), "--set",
               "tracking.registered_model=empty")  # fmt: skip
    assert run.returncode == 1 and run.stderr.startswith("error:")
    np.save(tmp_path / "one.npy", np.dstack([np.zeros((16, 16, 2)), np.ones((16, 16))]))
    none = _cli("predict", str(tmp_path / "one.npy"), "--params", str(params_path))
    assert none.returncode == 1 and "cannot load model models:/spinfer@champion" in none.stderr


def test_external_guard_refuses_a_champion_no_better_than_the_range_centre(project, tiny_data):
    """Runs scored on an external set (here the tiny test split, stored as one) carry
    ``external_*`` metrics; a limit nobody meets refuses them in register and promote."""
    from spinfer.data.dataset import open_dataset
    from spinfer.train.external import evaluate_external

    root, client = project["root"], project["client"]
    test = open_dataset("test", "clean", **tiny_data)
    (root / "data" / "external").mkdir(parents=True, exist_ok=True)
    np.savez(
        root / "data" / "external" / "spirit.npz",
        spins=np.stack([test.spins(i) for i in range(len(test))]),
        params=test.params,
    )
    strict = load_params(project["params_path"], ["external.max_ratio=1e-9"])
    with pytest.raises(InputError, match="has no external-set metrics"):
        best_run(strict, root)  # guard on, runs not scored yet
    for data in ("noisy", "clean"):
        metrics = evaluate_external(project["params"], "cnn", data, root)
        assert metrics["external_n"] == len(test)
        assert (root / "artifacts" / "eval" / f"cnn-{data}" / "external.json").is_file()
        assert (
            root / "artifacts" / "eval" / f"cnn-{data}" / "external" / "external.png"
        ).is_file()
    logged = client.get_run(best_run(project["params"], root).info.run_id).data.metrics
    assert "external_mae_over_centre_K" in logged
    with pytest.raises(InputError, match="no better than the range centre on the external set"):
        best_run(strict, root)
    lenient = load_params(project["params_path"], ["external.max_ratio=1e9"])
    assert best_run(lenient, root).info.run_id == best_run(project["params"], root).info.run_id
    # promote refuses a challenger that the guard bars, and the champion stays
    register(project["params"], root)
    champion = (
        _alias(client, "champion") if client.get_registered_model("spinfer").aliases else None
    )
    other = _register_other_run(project)
    client.set_registered_model_alias("spinfer", "challenger", other)
    kept = promote(strict, root)
    assert kept.decision == "kept" and "range centre" in kept.reason, kept.reason
    assert kept.champion_after == champion
    # register under the guard: a decision (exit 0, recorded), no challenger afterwards
    out = root / "registration.json"
    run = _cli("register", "--params", str(project["params_path"]), "--set",
               "external.max_ratio=1e-9", "--out", str(out))  # fmt: skip
    assert run.returncode == 0 and "register: refused:" in run.stderr, run.stderr
    doc = json.loads(out.read_text())
    assert doc["run_name"] is None and "range centre" in doc["refused"]
    assert not any(a == "challenger" for a in client.get_registered_model("spinfer").aliases)
    unchanged = promote(strict, root)
    assert unchanged.decision == "unchanged" and "no challenger" in unchanged.reason
    assert unchanged.champion_after == champion
    # an external set whose parameters are missing: a one-line error from the command
    spins = np.load(root / "data" / "external" / "spirit.npz")["spins"]
    np.savez(root / "data" / "external" / "spirit.npz", spins=spins)
    run = _cli("external", "--params", str(project["params_path"]), "--model", "cnn",
               "--data", "noisy")  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1 and "no 'params' array" in lines[0], lines
