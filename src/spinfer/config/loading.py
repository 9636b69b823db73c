"""Loading ``params.yaml``: the profile overlay, ``--set`` overrides, types, validation."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from spinfer.config.sections import KSHAPE_NAMES, SECTIONS, Params
from spinfer.errors import ConfigError, SpinferError


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
    if profile != "default" and profile not in profiles:
        names = ", ".join(sorted({"default", *profiles}))
        raise ConfigError(f"unknown profile '{profile}' (known: {names})")
    if profile in profiles:  # `default` may have an overlay too (dvc.yaml tracks it)
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
    """Every section's own checks, then those that span sections."""
    for name in SECTIONS:
        section = getattr(p, name)
        if name == "train":
            section.check(p.tune.models)
        elif hasattr(section, "check"):
            section.check()
    _check_symmetric_lambda(p)


def _check_symmetric_lambda(p: Params) -> None:
    """Reversing lambda must stay inside the trained range."""
    uses = "inplane_reversal" in (*p.train.augment_ops, *p.train.tta_ops)
    lo, hi = p.ranges.dmi_over_dipolar
    if uses and abs(lo + hi) > 1e-12:
        raise ConfigError(
            "train: inplane_reversal maps lambda to -lambda and needs a symmetric "
            f"ranges.dmi_over_dipolar, got [{lo}, {hi}]"
        )


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


def to_plain(params: Params) -> dict[str, Any]:
    """The resolved configuration as YAML-safe data (tuples as lists)."""
    return json.loads(json.dumps(to_dict(params)))


def resolved_yaml(params: Params) -> str:
    """The resolved configuration (the active profile applied) as a YAML document."""
    head = f"# the resolved configuration of profile {params.profile} (spinfer doctor config)\n"
    return head + yaml.safe_dump(to_plain(params), sort_keys=False)
