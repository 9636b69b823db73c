"""The sections of ``params.yaml``: one frozen dataclass each, with its own validation.

Each section's ``check()`` raises ``ConfigError`` naming the first invalid value; checks
that span sections (and the whole loading, overlays and overrides) are in
``spinfer.config.loading``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from spinfer.errors import ConfigError
from spinfer.physics.anneal import Schedule


@dataclass(frozen=True)
class BaseParams:
    """Project-wide settings. The pipeline's outputs live under ``artifacts/`` (dvc.yaml's
    paths); each store's own path is its section's ``out``."""

    seed: int = 2020


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

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        if self.size < 4:
            raise ConfigError(f"physics.size must be >= 4, got {self.size}")
        if self.dipolar_images is not None and self.dipolar_images < 0:
            raise ConfigError("physics.dipolar_images must be >= 0 or null")
        if self.kshape_factor is not None and self.kshape_factor <= 0:
            raise ConfigError("physics.kshape_factor must be > 0 or null")


@dataclass(frozen=True)
class RangeParams:
    """Parameter ranges as in Kwon et al.: D absolute, lambda in units of D, K of Kshape."""

    dipolar: tuple[float, float] = (0.05, 0.13)
    dipolar_step: float = 0.005
    dmi_over_dipolar: tuple[float, float] = (-3.0, 3.0)
    dmi_step: float = 0.3
    anisotropy_over_kshape: tuple[float, float] = (0.1, 1.2)
    anisotropy_step: float = 0.02

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        for name in ("dipolar", "dmi_over_dipolar", "anisotropy_over_kshape"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"ranges.{name}: inverted range [{lo}, {hi}]")
            step = getattr(self, name.split("_")[0] + "_step")
            if step <= 0:
                raise ConfigError(f"ranges.{name.split('_')[0]}_step must be > 0")
        if self.dipolar[0] < 0:
            raise ConfigError("ranges.dipolar must be >= 0")


@dataclass(frozen=True)
class PreviewParams:
    """The handful of textures the main job renders across the ranges."""

    textures: int = 8
    cols: int = 4

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        if self.textures < 1 or self.cols < 1:
            raise ConfigError("preview.textures and preview.cols must be >= 1")


ENGINES = ("numba", "torch")

ENGINE_DEVICES = ("auto", "cpu", "cuda")
ENGINE_KERNELS = ("auto", "triton", "torch")

STORAGE_DTYPES = ("float16", "float32", "float64")


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
    ``kernels``: the torch engine's half-sweep as fused Triton kernels (``triton``), as eager
    torch operations (``torch``), or ``auto`` (triton where Triton runs: CUDA); the same
    arithmetic either way, triton the faster.
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
    kernels: str = "auto"

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        if self.sets < 1:
            raise ConfigError(f"dataset.sets must be >= 1, got {self.sets}")
        if self.per_set < 1:
            raise ConfigError(f"dataset.per_set must be >= 1, got {self.per_set}")
        if any(n < 0 for n in self.split) or sum(self.split) != self.per_set:
            raise ConfigError(
                f"dataset.split {list(self.split)} must be >= 0 and sum to "
                f"dataset.per_set={self.per_set}"
            )
        if self.shard_textures < 1:
            raise ConfigError(f"dataset.shard_textures must be >= 1, got {self.shard_textures}")
        if self.dtype not in STORAGE_DTYPES:
            raise ConfigError(f"dataset.dtype must be one of {', '.join(STORAGE_DTYPES)}")
        if self.workers < 1:
            raise ConfigError(f"dataset.workers must be >= 1, got {self.workers}")
        if self.scheduler is not None and "://" not in self.scheduler:
            raise ConfigError(
                f"dataset.scheduler must look like tcp://host:port, got {self.scheduler!r}"
            )
        if self.engine not in ENGINES:
            raise ConfigError(
                f"dataset.engine: unknown engine {self.engine!r} (known: {', '.join(ENGINES)})"
            )
        if self.device not in ENGINE_DEVICES:
            raise ConfigError(
                f"dataset.device must be {', '.join(ENGINE_DEVICES)}, got {self.device!r}"
            )
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"dataset.batch must be >= 1 or null, got {self.batch}")
        if self.kernels not in ENGINE_KERNELS:
            raise ConfigError(
                f"dataset.kernels must be {', '.join(ENGINE_KERNELS)}, got {self.kernels!r}"
            )


@dataclass(frozen=True)
class NoiseParams:
    """S* = normalize(S + a R), R random unit vectors (Kwon et al.).

    Train and val get one noisy copy each with a ~ U[amplitude] (store ``out``); the test
    split one copy per level in ``test_levels`` (Ts; store ``test_out``, apart so that the
    levels change no training input).
    """

    amplitude: tuple[float, float] = (0.0, 1.0)
    microscope: float = 0.0  # share of train/val copies seen by a virtual microscope instead
    psf_sigma: tuple[float, float] = (0.0, 1.5)  # its Gaussian PSF width, pixels, ~ U[lo, hi]
    test_levels: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    out: str = "artifacts/noisy.zarr"
    test_out: str = "artifacts/test_noise.zarr"

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        if self.out == self.test_out:
            raise ConfigError("noise.out and noise.test_out must name different stores")
        lo, hi = self.amplitude
        if not 0 <= lo <= hi:
            raise ConfigError(f"noise.amplitude must satisfy 0 <= lo <= hi, got [{lo}, {hi}]")
        if not 0 <= self.microscope <= 1:
            raise ConfigError(f"noise.microscope must be in [0, 1], got {self.microscope}")
        lo, hi = self.psf_sigma
        if not 0 <= lo <= hi:
            raise ConfigError(f"noise.psf_sigma must satisfy 0 <= lo <= hi, got [{lo}, {hi}]")
        if any(t < 0 for t in self.test_levels):
            raise ConfigError("noise.test_levels must be >= 0")
        if len(set(self.test_levels)) != len(self.test_levels):
            raise ConfigError("noise.test_levels must be distinct")


#: symmetry operations (spinfer.data.symmetry applies them): those that leave H unchanged,
#: and the one that maps lambda to -lambda
INVARIANT = ("rotate", "mirror", "time_reversal", "translate")
LABEL_CHANGING = ("inplane_reversal",)
OPERATIONS = (*INVARIANT, *LABEL_CHANGING)


def check_operations(names, where: str, translate: bool = True) -> tuple[str, ...]:
    """Validated operation names (ConfigError naming the unknown one)."""
    names = tuple(names)
    allowed = OPERATIONS if translate else tuple(o for o in OPERATIONS if o != "translate")
    for name in names:
        if name not in allowed:
            extra = "" if translate or name != "translate" else " (translations are not averaged)"
            raise ConfigError(
                f"{where}: unknown operation '{name}'{extra} (known: {', '.join(allowed)})"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: an operation is listed twice")
    return names


MODEL_NAMES = ("resnet18", "resnet50", "cnn")

TRAINING_DATA = ("noisy", "clean")

HEADS = ("point", "gaussian")

LR_SCHEDULES = ("constant", "onecycle")


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

    Symmetry (OPERATIONS, applied by spinfer.data.symmetry): ``augment`` lists the
    operations a random element of which is applied to every training image (``true``: all
    of them, ``false``: none);
    ``tta`` lists the point operations prediction averages over (``true``: all, ``false``:
    none). ``inplane_reversal`` maps lambda to -lambda and needs a lambda range symmetric
    about 0.

    Uncertainty: ``head: gaussian`` predicts a mean and a variance per parameter, trained
    by the beta-NLL of Seitzer et al. (2022) (``beta`` 0 = plain Gaussian NLL, 1 = the mean
    learns exactly as under MSE); ``point`` is the paper's MSE regressor. ``ensemble: N``
    (N >= 2) trains N members seeded base.seed + k and predicts their mixture; ``null``
    trains one model. The best checkpoint is the one with the lowest validation MSE.

    ``grid``: the capacity-grid models this profile trains; a grid model left out is not
    trained (its pipeline stages record why and make no MLflow run), for a budget that
    cannot train it to better than the mean predictor.

    ``out_of_plane_share``: the share of each epoch's draws given to out-of-plane training
    textures (mean |Sz| above 1/2), drawn with replacement (spinfer.data.dataset's
    phase_weights); ``null`` shows every texture once per epoch (the paper). Uniform in-plane
    states hold no couplings, and most of the paper's K range is in plane.

    ``fresh_noise``: noisy training draws a new copy of every texture each epoch (the noise
    section's S + aR or virtual microscope, seeded by the epoch) instead of showing its one
    stored copy every epoch (the paper); validation keeps the stored copies.
    """

    grid: tuple[str, ...] = MODEL_NAMES
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
    out_of_plane_share: float | None = None
    fresh_noise: bool = False
    loader_workers: int = 0
    preload: bool | str = "auto"
    device: str = "auto"
    amp: bool = True
    out: str = "artifacts/models"
    eval_out: str = "artifacts/eval"

    @property
    def augment_ops(self) -> tuple[str, ...]:
        """The augmentation operations by name (``true`` = all)."""
        return _ops(self.augment, OPERATIONS)

    @property
    def tta_ops(self) -> tuple[str, ...]:
        """The point operations test-time averaging uses (``true`` = all)."""
        return _ops(self.tta, tuple(o for o in OPERATIONS if o != "translate"))

    @property
    def members(self) -> int:
        return self.ensemble or 1

    def check(self, tuned_models: tuple[str, ...] = ()) -> None:
        """Raise ConfigError naming the first invalid value. ``tuned_models``: the
        models a study may add to the grid (tune.models)."""
        known = [*MODEL_NAMES, *(m for m in tuned_models if m not in MODEL_NAMES)]
        unknown = sorted(set(self.epochs) - set(known))
        if unknown:
            raise ConfigError(
                f"train.epochs: unknown model '{unknown[0]}' (known: {', '.join(known)})"
            )
        outside = sorted(set(self.grid) - set(MODEL_NAMES))
        if outside or not self.grid:
            raise ConfigError(
                f"train.grid: expected some of {', '.join(MODEL_NAMES)}, got "
                f"{', '.join(outside) if outside else 'none'}"
            )
        if any(e < 1 for e in self.epochs.values()):
            raise ConfigError("train.epochs must be >= 1 for every model")
        if self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0 or self.cnn_width < 1:
            raise ConfigError(
                "train needs batch_size >= 1, lr > 0, weight_decay >= 0, cnn_width >= 1"
            )
        if self.cnn_depth < 1:
            raise ConfigError(f"train.cnn_depth must be >= 1, got {self.cnn_depth}")
        if self.loader_workers < 0:
            raise ConfigError("train.loader_workers must be >= 0")
        if self.preload not in (True, False, "auto"):
            raise ConfigError(f"train.preload must be true, false or auto, got {self.preload!r}")
        if self.preload is True and self.fresh_noise:
            raise ConfigError(
                "train.preload: true cannot hold fresh noisy copies (drawn anew each epoch); "
                "use auto or false with train.fresh_noise"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        check_operations(self.augment_ops, "train.augment")
        check_operations(self.tta_ops, "train.tta", translate=False)
        if self.head not in HEADS:
            raise ConfigError(
                f"train.head: unknown head '{self.head}' (known: {', '.join(HEADS)})"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"train.lr_schedule: unknown schedule '{self.lr_schedule}' "
                f"(known: {', '.join(LR_SCHEDULES)})"
            )
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"train.beta must lie in [0, 1], got {self.beta}")
        share = self.out_of_plane_share
        if share is not None and not 0.0 < share < 1.0:
            raise ConfigError(
                f"train.out_of_plane_share must lie strictly between 0 and 1, got {share} "
                "(null: every texture once per epoch)"
            )
        if self.ensemble is not None and self.ensemble < 2:
            raise ConfigError(
                f"train.ensemble: an ensemble needs at least 2 members, got {self.ensemble} "
                "(null trains a single model)"
            )


def _ops(value: bool | tuple[str, ...], every: tuple[str, ...]) -> tuple[str, ...]:
    if value is True:
        return every
    return () if value is False else tuple(value)


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

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        if self.max_ratio is not None and self.max_ratio <= 0:
            raise ConfigError(f"external.max_ratio must be > 0 or null, got {self.max_ratio}")


@dataclass(frozen=True)
class TuneParams:
    """Optuna studies (``spinfer train tune``): search space, budget per trial, storage.

    ``storage``: ``sqlite:///PATH`` (relative paths resolve against params.yaml's folder) or
    ``journal:PATH`` (an Optuna journal file). ``models`` may name any timm model besides
    the grid's three. ``lr`` and ``weight_decay`` are log-scale ranges (equal ends fix the
    value; a weight_decay range starting at 0 is searched linearly); ``cnn_width`` and
    ``cnn_depth`` are searched only for the CNN. ``out_of_plane_share`` is a linear range
    for train.out_of_plane_share (null: every trial keeps the train section's). Every trial
    trains ``epochs`` epochs and reports its validation MAE per epoch to a MedianPruner that
    waits for ``startup_trials`` finished trials and ``warmup_epochs`` epochs. The best
    trial's settings go to ``best_out``, which the ``tuned`` stage of dvc.yaml retrains.
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
    out_of_plane_share: tuple[float, float] | None = None
    epochs: int = 4
    startup_trials: int = 3
    warmup_epochs: int = 1
    seed: int = 0
    best_out: str = "tuned.yaml"

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        if not self.storage.startswith(("sqlite:///", "journal:")):
            raise ConfigError(
                f"tune.storage: unknown storage '{self.storage}' "
                "(use sqlite:///PATH or journal:PATH)"
            )
        unknown = sorted(set(self.training_data) - set(TRAINING_DATA))
        if unknown:
            raise ConfigError(f"tune.training_data: unknown '{unknown[0]}' (known: noisy, clean)")
        for name in ("lr", "weight_decay", "cnn_width", "cnn_depth"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"tune.{name}: inverted range [{lo}, {hi}]")
        if (
            self.lr[0] <= 0
            or self.weight_decay[0] < 0
            or self.cnn_width[0] < 1
            or self.cnn_depth[0] < 1
        ):
            raise ConfigError("tune needs lr > 0, weight_decay >= 0, cnn_width and cnn_depth >= 1")
        if min(self.batch_size) < 1:
            raise ConfigError("tune.batch_size: every batch size must be >= 1")
        share = self.out_of_plane_share
        if share is not None and not (0 < share[0] <= share[1] < 1):
            raise ConfigError(
                f"tune.out_of_plane_share: need 0 < low <= high < 1, got {list(share)}"
            )
        if self.epochs < 1 or self.startup_trials < 0 or self.warmup_epochs < 0:
            raise ConfigError("tune needs epochs >= 1, startup_trials >= 0, warmup_epochs >= 0")


@dataclass(frozen=True)
class SpleemParams:
    """Experimental (SPLEEM-like) images: where they are, how they are read, the film.

    ``data`` holds one folder per image set: sx/sy/sz grey-scale images (any common format,
    8 or 16 bit) and/or wheel.<ext> (colour wheel), optionally truth.json and meta.yaml
    (``orientation``, ``sz_sign``, ``psf_shape``, ``psf_width`` of that set; those here are
    the defaults, see spinfer.spleem.ingest for the conventions and spinfer.spleem.deconvolve
    for the PSF the channels are deconvolved by). Panels of the
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
    psf_shape: str = "gaussian"  # the instrument's point-spread function: gaussian, lorentzian
    psf_width: float = 0.0  # its width (px); 0: the channels are not deconvolved
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

    def check(self) -> None:
        """Raise ConfigError naming the first invalid value."""
        orientations = ("xy-up", "xy-down", "transposed")  # spinfer.spleem.ingest.ORIENTATIONS
        if self.orientation not in orientations:
            raise ConfigError(
                f"spleem.orientation: unknown '{self.orientation}' "
                f"(known: {', '.join(orientations)})"
            )
        if self.sz_sign not in (1, -1):
            raise ConfigError(f"spleem.sz_sign must be 1 or -1, got {self.sz_sign}")
        shapes = ("gaussian", "lorentzian")  # spinfer.spleem.deconvolve.PSF_SHAPES
        if self.psf_shape not in shapes:
            raise ConfigError(
                f"spleem.psf_shape: unknown '{self.psf_shape}' (known: {', '.join(shapes)})"
            )
        if not self.psf_width >= 0:
            raise ConfigError(f"spleem.psf_width must be >= 0 pixels, got {self.psf_width}")
        if self.stride < 1 or not 0 < self.min_norm < 1 or not 0 < self.min_trusted <= 1:
            raise ConfigError("spleem needs stride >= 1, 0 < min_norm < 1, 0 < min_trusted <= 1")
        if (
            min(self.d_co, self.d_ni, self.mu_co, self.mu_ni) < 0
            or self.lattice_a <= 0
            or self.pixel_nm <= 0
        ):
            raise ConfigError("spleem film constants must be >= 0 (lattice_a, pixel_nm > 0)")
        if min(self.sample_size) < 1 or self.sample_psf_sigma < 0 or self.sample_counts <= 0:
            raise ConfigError("spleem.sample_* need size >= 1, psf_sigma >= 0, counts > 0")


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
