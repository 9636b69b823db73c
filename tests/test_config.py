"""params.yaml: profiles, overrides and one-line errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from spinfer.config import load_params, params_from_dict
from spinfer.data.grid import draw_sets, parameter_grid, resolve_kshape_factor
from spinfer.errors import ConfigError
from tests.conftest import ROOT


def test_repo_params_load_every_profile(repo_params):
    raw = yaml.safe_load(repo_params.read_text())
    default = params_from_dict(raw)
    assert default.physics.size == 100
    tiny = params_from_dict({**raw, "profile": "tiny"})
    assert tiny.physics.size == 16 and tiny.schedule.sweeps < default.schedule.sweeps
    assert tiny.ranges == default.ranges  # untouched keys come from the sections
    paper = params_from_dict({**raw, "profile": "paper"})
    assert paper.physics.size == 100
    gpu = params_from_dict({**raw, "profile": "gpu"})
    assert gpu.dataset.split == (14, 4, 2) and gpu.train.lr_schedule == "onecycle"
    assert default.train.lr_schedule == "onecycle" and paper.train.lr_schedule == "constant"


def test_profiles_size_the_dataset(repo_params):
    raw = yaml.safe_load(repo_params.read_text())
    paper = params_from_dict({**raw, "profile": "paper"})
    assert paper.dataset.sets * paper.dataset.per_set == 80_000
    assert paper.dataset.split == (14, 4, 2)
    default = params_from_dict(raw)
    assert default.physics.size == 100 and sum(default.dataset.split) == default.dataset.per_set
    assert default.dataset.sets * default.dataset.per_set == 800
    assert params_from_dict({**raw, "profile": "tiny"}).dataset.sets < default.dataset.sets
    assert default.noise.test_levels == pytest.approx([0.1 * i for i in range(11)])


def test_profile_is_selectable_by_override(repo_params):
    p = load_params(repo_params, ["profile=tiny", "dataset.sets=2"])
    assert p.profile == "tiny" and p.physics.size == 16 and p.dataset.sets == 2
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_params(repo_params, ["profile=nope"])


def test_override_is_applied_last(repo_params):
    p = load_params(repo_params, ["schedule.sweeps=7", "physics.kshape_factor=2.0"])
    assert p.schedule.sweeps == 7 and p.physics.kshape_factor == 2.0
    # YAML 1.1 reads 1e-9 (no dot) as a string; a float field takes it as the number
    p = load_params(repo_params, ["external.max_ratio=1e-9", "external.data=null"])
    assert p.external.max_ratio == 1e-9 and p.external.data is None


@pytest.mark.parametrize(
    "raw,needle",
    [
        ({"physics": {"sise": 10}}, "physics.sise"),
        ({"physics": {"size": "big"}}, "physics.size"),
        ({"ranges": {"dipolar": [0.2, 0.1]}}, "ranges.dipolar"),
        ({"profile": "huge"}, "unknown profile 'huge'"),
        ({"schedule": {"t_end": -1.0}}, "schedule"),
        ({"nonsense": 1}, "nonsense"),
        ({"physics": {"size": 2}}, "physics.size"),
        ({"preview": {"textures": 0}}, "preview.textures"),
        ({"dataset": {"sets": 0}}, "dataset.sets"),
        ({"dataset": {"split": [14, 4, 1]}}, "dataset.split"),
        ({"dataset": {"split": [14, 4]}}, "dataset.split"),
        ({"dataset": {"dtype": "int8"}}, "dataset.dtype"),
        ({"dataset": {"workers": 0}}, "dataset.workers"),
        ({"dataset": {"scheduler": "localhost"}}, "dataset.scheduler"),
        ({"dataset": {"kernels": "cuda"}}, "dataset.kernels"),
        ({"noise": {"amplitude": [0.5, 0.2]}}, "noise.amplitude"),
        ({"noise": {"psf_sigma": [-0.5, 1.0]}}, "noise.psf_sigma"),
        ({"noise": {"psf_sigma": [2.0, 1.0]}}, "noise.psf_sigma"),
        ({"noise": {"test_levels": []}}, "noise.test_levels"),
        ({"noise": {"test_levels": [0.1, 0.1]}}, "noise.test_levels"),
        ({"ranges": {"anisotropy_step": 0}}, "ranges.anisotropy_step"),
        ({"train": {"lr_schedule": "cosine"}}, "train.lr_schedule"),
        ({"external": {"max_ratio": 0}}, "external.max_ratio"),
        ({"external": {"max_ratio": "low"}}, "external.max_ratio"),
        ({"external": {"set": "x.npz"}}, "external.set"),
        ({"train": {"grid": ["resnet18", "vgg"]}}, "train.grid"),
        ({"train": {"grid": []}}, "train.grid"),
        ({"train": {"out_of_plane_share": 1.0}}, "train.out_of_plane_share"),
        ({"train": {"out_of_plane_share": 0}}, "train.out_of_plane_share"),
        ({"train": {"out_of_plane_share": "half"}}, "train.out_of_plane_share"),
        ({"train": {"preload": "gpu"}}, "train.preload"),
        ({"train": {"preload": True, "fresh_noise": True}}, "train.preload"),
        ({"tune": {"out_of_plane_share": [0.0, 0.5]}}, "tune.out_of_plane_share"),
        ({"tune": {"out_of_plane_share": [0.6, 0.4]}}, "tune.out_of_plane_share"),
        ({"profiles": {"default": {"trian": {}}}}, "profiles.default.trian"),
        ({"spleem": {"psf_shape": "airy"}}, "spleem.psf_shape"),
        ({"spleem": {"psf_width": -0.5}}, "spleem.psf_width"),
        ({"spleem": {"psf_width": "wide"}}, "spleem.psf_width"),
    ],
)
def test_invalid_params_name_the_key(raw, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        params_from_dict(raw)


def test_out_of_plane_share_default_and_paper():
    """Drawn as half of each epoch by default; the paper's recipe shows every texture once."""
    assert load_params(ROOT / "params.yaml").train.out_of_plane_share == 0.5
    assert load_params(ROOT / "params.yaml", ["profile=paper"]).train.out_of_plane_share is None
    assert load_params(ROOT / "params.yaml").tune.out_of_plane_share == (0.2, 0.8)
    assert load_params(ROOT / "params.yaml").train.fresh_noise is False  # stored copies
    assert load_params(ROOT / "params.yaml", ["profile=paper"]).tune.out_of_plane_share is None
    assert (
        params_from_dict({"train": {"out_of_plane_share": None}}).train
        == params_from_dict({}).train
    )


def test_the_default_profile_may_have_an_overlay():
    p = params_from_dict({"profiles": {"default": {"train": {"grid": ["cnn"]}}}})
    assert p.profile == "default" and p.train.grid == ("cnn",)
    assert params_from_dict({"profiles": {"default": {}}}).train == params_from_dict({}).train


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("physics: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_params(bad)


def test_grid_spans_paper_ranges():
    p = params_from_dict({})
    kshape = resolve_kshape_factor(p.physics)
    assert kshape == pytest.approx(6.7752, abs=1e-3)
    grid = parameter_grid(p.ranges, kshape)
    lam, k, d = grid.T
    assert d.min() == pytest.approx(0.05) and d.max() == pytest.approx(0.13)
    assert len(set(d.round(6))) == 17
    ratio = lam / d
    assert ratio.min() == pytest.approx(-3) and ratio.max() == pytest.approx(3)
    assert len(set(ratio.round(6))) == 21
    kr = k / (kshape * d)
    assert kr.min() == pytest.approx(0.1) and kr.max() == pytest.approx(1.2)
    assert len(grid) == 17 * 21 * 56
    sets = draw_sets(grid, 50, seed=1)
    assert len({tuple(r) for r in sets}) == 50
    assert draw_sets(grid, 50, seed=1).tobytes() == sets.tobytes()


def test_literal_paper_kshape_is_selectable():
    p = params_from_dict({"physics": {"kshape_factor": 2.0}})
    assert resolve_kshape_factor(p.physics) == 2.0


@pytest.mark.parametrize(
    ("value", "factor"), [("continuum", 6.283185307179586), ("paper", 2.0), ("6.775", 6.775)]
)
def test_named_kshape_factors_resolve_to_their_numbers(repo_params, value, factor):
    p = load_params(repo_params, [f"physics.kshape_factor={value}"])
    assert p.physics.kshape_factor == pytest.approx(factor)
    assert resolve_kshape_factor(p.physics) == pytest.approx(factor)


def test_unknown_kshape_name_is_refused(repo_params):
    with pytest.raises(ConfigError, match=r"kshape_factor.*continuum"):
        load_params(repo_params, ["physics.kshape_factor=bulk"])
