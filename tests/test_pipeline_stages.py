"""benchmarks/pipeline_stages.py: dvc.yaml's stages in dependency order, without DVC."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "pipeline_stages", ROOT / "benchmarks" / "pipeline_stages.py"
)
ps = importlib.util.module_from_spec(_spec)
sys.modules["pipeline_stages"] = ps  # its dataclass looks its module up there
_spec.loader.exec_module(ps)


@pytest.fixture(scope="module")
def stages():
    return ps.expand(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def test_matrix_stages_expand_as_dvc_names_them(stages):
    names = [s.name for s in stages]
    assert "train@resnet18-noisy" in names and "evaluate@cnn-clean" in names
    train = next(s for s in stages if s.name == "train@resnet50-clean")
    assert "--model resnet50 --data clean" in train.cmd
    assert "artifacts/models/resnet50-clean" in train.outs


def test_promotion_needs_the_grid_and_not_the_spleem_stages(stages):
    plan = [s.name for s in ps.upstream(stages, ["config", "promote"])]
    assert plan[-1] == "promote" and plan[0] == "config"
    assert {
        f"train@{m}-{d}" for m in ("resnet18", "resnet50", "cnn") for d in ("noisy", "clean")
    } <= set(plan)
    assert not any(n.startswith(("spleem", "report")) for n in plan)
    for before, after in [("generate", "split"), ("noise", "train@cnn-noisy"),
                          ("train@cnn-noisy", "evaluate@cnn-noisy"), ("compare", "register"),
                          ("tuned", "register"), ("register", "promote")]:  # fmt: skip
        assert plan.index(before) < plan.index(after)


def test_a_matrix_name_takes_every_item_and_an_unknown_one_is_refused(stages):
    plan = [s.name for s in ps.upstream(stages, ["evaluate"])]
    assert sum(n.startswith("evaluate@") for n in plan) == 6
    with pytest.raises(SystemExit, match="no stage 'nope'"):
        ps.upstream(stages, ["nope"])


@pytest.fixture
def repo_copy(tmp_path):
    """data.dvc and the in-repo DVC remote it is pulled from, in a folder of its own."""
    shutil.copytree(
        ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache")
    )
    shutil.copy(ROOT / "data.dvc", tmp_path / "data.dvc")
    return tmp_path


def test_pull_puts_a_dvc_files_data_in_place_as_its_manifest_says(repo_copy):
    remote = ps.local_remote(repo_copy)
    assert remote.is_dir() and remote.is_relative_to(repo_copy)
    out = yaml.safe_load((repo_copy / "data.dvc").read_text())["outs"][0]
    manifest = json.loads(ps._blob(remote, out["md5"]).read_text())

    (repo_copy / "data").mkdir()
    (repo_copy / "data" / "stale.txt").write_text("not in the manifest")
    assert ps.pull(repo_copy / "data.dvc", remote) == [repo_copy / "data"]
    files = sorted(p.relative_to(repo_copy / "data").as_posix()
                   for p in (repo_copy / "data").rglob("*") if p.is_file())  # fmt: skip
    assert files == sorted(e["relpath"] for e in manifest) and len(files) == out["nfiles"]
    for entry in manifest:
        data = (repo_copy / "data" / entry["relpath"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == entry["md5"]
    sizes = [p.stat().st_size for p in (repo_copy / "data").rglob("*") if p.is_file()]
    assert sum(sizes) == out["size"]


def test_pull_refuses_a_corrupt_blob_and_keeps_what_was_there(repo_copy):
    remote = ps.local_remote(repo_copy)
    ps.pull(repo_copy / "data.dvc", remote)
    before = {p: p.read_bytes() for p in (repo_copy / "data").rglob("*") if p.is_file()}
    out = yaml.safe_load((repo_copy / "data.dvc").read_text())["outs"][0]
    first = json.loads(ps._blob(remote, out["md5"]).read_text())[0]
    blob = ps._blob(remote, first["md5"])
    blob.write_bytes(blob.read_bytes() + b"!")
    with pytest.raises(SystemExit, match=f"{first['relpath']} fails its md5"):
        ps.pull(repo_copy / "data.dvc", remote)
    assert {p: p.read_bytes() for p in (repo_copy / "data").rglob("*") if p.is_file()} == before
    assert not list(repo_copy.glob(".data.pulling"))


def test_pull_of_a_missing_dvc_file_is_one_error_line(tmp_path):
    script = ROOT / "benchmarks" / "pipeline_stages.py"
    run = subprocess.run(
        [sys.executable, str(script), "--pull", str(tmp_path / "nope.dvc"), "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: --pull: no file {tmp_path / 'nope.dvc'}"
