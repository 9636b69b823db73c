"""validation/scale_check.py end to end on a tiny lattice (CPU): generation, the three
layouts, the JSON and the figure (the committed numbers come from a GPU host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT


def test_scale_check_runs_every_layout_and_plots(tmp_path):
    script = str(ROOT / "validation" / "scale_check.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run(
        [sys.executable, script, "--size", "12", "--sets", "4", "--replicas", "20",
         "--steps", "3", "--gen-seconds", "120", "--workers", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    last = run.stdout.strip().splitlines()[-1].split()
    assert all("=" in pair for pair in last) and "held_out_held_out_D=" in " ".join(last)
    result = json.loads((tmp_path / "scale_check.json").read_text())
    assert result["sets"] == 4 and result["replicas"] == 20
    runs = result["runs"]
    assert set(runs) == {"paper", "held_out", "default"}
    assert runs["paper"]["train"] == 4 * 14 and runs["default"]["train"] == 4 * 3
    assert runs["held_out"]["train"] == 3 * 14  # a quarter of the sets never trained on
    for key in ("paper/test", "held_out/held_out", "held_out/seen", "default/test"):
        layout, test = key.split("/")
        for ts in ("0.0", "0.5", "1.0"):
            ratios = runs[layout][f"{test}/ts{ts}"]
            assert len(ratios) == 3 and all(np.isfinite(ratios)), (key, ts)
    plot = subprocess.run(
        [sys.executable, script, "--plot", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr
    assert "bars=4" in plot.stdout  # no training.json here: the four scale-check bars
    assert (tmp_path / "scale_check.png").stat().st_size > 0


def test_scale_check_refuses_too_few_replicas_for_a_layout(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "validation" / "scale_check.py"), "--replicas", "5",
         "--runs", "paper", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert run.returncode == 2 and "needs --replicas >= 20" in run.stderr
