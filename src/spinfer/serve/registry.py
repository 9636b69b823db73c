"""Register the best run, promote it by alias only when it really is better, roll back.

Rule (``RULE``): the best run is the training run with the lowest ``mae_mean``, the test
MAE averaged over every noise level Ts and over lambda, K and D (normalized units), among
the runs evaluated on the current dataset (their ``dataset.noisy`` tag equals the hash of
``noise.out`` in dvc.lock). ``register`` makes it a version of the registered model (once
per run) and points the alias ``challenger`` at it. ``promote`` scores challenger and
champion in clean processes (the model's own code path, not the source tree, importing only
the packages the model declares) on the same
held-out test set by the same metric and moves ``champion`` only when the challenger is
strictly better; the replaced champion becomes ``previous``. Decisions are tags on the
version. Aliases only; registry stages are not used.

Guard (``external_refusal``): a run whose MAE on the external test set (textures another
simulator made, ``spinfer train external``) reaches ``external.max_ratio`` of predicting the
range centre, for lambda, K or D, is never registered as challenger nor promoted.

Every run also logs the compact variant of its model (one row of float32 bytes per
image, spinfer.serve.pyfunc.SpinferCompactModel); it is registered as ``<name>-compact``
and its aliases follow the tensor model's (same run), so ``models:/<name>-compact@champion``
is always the same estimator as ``models:/<name>@champion``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spinfer.config import Params
from spinfer.errors import InputError, SpinferError

RULE = (
    "lowest mae_mean (test MAE averaged over every Ts and over lambda, K, D; normalized units) "
    "among training runs evaluated on the current dataset whose external-set MAE is below "
    "external.max_ratio of the range centre's for lambda, K and D"
)
CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous"


def compact_name(name: str) -> str:
    """The registered name of the compact variant of registered model ``name``."""
    return f"{name}-compact"


def _client(params: Params, root: Path):
    import mlflow

    from spinfer.tracking import setup_tracking, store_uri

    setup_tracking(params, root)
    return mlflow.MlflowClient(tracking_uri=store_uri(params, root))


def best_run(params: Params, root: Path):
    """The run the rule picks (see module docstring)."""
    from spinfer.tracking import dataset_hash

    client = _client(params, root)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    if experiment is None:
        raise InputError(f"no MLflow experiment '{params.tracking.experiment}' (train first)")
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.kind = 'training' and metrics.mae_mean >= 0",
        order_by=["metrics.mae_mean ASC"],
    )
    current = dataset_hash(root, params.noise.out)
    if current != "unknown":
        runs = [r for r in runs if r.data.tags.get("dataset.noisy") == current]
    if not runs:
        raise InputError("no evaluated training run on the current dataset (train first)")
    refusals = [(r, external_refusal(params, r.data.metrics)) for r in runs]
    passing = [r for r, why in refusals if why is None]
    if not passing:
        run, why = refusals[0]
        raise NoEligibleRun(
            f"no run may be champion: the best, {run.info.run_name}, {why}; so are all "
            f"{len(runs)} runs (external.max_ratio sets the limit)"
        )
    return passing[0]


def external_refusal(params: Params, metrics: dict[str, float]) -> str | None:
    """Why a run's external-set metrics bar it from being champion, or None when they do
    not: its MAE reaches ``external.max_ratio`` of predicting the range centre for a
    coupling, or it was never evaluated on the external set (``spinfer train external``)."""
    limit = params.external.max_ratio
    if limit is None or params.external.data is None:
        return None
    worse = []
    for name in ("lambda", "K", "D"):
        ratio = metrics.get(f"external_mae_over_centre_{name}")
        if ratio is None:
            return "has no external-set metrics (run `spinfer train external` on it)"
        if not ratio < limit:
            worse.append(f"{name} {ratio:.2f}")
    if worse:
        return (
            "is no better than the range centre on the external set "
            f"(MAE over the centre's: {', '.join(worse)}; limit {limit:g})"
        )
    return None


class NoEligibleRun(InputError):
    """Every evaluated run is barred by the external-set guard."""


@dataclass(frozen=True)
class Registration:
    name: str
    version: str | None
    run_name: str | None
    run_id: str | None
    mae_mean: float | None
    created: bool
    compact_version: str | None = None
    refused: str | None = None  # why no run became challenger (the external-set guard)


def register(params: Params, root: Path | str = ".") -> Registration:
    """Register the best run (once) and give it the alias ``challenger``. When the
    external-set guard bars every run, that is a decision, not a failure: no run is
    challenger (an older challenger loses the alias) and ``refused`` says why."""
    from mlflow.exceptions import MlflowException

    root = Path(root)
    client = _client(params, root)
    name = params.tracking.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"spinfer estimator. Best run: {RULE}.")
    try:
        run = best_run(params, root)
    except NoEligibleRun as exc:
        for model in (name, compact_name(name)):
            with contextlib.suppress(MlflowException):
                client.delete_registered_model_alias(model, CHALLENGER)
        return Registration(name, None, None, None, None, False, refused=str(exc))
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
    created = not existing
    if existing:
        version = max(existing, key=lambda v: int(v.version))
    else:
        version = _register(client, _logged_model(client, run.info.run_id, "model"), name)
    tags = {
        "run_name": run.info.run_name,
        "architecture": run.data.tags.get("architecture", ""),
        "training_data": run.data.tags.get("training_data", ""),
        "mae_mean": f"{run.data.metrics['mae_mean']:.6g}",
        "dataset": run.data.tags.get("dataset.noisy", ""),
        "git_commit": run.data.tags.get("git_commit", ""),
        "rule": RULE,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    compact = _follow(client, name, CHALLENGER, str(version.version))
    if compact is not None:
        for key, value in tags.items():
            client.set_model_version_tag(compact_name(name), compact, key, value)
    return Registration(
        name, str(version.version), run.info.run_name, run.info.run_id,
        float(run.data.metrics["mae_mean"]), created, compact,
    )  # fmt: skip


def _compact_version(client, name: str, run_id: str) -> str | None:
    """The ``<name>-compact`` version of ``run_id``, registered on first use; None when
    the run logged no compact model."""
    from mlflow.exceptions import MlflowException

    from spinfer.serve.pyfunc import COMPACT_ARTIFACT

    sibling = compact_name(name)
    existing = client.search_model_versions(f"name = '{sibling}' and run_id = '{run_id}'")
    if existing:
        return str(max(int(v.version) for v in existing))
    model = _logged_model(client, run_id, COMPACT_ARTIFACT)
    if model is None:
        return None
    try:
        client.get_registered_model(sibling)
    except MlflowException:
        client.create_registered_model(
            sibling, description=f"compact-input variant of '{name}' (same runs and aliases)"
        )
    return str(_register(client, model, sibling).version)


def _logged_model(client, run_id: str, artifact: str):
    """The MLflow 3 logged model ``artifact`` of a run (its models:/ id), or None."""
    models = client.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' and name = '{artifact}'",
    )
    return models[0] if models else None


def _register(client, model, name: str):
    """A new version of ``name`` from a logged model, registered by its own URI (a run's
    artifact path would make MLflow look for files the run does not hold, and warn)."""
    import mlflow

    if model is None:
        raise InputError(f"the run has no logged model to register as '{name}'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's notes on registering from a logged model
        return mlflow.register_model(f"models:/{model.model_id}", name)


def _follow(client, name: str, alias: str, version: str) -> str | None:
    """Point ``alias`` of ``<name>-compact`` at the version from the same run as
    ``name``'s ``version`` and return it; drop the alias when that run has no compact
    model (logged before the variant existed), so the two names never serve different
    estimators."""
    from mlflow.exceptions import MlflowException

    run_id = client.get_model_version(name, version).run_id
    target = _compact_version(client, name, run_id)
    sibling = compact_name(name)
    if target is not None:
        client.set_registered_model_alias(sibling, alias, target)
    else:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model_alias(sibling, alias)
    return target


def _set_alias(client, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)
    _follow(client, name, alias, version)


_SCORE = r"""
import importlib.abc, importlib.machinery, importlib.metadata as md, json, re, sys
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("/src")]
import mlflow, numpy as np
from packaging.requirements import Requirement
mlflow.set_tracking_uri(sys.argv[1])

def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def closure(names):  # the declared distributions and everything they require
    seen, todo = set(), [canon(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canon(req.name))
    return seen

declared = [Requirement(line).name for line in
            open(mlflow.pyfunc.get_model_dependencies(sys.argv[2])).read().splitlines()
            if line.strip() and not line.startswith(("#", "-"))]
allowed, owners = closure(declared), md.packages_distributions()

class Missing(importlib.abc.Loader):  # importing it fails as if it were not installed
    def __init__(self, message):
        self.message = message
    def create_module(self, spec):
        raise ModuleNotFoundError(self.message, name=spec.name)
    def exec_module(self, module):
        pass

class Undeclared(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = owners.get(top)
        if top == "spinfer" or not dists or any(canon(d) in allowed for d in dists):
            return None
        message = (f"undeclared import: {top} (package {dists[0]}; declared: "
                   f"{', '.join(declared)})")
        return importlib.machinery.ModuleSpec(name, Missing(message), origin=None)

guard = Undeclared()
sys.meta_path.insert(0, guard)  # loading and predicting may import declared packages only
model = mlflow.pyfunc.load_model(sys.argv[2])
model.predict(model.input_example)
sys.meta_path.remove(guard)
from spinfer.data.dataset import noise_levels, open_dataset
from tqdm import tqdm
test_noise, textures, splits = sys.argv[3], sys.argv[4], sys.argv[5]
maes = []
levels = tqdm(noise_levels(test_noise), desc=sys.argv[6], unit="Ts", file=sys.stderr,
              disable=sys.argv[7] != "1")
for level in levels:
    ds = open_dataset("test", level, textures, splits=splits, test_noise=test_noise)
    spins = np.stack([ds.spins(i) for i in range(len(ds))]).astype(np.float32)
    out = model.predict(spins)
    pred = ds.scaler.normalize(out[["lambda", "K", "D"]].to_numpy())
    maes.append(np.abs(pred - ds.scaler.normalize(ds.params)).mean(axis=0).tolist())
import spinfer
print(json.dumps({"mae_mean": float(np.mean(maes)), "per_level": maes,
                  "code": spinfer.__file__}))
"""


def score_in_clean_process(
    params: Params, root: Path, model_uri: str, progress: bool = False
) -> dict[str, Any]:
    """Load ``model_uri`` in a fresh interpreter without the source tree and score it on
    the current test set (all Ts; a progress bar on stderr with ``progress``); raises
    SpinferError with the reason when it fails.

    Loading it and predicting its input example may import only the packages the model
    declares (its requirements.txt) and what they require: an undeclared import fails
    here, as it would in the fresh environment ``mlflow models serve`` builds."""
    from spinfer.tracking import store_uri

    art = root / "artifacts"
    cmd = [
        sys.executable, "-c", _SCORE, store_uri(params, root), model_uri,
        str(root / params.noise.test_out), str(root / params.dataset.out),
        str(art / "splits.json"), f"score {model_uri}", "1" if progress else "0",
    ]  # fmt: skip
    code, out, err = _run_relaying_stderr(cmd, art.parent, 900, progress)
    if code != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise SpinferError(f"{model_uri} does not load and predict: {lines[-1] if lines else ''}")
    return json.loads(out.strip().splitlines()[-1])


def _run_relaying_stderr(cmd: list[str], cwd: Path, timeout: float, relay: bool):
    """(exit code, stdout, stderr) of ``cmd``; with ``relay`` its stderr (a progress bar)
    also reaches ours as it comes."""
    import tempfile
    import threading

    tail = bytearray()

    def pump(stream) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            if relay:
                sys.stderr.write(chunk.decode(errors="replace"))
                sys.stderr.flush()
            tail.extend(chunk)
            del tail[:-65536]

    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
        reader = threading.Thread(target=pump, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SpinferError(f"scoring took longer than {timeout:.0f} s; stopped") from None
        finally:
            reader.join(timeout=10)
        out.seek(0)
        return proc.returncode, out.read().decode(), tail.decode(errors="replace")


@dataclass(frozen=True)
class Decision:
    decision: str  # promoted | kept | unchanged
    reason: str
    challenger: str | None
    champion_before: str | None
    champion_after: str | None
    challenger_mae: float | None
    champion_mae: float | None


def _alias(client, name: str, alias: str) -> str | None:
    """The version (as a string) that carries ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(params: Params, root: Path | str = ".", progress: bool = False) -> Decision:
    """Move ``champion`` to the challenger only when it loads, predicts and is better
    (scored in a clean process each, with a progress bar on stderr with ``progress``)."""
    root = Path(root)
    client = _client(params, root)
    name = params.tracking.registered_model
    challenger = _alias(client, name, CHALLENGER)
    champion = _alias(client, name, CHAMPION)
    if challenger is None:
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
        except MlflowException:
            raise InputError(
                f"'{name}' has no version with the alias '{CHALLENGER}' "
                "(run `spinfer registry register`)"
            ) from None
        return Decision(
            "unchanged", f"'{name}' has no challenger (register refused every run, or has not "
            "run)", None, champion, champion, None, None,
        )  # fmt: skip
    if champion is not None and champion == challenger:
        # a store registered before the compact variant existed gets its aliases now
        _follow(client, name, CHAMPION, champion)
        previous = _alias(client, name, PREVIOUS)
        if previous is not None:
            _follow(client, name, PREVIOUS, previous)
        return Decision(
            "unchanged", f"version {challenger} is already the champion",
            challenger, champion, champion, None, None,
        )  # fmt: skip
    version = client.get_model_version(name, challenger)
    refusal = external_refusal(params, client.get_run(version.run_id).data.metrics)
    if refusal is not None:
        decision = Decision(
            "kept", f"version {challenger} {refusal}", challenger,
            champion, champion, None, None,
        )  # fmt: skip
        _record(client, name, challenger, decision, params, root)
        return decision
    try:
        mine = score_in_clean_process(params, root, f"models:/{name}/{challenger}", progress)
    except SpinferError as exc:
        decision = Decision(
            "kept", str(exc), challenger,
            champion, champion,
            None, None,
        )  # fmt: skip
        _record(client, name, challenger, decision, params, root)
        return decision
    theirs = None
    if champion is not None:
        try:
            theirs = score_in_clean_process(params, root, f"models:/{name}/{champion}", progress)
        except SpinferError:
            theirs = None  # a champion that no longer loads is replaced
    better = theirs is None or mine["mae_mean"] < theirs["mae_mean"]
    if better:
        if champion is not None:
            _set_alias(client, name, PREVIOUS, champion)
        _set_alias(client, name, CHAMPION, challenger)
        reason = (
            f"version {challenger} is the first champion (test MAE {mine['mae_mean']:.5f})"
            if champion is None
            else f"test MAE {mine['mae_mean']:.5f} < champion's "
            + (f"{theirs['mae_mean']:.5f}" if theirs else "(champion failed to load)")
        )
    else:
        reason = (
            f"test MAE {mine['mae_mean']:.5f} does not beat champion's {theirs['mae_mean']:.5f}"
        )
    decision = Decision(
        "promoted" if better else "kept", reason, challenger,
        champion,
        challenger if better else champion,
        mine["mae_mean"], theirs["mae_mean"] if theirs else None,
    )  # fmt: skip
    _record(client, name, challenger, decision, params, root)
    return decision


def _record(client, name: str, version: str, decision: Decision, params, root) -> None:
    from spinfer.data.store import git_commit
    from spinfer.tracking import dataset_hash

    tags = {
        "promotion.decision": decision.decision,
        "promotion.reason": decision.reason,
        "promotion.challenger_mae": f"{decision.challenger_mae}",
        "promotion.champion_mae": f"{decision.champion_mae}",
        "promotion.dataset": dataset_hash(root, params.noise.out),
        "promotion.git_commit": git_commit(root),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def rollback(params: Params, root: Path | str = ".") -> Decision:
    """Swap ``champion`` and ``previous``."""
    root = Path(root)
    client = _client(params, root)
    name = params.tracking.registered_model
    previous, champion = _alias(client, name, PREVIOUS), _alias(client, name, CHAMPION)
    if previous is None:
        raise InputError(f"'{name}' has no version with the alias '{PREVIOUS}' to roll back to")
    _set_alias(client, name, CHAMPION, previous)
    if champion is not None:
        _set_alias(client, name, PREVIOUS, champion)
    return Decision(
        "rolled back", f"champion is version {previous} again", None,
        champion, previous, None, None,
    )  # fmt: skip


def decision_doc(decision: Decision) -> dict[str, Any]:
    return asdict(decision)


def champion_state(params: Params, root: Path | str = ".") -> dict[str, Any]:
    """Who is champion now, from the version's tags: the same in every clone that ran
    the same pipeline, whatever the history of decisions (for DVC)."""
    root = Path(root)
    client = _client(params, root)
    name = params.tracking.registered_model
    version = _alias(client, name, CHAMPION)
    if version is None:
        return {"champion_run": None, "champion_mae_mean": None}
    tags = client.get_model_version(name, version).tags
    return {
        "champion_run": tags.get("run_name"),
        "champion_mae_mean": float(tags["mae_mean"]) if "mae_mean" in tags else None,
        "rule": tags.get("rule"),
    }
