"""The fault lab: a scratch project on the tiny profile, with data, a champion and a server
made on demand, and the ``Outcome`` every scenario returns."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spinfer.faults.process import start_server, stop, venv_env

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


@dataclass(frozen=True)
class Outcome:
    scenario: str
    expected: str
    observed: str
    passed: bool
    lost_data: bool = False


@dataclass
class Lab:
    """A scratch project on the tiny profile; data, model and server made on demand."""

    root: Path
    params_path: Path = field(init=False)
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _server: int | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        raw = yaml.safe_load(REPO_PARAMS.read_text())
        raw["profile"] = "tiny"
        self.params_path = self.root / "params.yaml"
        self.params_path.write_text(yaml.safe_dump(raw))

    # -- helpers -----------------------------------------------------------------------
    def params(self, *overrides: str):
        from spinfer.config import load_params

        return load_params(self.params_path, overrides)

    def cli(self, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "spinfer.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            cwd=self.root,
            **kw,
        )

    @property
    def store(self) -> str:
        """The lab's own tracking store: never the one MLFLOW_TRACKING_URI names outside,
        so that injected faults cannot touch a real project's runs."""
        from spinfer.tracking import resolve_uri

        return resolve_uri(self.params().tracking.uri, self.root)

    def env(self) -> dict[str, str]:
        return venv_env(PYTHONWARNINGS="ignore", MLFLOW_TRACKING_URI=self.store)

    def spawn(self, args: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            args,
            env=self.env(),
            cwd=self.root,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **kw,
        )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            stop(proc, timeout=10)
        self._procs.clear()

    @property
    def art(self) -> Path:
        return self.root / "artifacts"

    def data(self) -> dict[str, Path]:
        """Texture store, splits and noisy stores (made once)."""
        paths = {
            "textures": self.art / "textures.zarr",
            "splits": self.art / "splits.json",
            "noisy": self.art / "noisy.zarr",
            "test_noise": self.art / "test_noise.zarr",
        }
        if not paths["test_noise"].exists():
            from spinfer.data.generate import generate
            from spinfer.data.noise import make_noisy
            from spinfer.data.split import make_splits

            params = self.params()
            generate(params, paths["textures"], workers=1, progress=False)
            make_splits(paths["textures"], params.dataset.split, params.base.seed, paths["splits"])
            make_noisy(params, paths["textures"], paths["splits"], paths["noisy"], progress=False)
            make_noisy(
                params, paths["textures"], paths["splits"], paths["test_noise"], False, part="test"
            )
        return paths

    def champion(self) -> None:
        """A trained, evaluated, registered and promoted cnn (made once)."""
        from spinfer.serve.publish import publish_run
        from spinfer.serve.registry import champion_state, promote, register
        from spinfer.train.evaluate import evaluate_and_log
        from spinfer.train.loop import train_run

        self.data()
        params = self.params()
        with contextlib.suppress(Exception):
            if champion_state(params, self.root)["champion_run"]:
                return
        result = train_run(params, "cnn", "noisy", self.root, progress=False)
        publish_run(params, "cnn", "noisy", self.root, result.run_id)
        evaluate_and_log(params, "cnn", "noisy", self.root, result.run_id)
        register(params, self.root)
        promote(params, self.root)

    def server(self) -> int:
        """Port of a running ``mlflow models serve`` of the champion (started once)."""
        if self._server is not None:
            return self._server
        self.champion()
        proc, port = start_server("models:/spinfer@champion", self.env())
        self._procs.append(proc)
        self._server = port
        return port
