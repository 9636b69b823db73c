"""The one-GPU-host recipe (`make gpu-wheels`, `make gpu-setup`, `make gpu`) on this CPU host.

A GPU image keeps torch, timm and numba in a Python of its own, often a venv; the wheels go
into a venv over it. These tests use the project's own venv as that host Python.
"""

import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(pins: str) -> set[str]:
    return {_key(line.split("==")[0]) for line in pins.split()}


def _closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots need, extras followed, from the installed metadata."""
    seen, todo = set(), list(roots)
    while todo:
        req = todo.pop()
        if (_key(req.name), frozenset(req.extras)) in seen:
            continue
        seen.add((_key(req.name), frozenset(req.extras)))
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue
        for line in requires:
            dep = Requirement(line)
            wanted = ("", *req.extras)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(dep)
    return {name for name, _ in seen}


@pytest.mark.parametrize("dvc", ["1", "0"])
def test_gpu_pins_are_what_spinfer_needs_to_run_less_the_host_torch_stack(dvc):
    """Nothing only the tests use, nothing only torch, timm and numba need, nothing missing;
    with GPU_DVC=0 nothing only DVC needs either (the stages then run without it)."""
    runtime = [Requirement(r) for r in distribution("spinfer").requires]
    runtime = [r for r in runtime if r.marker is None or r.marker.evaluate({"extra": ""})]
    left_out = {"torch", "torchvision", "timm", "numba"} | ({"dvc"} if dvc == "0" else set())
    needed = _closure([r for r in runtime if _key(r.name) not in left_out]) - {"numpy"}
    lock = (ROOT / "requirements.lock").read_text().split()
    pins = _make("gpu-pins", f"GPU_DVC={dvc}")
    assert pins.returncode == 0, pins.stderr
    assert _names(pins.stdout) == {_key(p.split("==")[0]) for p in lock if "==" in p} & needed
    assert ("dvc" in _names(pins.stdout)) == (dvc == "1")


def test_gpu_pins_leave_out_the_host_stack_and_what_the_host_lists(tmp_path):
    every = _make("gpu-pins")
    assert every.returncode == 0, every.stderr
    names = _names(every.stdout)
    assert {"mlflow", "dvc", "zarr", "optuna", "pandas", "scikit-learn"} <= names
    assert not names & {"torch", "torchvision", "timm", "numba", "numpy", "pytest", "spirit"}
    assert all("==" in line for line in every.stdout.split())

    host = tmp_path / "host.txt"  # `pip list --format=freeze`, names spelt as hosts spell them
    host.write_text("pandas==2.2.3\nPyArrow==19.0.1\nscikit_learn\nmlflow-skinny @ file:///w\n")
    fewer = _make("gpu-pins", f"GPU_HOST_PACKAGES={host}")
    assert fewer.returncode == 0, fewer.stderr
    left = _names(fewer.stdout)
    assert left == names - {"pandas", "pyarrow", "scikit-learn", "mlflow-skinny"}
    assert "mlflow" in left

    missing = _make("gpu-pins", f"GPU_HOST_PACKAGES={tmp_path / 'absent.txt'}")
    assert missing.returncode != 0
    assert "error: GPU_HOST_PACKAGES: no file" in missing.stderr


def _tiny_wheel(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "src" / "tinywheel").mkdir(parents=True)
    (pkg / "src" / "tinywheel" / "__init__.py").write_text("ORIGIN = 'wheel'\n")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinywheel"\nversion = "1.0"\n'
    )
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "--no-index", "--wheel-dir", str(wheels), str(pkg)],
        check=True,
        capture_output=True,
    )
    return wheels


def test_gpu_setup_puts_the_wheels_over_a_host_python_that_is_itself_a_venv(tmp_path):
    """The venv sees the host venv's torch stack, its own wheels and spinfer's source."""
    assert sys.prefix != sys.base_prefix, "the tests run in the project's venv"
    venv = tmp_path / "gpu-venv"
    empty = tmp_path / "empty"
    empty.mkdir()
    none = _make("gpu-setup", f"WHEELS={empty}", f"GPU_VENV={venv}")
    assert none.returncode != 0 and "error: no wheels in" in none.stderr

    wheels = _tiny_wheel(tmp_path)
    args = [f"WHEELS={wheels}", f"GPU_PYTHON={sys.executable}", f"GPU_VENV={venv}"]
    setup = _make("gpu-setup", *args)
    assert setup.returncode == 0, setup.stderr
    show = (
        "import tinywheel, torch, timm, numba, spinfer; "
        "print(tinywheel.__file__, torch.__file__, spinfer.__file__, sep='\\n')"
    )
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", show], capture_output=True, text=True, check=True
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv)  # the wheels, in the venv
    assert Path(where[1]).is_relative_to(sys.prefix)  # torch, from the host's venv
    assert Path(where[2]).is_relative_to(ROOT / "src")  # spinfer, editable
    assert (venv / "bin" / "spinfer").exists()

    import torch

    if not torch.cuda.is_available():
        params = (ROOT / "params.yaml").read_text()
        gpu = _make("gpu", *args)
        assert gpu.returncode != 0
        assert "error: torch sees no CUDA device" in gpu.stderr
        assert (ROOT / "params.yaml").read_text() == params


def test_gpu_setup_names_what_the_host_python_lacks(tmp_path):
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    bare = Path(sys.base_prefix) / "bin" / version  # the venv's base interpreter, not a PATH hit
    if not bare.exists():
        pytest.skip(f"no {bare}")
    if subprocess.run([bare, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("the base Python has torch")
    wheels = _tiny_wheel(tmp_path)
    lacking = _make(
        "gpu-setup", f"WHEELS={wheels}", f"GPU_PYTHON={bare}", f"GPU_VENV={tmp_path / 'v'}"
    )
    assert lacking.returncode != 0
    error = lacking.stderr.strip().splitlines()[0]
    assert error.startswith("error: ") and "has no" in error and "torch" in error
