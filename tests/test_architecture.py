"""The parts of the package use only the parts below them (docs/architecture.md).

Every ``import spinfer.<part>`` or ``from spinfer.<part> import`` inside ``src/spinfer`` (at
module level or inside a function) is checked against the table. Couplings that cut across
the order and are known are listed apart, so that a new one fails here and an old one that
disappears is noticed too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "spinfer"
BASE = {"errors", "__init__"}
#: part -> the parts it may import (besides itself and BASE)
ALLOWED = {
    "errors": set(),
    "physics": set(),
    "io": {"physics"},
    "render": {"physics", "io"},
    "config": {"physics"},
    "data": {"physics", "config", "io", "render"},
    "preview": {"physics", "config", "data", "io", "render"},
    "tracking": {"config", "data", "io"},
    "train": {"physics", "data", "config", "tracking", "render", "io"},
    "serve": {"physics", "data", "config", "tracking", "train", "io"},
    "spleem": {"physics", "data", "config", "tracking", "render", "io"},
    "tune": {"config", "tracking", "train", "render", "io"},
    "faults": {"config", "data", "serve", "tracking", "train", "tune", "io", "physics"},
    "cli": {
        "config", "data", "faults", "io", "physics", "preview", "render", "serve", "spleem",
        "tracking", "train", "tune",
    },
}  # fmt: skip
#: known couplings against the order (docs/architecture.md, "Known couplings")
KNOWN = {("config", "data"), ("train", "serve"), ("data", "preview")}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spinfer"):
            names = node.module.split(".")
            if len(names) > 1:
                parts.add(names[1])
            else:  # from spinfer import x
                parts.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "spinfer" and len(names) > 1:
                    parts.add(names[1])
    return parts


def edges() -> set[tuple[str, str]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        source = part_of(path)
        for target in imported_parts(path) - {source} - BASE:
            found.add((source, target))
    return found


def test_every_part_is_in_the_table():
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")} - BASE
    assert parts <= set(ALLOWED), f"parts missing from the table: {parts - set(ALLOWED)}"


def test_parts_use_only_the_parts_below_them():
    bad = sorted(
        (s, t) for s, t in edges() if t not in ALLOWED.get(s, set()) and (s, t) not in KNOWN
    )
    assert not bad, f"imports against docs/architecture.md: {bad}"


def test_known_couplings_are_still_there():
    gone = KNOWN - edges()
    assert not gone, f"known couplings removed (drop them from KNOWN and the docs): {gone}"


@pytest.mark.parametrize("part", ["physics", "errors"])
def test_the_physics_core_stands_alone(part):
    assert not {t for s, t in edges() if s == part}


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == name
    ]


def test_the_library_logs_and_the_command_line_decides_what_is_shown():
    """No print() and no log level set on another library outside cli/ (the generated
    scoring script of the registry prints its one JSON line: it is a string, not code)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if part_of(path) == "cli":
            continue
        found += [f"{path.name}:{n} print" for n in _calls(path, "print")]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith(".setLevel")
                and "getLogger(" in ast.unparse(node.func)
            ):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    assert not found, found
