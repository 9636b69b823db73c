"""The spinfer command as a user runs it: real subprocesses, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, ROOT


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "spinfer.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ref_files(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("ref")
    cases = json.loads((DATA / "energies.json").read_text())["cases"]
    case = next(c for c in cases if c["name"] == "random_1")
    spins = np.load(DATA / "spins.npz")[case["name"]]
    np.save(tmp / "random_1.npy", spins)
    np.savez(tmp / "random_1.npz", spins=spins)
    return tmp, case


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_energy_json_contract(ref_files, suffix):
    tmp, case = ref_files
    proc = run(
        "physics",
        "energy",
        str(tmp / f"random_1{suffix}"),
        "--lam",
        repr(case["lam"]),
        "--K",
        repr(case["K"]),
        "--D",
        repr(case["D"]),
        "--images",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == ["exchange", "dmi", "dipolar", "anisotropy", "total"]
    ref = case["energy_images_M4"]
    for key, ref_key in [
        ("exchange", "Exchange"),
        ("dmi", "DMI"),
        ("dipolar", "DDI"),
        ("anisotropy", "Anisotropy"),
        ("total", "Total"),
    ]:
        assert out[key] == pytest.approx(ref[ref_key], rel=1e-8)


def _one_error_line(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_energy_bad_inputs(tmp_path, ref_files):
    tmp, _ = ref_files
    good = str(tmp / "random_1.npy")
    (tmp_path / "text.npy").write_text("not an array")
    np.save(tmp_path / "wrong.npy", np.zeros((8, 8, 2)))
    np.save(tmp_path / "small.npy", np.zeros((3, 3, 3)))
    np.save(tmp_path / "nan.npy", np.full((8, 8, 3), np.nan))
    np.savez(tmp_path / "two.npz", a=np.zeros((8, 8, 3)), b=np.zeros((8, 8, 3)))
    args = ["--lam", "0.1", "--K", "0.2", "--D", "0.1"]
    _one_error_line(
        run("physics", "energy", str(tmp_path / "missing.npy"), *args), 1, "no such file"
    )
    _one_error_line(run("physics", "energy", str(tmp_path / "text.npy"), *args), 1, "not a NumPy")
    _one_error_line(run("physics", "energy", str(tmp_path / "wrong.npy"), *args), 1, "shape")
    _one_error_line(run("physics", "energy", str(tmp_path / "small.npy"), *args), 1, "4x4")
    _one_error_line(run("physics", "energy", str(tmp_path / "nan.npy"), *args), 1, "NaN")
    _one_error_line(run("physics", "energy", str(tmp_path / "two.npz"), *args), 1, "spins")
    _one_error_line(
        run("physics", "energy", good, "--lam", "nan", "--K", "0.2", "--D", "0.1"), 1, "finite"
    )
    _one_error_line(
        run("physics", "energy", good, "--lam", "0.1", "--K", "0.2", "--D", "-1"), 1, "dipolar"
    )
    _one_error_line(
        run("physics", "energy", good, "--lam", "abc", "--K", "0.2", "--D", "0.1"), 2, "--lam"
    )
    _one_error_line(run("physics", "energy", good, *args, "--images", "-1"), 1, "images")


def test_simulate_then_show_then_energy(tmp_path):
    out = tmp_path / "t.npz"
    again = tmp_path / "again.npz"
    args = ["simulate", "--lam", "0.2", "--K", "0.8", "--D", "0.1", "--seed", "3"]
    args += ["--size", "16", "--sweeps", "60", "--out"]
    proc = run(*args, str(out))
    assert proc.returncode == 0, proc.stderr
    assert run(*args, str(again)).returncode == 0
    a, b = np.load(out)["spins"], np.load(again)["spins"]
    assert a.shape == (16, 16, 3) and a.tobytes() == b.tobytes()
    meta = json.loads(str(np.load(out)["meta"]))
    assert meta["seed"] == 3 and meta["schedule"]["sweeps"] == 60
    shown = run("physics", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    energy = run(
        "physics", "energy", str(out), "--lam", "0.2", "--K", "0.8", "--D", "0.1", "--json"
    )
    assert json.loads(energy.stdout)["total"] == pytest.approx(meta["energy"]["total"])


def test_simulate_png_and_bad_arguments(tmp_path):
    png = tmp_path / "t.png"
    ok = run(
        "physics",
        "simulate",
        "--lam",
        "0",
        "--K",
        "0.8",
        "--D",
        "0.1",
        "--size",
        "8",
        "--sweeps",
        "10",
        "--out",
        str(png),
    )
    assert ok.returncode == 0 and png.exists(), ok.stderr
    base = ["simulate", "--lam", "0", "--K", "0.8", "--D", "0.1"]
    _one_error_line(run(*base, "--size", "3", "--out", str(png)), 1, "4x4")
    _one_error_line(run(*base, "--out", str(tmp_path / "t.txt")), 1, ".npz or .png")
    _one_error_line(run(*base, "--sweeps", "0", "--out", str(png)), 1, "sweeps")
    _one_error_line(run(*base[:-2], "--D", "inf", "--out", str(png)), 1, "finite")


def test_unknown_command_and_missing_option_exit_2():
    _one_error_line(run("nope"), 2, "nope")
    _one_error_line(run("physics", "energy", "x.npy", "--lam", "0"), 2, "--K")


def test_version_and_bare_command():
    import spinfer

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"spinfer {spinfer.__version__}"
    bare = run()
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr


def test_kshape_command():
    proc = run("physics", "kshape", "--size", "16")
    assert proc.returncode == 0
    assert float(proc.stdout) == pytest.approx(6.7752, abs=1e-3)


def test_verify_ok_then_one_line_error_for_a_flipped_byte(tmp_path, tiny_data):
    import shutil

    store = tmp_path / "textures.zarr"
    shutil.copytree(tiny_data["textures"], store)
    ok = run("data", "verify", str(store))
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr
    victim = next(p for p in (store / "spins" / "c").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x20
    victim.write_bytes(bytes(data))
    bad = run("data", "verify", str(store))
    assert bad.returncode == 1
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "checksum mismatch" in last
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["data", "verify", "/no/such/store.zarr"], "no Zarr store"),
        (["data", "generate", "--set", "dataset.sets=0"], "dataset.sets"),
        (["data", "generate", "--set", "ranges.dipolar=[0.2, 0.1]"], "inverted range"),
        (["data", "generate", "--set", "profile=nope"], "unknown profile"),
        (["data", "generate", "--scheduler", "nonsense"], "--scheduler"),
        (["data", "split", "--textures", "/no/such.zarr"], "no Zarr store"),
        (["data", "noise", "--textures", "/no/such.zarr"], "no Zarr store"),
        (["data", "report", "--textures", "/no/such.zarr"], "no Zarr store"),
    ],
)
def test_dataset_commands_fail_with_one_line(args, needle, tmp_path):
    result = (
        run(*args, "--params", str(ROOT / "params.yaml")) if args[1] != "verify" else run(*args)
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error:") and needle in result.stderr


def test_commands_live_in_part_groups_and_the_flat_names_stay_as_hidden_aliases():
    from spinfer.cli import ALIASES, app

    def listed(*args: str) -> set[str]:
        """Command names in a help screen's command table."""
        return set(re.findall(r"^│ ([a-z]+) ", run(*args, "--help").stdout, re.MULTILINE))

    top = listed()
    assert {"physics", "data", "train", "registry", "spleem", "doctor", "predict"} <= top
    assert not top & set(ALIASES)  # the flat names are hidden
    for name, function in ALIASES.items():
        assert name in listed(function.__module__.rsplit(".", 1)[-1]), name
    commands = {c.name: c.callback for c in app.registered_commands}
    assert all(commands[name] is function for name, function in ALIASES.items())
    assert run("kshape", "--size", "16").stdout == run("physics", "kshape", "--size", "16").stdout


def test_doctor_config_writes_the_resolved_config_or_fails_in_one_line(tmp_path):
    """The pipeline's config stage: the active profile applied, or the config error."""
    import yaml

    from spinfer.config import SECTIONS, load_params

    out = tmp_path / "config.yaml"
    ok = run("doctor", "config", "--set", "profile=tiny", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(out.read_text())
    tiny = load_params(ROOT / "params.yaml", ["profile=tiny"])
    assert resolved["profile"] == "tiny" and set(SECTIONS) <= set(resolved)
    assert resolved["dataset"]["sets"] == tiny.dataset.sets  # the overlay, not the base
    for args, needle in [
        (["--set", "profile=nope"], "unknown profile 'nope'"),
        (["--set", "train.nope=1"], "unknown key 'train.nope'"),
    ]:
        bad = run("doctor", "config", *args, "--out", str(tmp_path / "bad.yaml"))
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 1 and len(lines) == 1 and needle in lines[0], bad.stderr
        assert not (tmp_path / "bad.yaml").exists()


def test_the_config_stage_tracks_every_section_and_only_the_active_profile():
    import yaml

    from spinfer.config import SECTIONS

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["config"]
    assert set(stage["params"]) == {"profile", "profiles.${profile}", *SECTIONS}
