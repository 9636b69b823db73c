"""benchmarks/pipeline_stages.py: dvc.yaml's stages in dependency order, without DVC."""

from __future__ import annotations

import importlib.util
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
