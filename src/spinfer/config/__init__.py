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

from spinfer.config.loading import (
    load_params,
    params_from_dict,
    resolved_yaml,
    to_dict,
    to_plain,
)
from spinfer.config.sections import (
    ENGINE_DEVICES,
    ENGINE_KERNELS,
    ENGINES,
    HEADS,
    INVARIANT,
    KSHAPE_NAMES,
    LABEL_CHANGING,
    LR_SCHEDULES,
    MODEL_NAMES,
    OPERATIONS,
    SECTIONS,
    STORAGE_DTYPES,
    TRAINING_DATA,
    BaseParams,
    DatasetParams,
    ExternalParams,
    NoiseParams,
    Params,
    PhysicsParams,
    PreviewParams,
    RangeParams,
    SpleemParams,
    TrackingParams,
    TrainParams,
    TuneParams,
)

__all__ = [
    "ENGINES", "ENGINE_DEVICES", "ENGINE_KERNELS", "HEADS", "INVARIANT", "KSHAPE_NAMES",
    "LABEL_CHANGING", "LR_SCHEDULES", "MODEL_NAMES", "OPERATIONS", "SECTIONS", "STORAGE_DTYPES",
    "TRAINING_DATA", "BaseParams", "DatasetParams",
    "ExternalParams", "NoiseParams", "Params", "PhysicsParams", "PreviewParams", "RangeParams",
    "SpleemParams", "TrackingParams", "TrainParams", "TuneParams", "load_params",
    "params_from_dict", "resolved_yaml", "to_dict", "to_plain",
]  # fmt: skip
