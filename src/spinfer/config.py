"""One typed configuration, loaded from ``params.yaml`` and validated on load.

Layout of ``params.yaml``::

    profile: default          # which overlay to apply (default = none)
    base: {...}               # one section per concern, the values ``make run`` uses
    physics: {...}
    schedule: {...}
    ranges: {...}
    preview: {...}
    dataset: {...}            # generation size, split, storage, Dask
    noise: {...}
    profiles:                 # named overlays; only the keys they change
      tiny: {physics: {size: 16}, ...}
      paper: {...}

Selecting a profile is one line (``profile: paper``, or ``dvc exp run -S profile=paper``);
any value can be overridden in its section, in the profile, or with ``--set
section.key=value`` on the command line (applied last; ``--set profile=NAME`` picks a
profile). Unknown keys and wrong types are
rejected by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spinfer.errors import ConfigError, SpinferError
from spinfer.physics.anneal import Schedule


@dataclass(frozen=True)
class BaseParams:
    """Project-wide settings."""

    seed: int = 2020
    artifacts: str = "artifacts"


#: Named values of ``physics.kshape_factor`` (Kshape / D), beside a number or null (computed)
KSHAPE_NAMES = {"continuum": 2.0 * math.pi, "paper": 2.0}


@dataclass(frozen=True)
class PhysicsParams:
    """Lattice and dipolar kernel.

    ``kshape_factor``: Kshape = kshape_factor * D sets the anisotropy scale of the K range.
    ``null`` (default) computes it from the dipolar kernel, E_dip(+z) - E_dip(+x) per spin
    in units of D (6.775 for the periodic square lattice), which is where the out-of-plane
    / in-plane boundary really lies; ``continuum`` (2 pi = 6.283) is the thin film's
    continuum shape anisotropy mu0 Ms^2 / 2 per site volume in these dipolar units; 2.0
    (or ``paper``) reproduces the paper's text "Kshape = 2D" literally (``KSHAPE_NAMES``).
    """

    size: int = 100
    dipolar_images: int | None = None
    kshape_factor: float | None = None


@dataclass(frozen=True)
class RangeParams:
    """Parameter ranges as in Kwon et al.: D absolute, lambda in units of D, K of Kshape."""

    dipolar: tuple[float, float] = (0.05, 0.13)
    dipolar_step: float = 0.005
    dmi_over_dipolar: tuple[float, float] = (-3.0, 3.0)
    dmi_step: float = 0.3
    anisotropy_over_kshape: tuple[float, float] = (0.1, 1.2)
    anisotropy_step: float = 0.02


@dataclass(frozen=True)
class PreviewParams:
    """The handful of textures the main job renders across the ranges."""

    textures: int = 8
    cols: int = 4


@dataclass(frozen=True)
class DatasetParams:
    """The texture dataset: how many sets, how they split, how they are stored and computed.

    ``sets`` parameter sets are drawn from the grid without replacement (seeded) and
    ``per_set`` textures annealed for each, split ``split`` = (train, val, test) textures per
    set. ``shard_textures`` textures form one Zarr shard file and one Dask task. ``workers``
    sizes the LocalCluster; ``scheduler`` (``tcp://host:port``) uses an existing cluster
    instead, whose workers must see ``out`` on a shared filesystem.

    ``engine``: ``numba`` (one lattice per CPU core, the reference) or ``torch`` (batched
    checkerboard Metropolis, ``physics.torch_engine``) on ``device`` (auto: CUDA when
    present), ``batch`` lattices at a time (null: a whole shard). A shard is the unit of
    batching, so with either engine the store does not depend on the number of workers.
    """

    sets: int = 40
    per_set: int = 20
    split: tuple[int, int, int] = (14, 4, 2)
    shard_textures: int = 100
    dtype: str = "float32"
    workers: int = 2
    scheduler: str | None = None
    out: str = "artifacts/textures.zarr"
    engine: str = "numba"
    device: str = "auto"
    batch: int | None = None


ENGINES = ("numba", "torch")
ENGINE_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class NoiseParams:
    """S* = normalize(S + a R), R random unit vectors (Kwon et al.).

    Train and val get one noisy copy each with a ~ U[amplitude]; the test split one copy per
    level in ``test_levels`` (Ts).
    """

    amplitude: tuple[float, float] = (0.0, 1.0)
    microscope: float = 0.0  # share of train/val copies seen by a virtual microscope instead
    test_levels: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    out: str = "artifacts/noisy.zarr"


MODEL_NAMES = ("resnet18", "resnet50", "cnn")
TRAINING_DATA = ("noisy", "clean")


@dataclass(frozen=True)
class TrainParams:
    """Training of the capacity grid {resnet18, resnet50, cnn} x {noisy, clean}.

    Kwon et al.: MSE on normalized targets, Adam at 1e-4, batch 200, best-validation
    checkpoint. ``epochs`` is per model name. The optimizer is AdamW (decoupled
    ``weight_decay``; at 0 it is Adam). ``lr_schedule``: ``constant`` (the paper) or
    ``onecycle`` (warm-up to ``lr`` over the first 10 % of the run's steps, then a cosine
    decay; the number of epochs then decides the weights, so more epochs start afresh).
    ``device``: auto (CUDA when available), cpu or cuda; ``amp``: bfloat16 autocast on
    CUDA (ignored on CPU).

    Symmetry (spinfer.data.symmetry): ``augment`` lists the operations a random element of
    which is applied to every training image (``true``: all of them, ``false``: none);
    ``tta`` lists the point operations prediction averages over (``true``: all, ``false``:
    none). ``inplane_reversal`` maps lambda to -lambda and needs a lambda range symmetric
    about 0.

    Uncertainty: ``head: gaussian`` predicts a mean and a variance per parameter, trained
    by the beta-NLL of Seitzer et al. (2022) (``beta`` 0 = plain Gaussian NLL, 1 = the mean
    learns exactly as under MSE); ``point`` is the paper's MSE regressor. ``ensemble: N``
    (N >= 2) trains N members seeded base.seed + k and predicts their mixture; ``null``
    trains one model. The best checkpoint is the one with the lowest validation MSE.
    """

    epochs: dict[str, int] = field(
        default_factory=lambda: {"resnet18": 20, "resnet50": 20, "cnn": 20}
    )
    batch_size: int = 200
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    cnn_width: int = 32
    cnn_depth: int = 3
    augment: bool | tuple[str, ...] = True
    tta: bool | tuple[str, ...] = False
    head: str = "gaussian"
    beta: float = 1.0
    ensemble: int | None = None
    loader_workers: int = 0
    device: str = "auto"
    amp: bool = True
    out: str = "artifacts/models"
    eval_out: str = "artifacts/eval"

    @property
    def augment_ops(self) -> tuple[str, ...]:
        """The augmentation operations by name (``true`` = all)."""
        from spinfer.data.symmetry import OPERATIONS

        return _ops(self.augment, OPERATIONS)

    @property
    def tta_ops(self) -> tuple[str, ...]:
        """The point operations test-time averaging uses (``true`` = all)."""
        from spinfer.data.symmetry import OPERATIONS

        return _ops(self.tta, tuple(o for o in OPERATIONS if o != "translate"))

    @property
    def members(self) -> int:
        return self.ensemble or 1


def _ops(value: bool | tuple[str, ...], every: tuple[str, ...]) -> tuple[str, ...]:
    if value is True:
        return every
    return () if value is False else tuple(value)


HEADS = ("point", "gaussian")
LR_SCHEDULES = ("constant", "onecycle")


@dataclass(frozen=True)
class TrackingParams:
    """MLflow: a relative sqlite path resolves against the directory of params.yaml."""

    uri: str = "sqlite:///mlruns/mlflow.db"
    artifacts: str = "mlruns/artifacts"
    experiment: str = "spinfer"
    registered_model: str = "spinfer"


@dataclass(frozen=True)
class ExternalParams:
    """The external test set (textures this project did not make) and the champion guard.

    Every evaluated run reports its MAE on ``data`` beside its test-set MAE, as a ratio to
    predicting the centre of the parameter ranges. ``max_ratio``: register and promote refuse
    a run whose ratio reaches it for lambda, K or D (null: no guard).
    """

    data: str | None = "data/external/spirit.npz"
    max_ratio: float | None = 1.0


@dataclass(frozen=True)
class TuneParams:
    """Optuna studies (``spinfer train tune``): search space, budget per trial, storage.

    ``storage``: ``sqlite:///PATH`` (relative paths resolve against params.yaml's folder) or
    ``journal:PATH`` (an Optuna journal file). ``models`` may name any timm model besides
    the grid's three. ``lr`` and ``weight_decay`` are log-scale ranges (equal ends fix the
    value; a weight_decay range starting at 0 is searched linearly); ``cnn_width`` and
    ``cnn_depth`` are searched only for the CNN. Every trial trains ``epochs`` epochs and
    reports its validation MAE per epoch to a MedianPruner that waits for
    ``startup_trials`` finished trials and ``warmup_epochs`` epochs. The best trial's
    settings go to ``best_out``, which the ``tuned`` stage of dvc.yaml retrains.
    """

    storage: str = "sqlite:///artifacts/tune/optuna.db"
    experiment: str = "spinfer-tune"
    models: tuple[str, ...] = ("resnet18", "resnet50", "cnn")
    training_data: tuple[str, ...] = ("noisy", "clean")
    lr: tuple[float, float] = (1e-5, 3e-3)
    batch_size: tuple[int, ...] = (16, 32, 64)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    cnn_width: tuple[int, int] = (8, 64)
    cnn_depth: tuple[int, int] = (2, 5)
    epochs: int = 4
    startup_trials: int = 3
    warmup_epochs: int = 1
    seed: int = 0
    best_out: str = "tuned.yaml"


@dataclass(frozen=True)
class SpleemParams:
    """Experimental (SPLEEM-like) images: where they are, how they are read, the film.

    ``data`` holds one folder per image set: sx/sy/sz grey-scale images (any common format,
    8 or 16 bit) and/or wheel.<ext> (colour wheel), optionally truth.json and meta.yaml
    (``orientation``, ``sz_sign`` of that set; ``orientation`` and ``sz_sign`` here are the
    defaults, see spinfer.spleem.ingest for the conventions). Panels of the
    model's size are cut on a grid with ``stride`` pixels and kept when ``min_trusted`` of
    their pixels are trusted (calibrated vector at least ``min_norm`` long). Film constants
    (monolayers, Bohr magnetons, Angstrom) give the meV scale D_L; ``pixel_nm`` the wall
    width in nm. ``sample_*`` describe the shipped experimental-like sample
    (``spinfer spleem sample``): textures simulated at known parameters on a
    ``sample_size`` lattice, one site per pixel, through the forward model (PSF blur,
    per-channel contrast and offset, shot noise at ``sample_counts`` electrons per pixel).
    """

    data: str = "data/spleem"
    out: str = "artifacts/spleem"
    experiment: str = "spinfer-spleem"
    model: str = "models:/spinfer@champion"
    orientation: str = "xy-up"  # image axes (spinfer.spleem.ingest); a set's meta.yaml wins
    sz_sign: int = 1  # -1: the instrument shows -Sz as white
    stride: int = 50
    min_norm: float = 0.3
    min_trusted: float = 0.9
    pixel_nm: float = 25.0
    d_co: float = 2.0
    d_ni: float = 6.0
    mu_co: float = 1.7
    mu_ni: float = 0.6
    lattice_a: float = 2.49
    resimulate: bool = True
    sample_size: tuple[int, int] = (370, 400)
    sample_dipolar: float = 0.07
    sample_anisotropy_over_kshape: float = 1.05
    sample_dmi_over_dipolar: tuple[float, ...] = (2.0, 0.0, -2.0)
    sample_psf_sigma: float = 0.8
    sample_counts: float = 200.0
    sample_seed: int = 2020


@dataclass(frozen=True)
class Params:
    profile: str = "default"
    base: BaseParams = field(default_factory=BaseParams)
    physics: PhysicsParams = field(default_factory=PhysicsParams)
    schedule: Schedule = field(default_factory=Schedule)
    ranges: RangeParams = field(default_factory=RangeParams)
    preview: PreviewParams = field(default_factory=PreviewParams)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    noise: NoiseParams = field(default_factory=NoiseParams)
    train: TrainParams = field(default_factory=TrainParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)
    external: ExternalParams = field(default_factory=ExternalParams)
    tune: TuneParams = field(default_factory=TuneParams)
    spleem: SpleemParams = field(default_factory=SpleemParams)


SECTIONS = tuple(f.name for f in dataclasses.fields(Params) if f.name != "profile")


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check one YAML value against a type hint; returns it converted (lists -> tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"{where}: expected a non-empty mapping, got {value!r}")
        return {
            _convert(k, key_hint, where): _convert(v, value_hint, f"{where}.{k}")
            for k, v in value.items()
        }
    if origin is tuple and typing.get_args(hint)[1:] == (Ellipsis,):
        item = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{where}: expected a non-empty list, got {value!r}")
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-9 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint}")  # pragma: no cover


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Instantiate a frozen dataclass section, rejecting unknown keys by name."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key '{where}.{unknown[0]}' (known: {', '.join(sorted(known))})"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except SpinferError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _merge(base: dict, overlay: Mapping, where: str) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override '{text}' must look like section.key=value")
    return parts, yaml.safe_load(raw)


def params_from_dict(raw: Mapping[str, Any], overrides: Iterable[str] = ()) -> Params:
    """Validate a parsed ``params.yaml`` mapping (plus overrides) into ``Params``."""
    if not isinstance(raw, Mapping):
        raise ConfigError("params file must hold a mapping at the top level")
    allowed = {"profile", "profiles", *SECTIONS}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}' (known: {', '.join(sorted(allowed))})")
    overrides = list(overrides)
    profile = raw.get("profile", "default")
    for text in [o for o in overrides if o.strip().startswith("profile=")]:
        profile = yaml.safe_load(text.split("=", 1)[1])
        overrides.remove(text)
    profiles = raw.get("profiles") or {}
    if not isinstance(profile, str):
        raise ConfigError(f"profile: expected a name, got {profile!r}")
    if not isinstance(profiles, Mapping):
        raise ConfigError("profiles: expected a mapping of name -> overlay")
    sections: dict[str, Any] = {s: raw.get(s) or {} for s in SECTIONS}
    if profile != "default":
        if profile not in profiles:
            names = ", ".join(["default", *sorted(profiles)])
            raise ConfigError(f"unknown profile '{profile}' (known: {names})")
        overlay = profiles[profile] or {}
        bad = sorted(set(overlay) - set(SECTIONS))
        if bad:
            raise ConfigError(f"unknown key 'profiles.{profile}.{bad[0]}'")
        sections = _merge(sections, overlay, f"profiles.{profile}")
    for text in overrides:
        (section, key), value = _parse_override(text)
        if section not in SECTIONS:
            raise ConfigError(f"unknown key '{section}' in override '{text}'")
        sections[section] = {**sections[section], key: value}
    hints = typing.get_type_hints(Params)
    sections["physics"] = _named_kshape(sections["physics"])
    built = {s: _build(hints[s], sections[s], s) for s in SECTIONS}
    params = Params(profile=profile, **built)
    _check(params)
    return params


def _named_kshape(physics: Mapping[str, Any]) -> dict[str, Any]:
    """``kshape_factor: continuum`` or ``paper`` as its number (KSHAPE_NAMES)."""
    value = physics.get("kshape_factor")
    if not isinstance(value, str):
        return dict(physics)
    try:
        return {**physics, "kshape_factor": float(value)}
    except ValueError:
        pass
    if value not in KSHAPE_NAMES:
        raise ConfigError(
            f"physics.kshape_factor: expected a number, null or one of {sorted(KSHAPE_NAMES)}, "
            f"got {value!r}"
        )
    return {**physics, "kshape_factor": KSHAPE_NAMES[value]}


def _check(p: Params) -> None:
    """Cross-field checks that a single section cannot express."""
    if p.physics.size < 4:
        raise ConfigError(f"physics.size must be >= 4, got {p.physics.size}")
    if p.physics.dipolar_images is not None and p.physics.dipolar_images < 0:
        raise ConfigError("physics.dipolar_images must be >= 0 or null")
    if p.physics.kshape_factor is not None and p.physics.kshape_factor <= 0:
        raise ConfigError("physics.kshape_factor must be > 0 or null")
    r = p.ranges
    for name in ("dipolar", "dmi_over_dipolar", "anisotropy_over_kshape"):
        lo, hi = getattr(r, name)
        if lo > hi:
            raise ConfigError(f"ranges.{name}: inverted range [{lo}, {hi}]")
        step = getattr(r, name.split("_")[0] + "_step")
        if step <= 0:
            raise ConfigError(f"ranges.{name.split('_')[0]}_step must be > 0")
    if r.dipolar[0] < 0:
        raise ConfigError("ranges.dipolar must be >= 0")
    if p.preview.textures < 1 or p.preview.cols < 1:
        raise ConfigError("preview.textures and preview.cols must be >= 1")
    _check_dataset(p.dataset)
    _check_noise(p.noise)
    _check_tune(p.tune)
    _check_spleem(p.spleem)
    if p.external.max_ratio is not None and p.external.max_ratio <= 0:
        raise ConfigError(f"external.max_ratio must be > 0 or null, got {p.external.max_ratio}")
    _check_train(p.train, p.tune.models)
    _check_symmetric_lambda(p)


def _check_train(t: TrainParams, tuned_models: tuple[str, ...] = ()) -> None:
    known = [*MODEL_NAMES, *(m for m in tuned_models if m not in MODEL_NAMES)]
    unknown = sorted(set(t.epochs) - set(known))
    if unknown:
        raise ConfigError(
            f"train.epochs: unknown model '{unknown[0]}' (known: {', '.join(known)})"
        )
    if any(e < 1 for e in t.epochs.values()):
        raise ConfigError("train.epochs must be >= 1 for every model")
    if t.batch_size < 1 or t.lr <= 0 or t.weight_decay < 0 or t.cnn_width < 1:
        raise ConfigError("train needs batch_size >= 1, lr > 0, weight_decay >= 0, cnn_width >= 1")
    if t.cnn_depth < 1:
        raise ConfigError(f"train.cnn_depth must be >= 1, got {t.cnn_depth}")
    if t.loader_workers < 0:
        raise ConfigError("train.loader_workers must be >= 0")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, got {t.device!r}")
    from spinfer.data.symmetry import check_operations

    check_operations(t.augment_ops, "train.augment")
    check_operations(t.tta_ops, "train.tta", translate=False)
    if t.head not in HEADS:
        raise ConfigError(f"train.head: unknown head '{t.head}' (known: {', '.join(HEADS)})")
    if t.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(
            f"train.lr_schedule: unknown schedule '{t.lr_schedule}' "
            f"(known: {', '.join(LR_SCHEDULES)})"
        )
    if not 0.0 <= t.beta <= 1.0:
        raise ConfigError(f"train.beta must lie in [0, 1], got {t.beta}")
    if t.ensemble is not None and t.ensemble < 2:
        raise ConfigError(
            f"train.ensemble: an ensemble needs at least 2 members, got {t.ensemble} "
            "(null trains a single model)"
        )


def _check_symmetric_lambda(p: Params) -> None:
    """Reversing lambda must stay inside the trained range."""
    uses = "inplane_reversal" in (*p.train.augment_ops, *p.train.tta_ops)
    lo, hi = p.ranges.dmi_over_dipolar
    if uses and abs(lo + hi) > 1e-12:
        raise ConfigError(
            "train: inplane_reversal maps lambda to -lambda and needs a symmetric "
            f"ranges.dmi_over_dipolar, got [{lo}, {hi}]"
        )


STORAGE_DTYPES = ("float16", "float32", "float64")


def _check_dataset(d: DatasetParams) -> None:
    if d.sets < 1:
        raise ConfigError(f"dataset.sets must be >= 1, got {d.sets}")
    if d.per_set < 1:
        raise ConfigError(f"dataset.per_set must be >= 1, got {d.per_set}")
    if any(n < 0 for n in d.split) or sum(d.split) != d.per_set:
        raise ConfigError(
            f"dataset.split {list(d.split)} must be >= 0 and sum to dataset.per_set={d.per_set}"
        )
    if d.shard_textures < 1:
        raise ConfigError(f"dataset.shard_textures must be >= 1, got {d.shard_textures}")
    if d.dtype not in STORAGE_DTYPES:
        raise ConfigError(f"dataset.dtype must be one of {', '.join(STORAGE_DTYPES)}")
    if d.workers < 1:
        raise ConfigError(f"dataset.workers must be >= 1, got {d.workers}")
    if d.scheduler is not None and "://" not in d.scheduler:
        raise ConfigError(f"dataset.scheduler must look like tcp://host:port, got {d.scheduler!r}")
    if d.engine not in ENGINES:
        raise ConfigError(
            f"dataset.engine: unknown engine {d.engine!r} (known: {', '.join(ENGINES)})"
        )
    if d.device not in ENGINE_DEVICES:
        raise ConfigError(f"dataset.device must be {', '.join(ENGINE_DEVICES)}, got {d.device!r}")
    if d.batch is not None and d.batch < 1:
        raise ConfigError(f"dataset.batch must be >= 1 or null, got {d.batch}")


def _check_noise(n: NoiseParams) -> None:
    lo, hi = n.amplitude
    if not 0 <= lo <= hi:
        raise ConfigError(f"noise.amplitude must satisfy 0 <= lo <= hi, got [{lo}, {hi}]")
    if not 0 <= n.microscope <= 1:
        raise ConfigError(f"noise.microscope must be in [0, 1], got {n.microscope}")
    if any(t < 0 for t in n.test_levels):
        raise ConfigError("noise.test_levels must be >= 0")
    if len(set(n.test_levels)) != len(n.test_levels):
        raise ConfigError("noise.test_levels must be distinct")


def load_params(path: Path | str = "params.yaml", overrides: Iterable[str] = ()) -> Params:
    """Read, overlay and validate ``params.yaml``; raises ConfigError naming the problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"params file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read params file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{line}") from None
    return params_from_dict(raw, overrides)


def to_dict(params: Params) -> dict[str, Any]:
    """The resolved configuration as plain data (for logging and reports)."""
    return dataclasses.asdict(params)


def _check_tune(t: TuneParams) -> None:
    if not t.storage.startswith(("sqlite:///", "journal:")):
        raise ConfigError(
            f"tune.storage: unknown storage '{t.storage}' (use sqlite:///PATH or journal:PATH)"
        )
    unknown = sorted(set(t.training_data) - set(TRAINING_DATA))
    if unknown:
        raise ConfigError(f"tune.training_data: unknown '{unknown[0]}' (known: noisy, clean)")
    for name in ("lr", "weight_decay", "cnn_width", "cnn_depth"):
        lo, hi = getattr(t, name)
        if lo > hi:
            raise ConfigError(f"tune.{name}: inverted range [{lo}, {hi}]")
    if t.lr[0] <= 0 or t.weight_decay[0] < 0 or t.cnn_width[0] < 1 or t.cnn_depth[0] < 1:
        raise ConfigError("tune needs lr > 0, weight_decay >= 0, cnn_width and cnn_depth >= 1")
    if min(t.batch_size) < 1:
        raise ConfigError("tune.batch_size: every batch size must be >= 1")
    if t.epochs < 1 or t.startup_trials < 0 or t.warmup_epochs < 0:
        raise ConfigError("tune needs epochs >= 1, startup_trials >= 0, warmup_epochs >= 0")


def _check_spleem(s: SpleemParams) -> None:
    orientations = ("xy-up", "xy-down", "transposed")  # spinfer.spleem.ingest.ORIENTATIONS
    if s.orientation not in orientations:
        raise ConfigError(
            f"spleem.orientation: unknown '{s.orientation}' (known: {', '.join(orientations)})"
        )
    if s.sz_sign not in (1, -1):
        raise ConfigError(f"spleem.sz_sign must be 1 or -1, got {s.sz_sign}")
    if s.stride < 1 or not 0 < s.min_norm < 1 or not 0 < s.min_trusted <= 1:
        raise ConfigError("spleem needs stride >= 1, 0 < min_norm < 1, 0 < min_trusted <= 1")
    if min(s.d_co, s.d_ni, s.mu_co, s.mu_ni) < 0 or s.lattice_a <= 0 or s.pixel_nm <= 0:
        raise ConfigError("spleem film constants must be >= 0 (lattice_a, pixel_nm > 0)")
    if min(s.sample_size) < 1 or s.sample_psf_sigma < 0 or s.sample_counts <= 0:
        raise ConfigError("spleem.sample_* need size >= 1, psf_sigma >= 0, counts > 0")
