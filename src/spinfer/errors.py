"""Errors the CLI turns into a one-line ``error: ...`` message."""


class SpinferError(Exception):
    """A problem the user can fix: bad input, bad configuration, missing files."""


class ConfigError(SpinferError):
    """``params.yaml`` (or an override) is invalid; the message names the key."""


class InputError(SpinferError):
    """An input file or array is not what the command needs."""


class TrainingDiverged(SpinferError):
    """The training loss became NaN or infinite; the best checkpoint so far is kept."""
