"""The parts of the package use only the parts below them (docs/architecture.md).

Every ``import spinfer.<part>`` or ``from spinfer.<part> import`` inside ``src/spinfer`` (at
module level or inside a function) is checked against the table, and the table itself must
be an order: a part never uses a part that uses it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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
    "models": {"physics", "config", "data", "io"},
    "tracking": {"config", "data", "io"},
    "train": {"physics", "data", "config", "models", "tracking", "render", "io"},
    "serve": {"physics", "data", "config", "models", "tracking", "train", "io"},
    "spleem": {"physics", "data", "config", "models", "serve", "tracking", "render", "io"},
    "tune": {"config", "models", "tracking", "train", "render", "io"},
    "faults": {
        "config", "data", "models", "serve", "tracking", "train", "tune", "io", "physics",
    },
    "cli": {
        "config", "data", "faults", "io", "models", "physics", "preview", "render", "serve",
        "spleem", "tracking", "train", "tune",
    },
}  # fmt: skip


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
    bad = sorted((s, t) for s, t in edges() if t not in ALLOWED.get(s, set()))
    assert not bad, f"imports against docs/architecture.md: {bad}"


def test_the_table_is_an_order():
    """No part may use, directly or through others, a part that may use it: the table is
    a layering (physics <- data <- models <- train <- serve <- spleem/tune <- cli)."""

    def below(part: str, seen: frozenset = frozenset()) -> set[str]:
        assert part not in seen, f"the table has a cycle through {part}"
        found = set()
        for lower in ALLOWED[part]:
            found |= {lower} | below(lower, seen | {part})
        return found

    for part in ALLOWED:
        assert part not in below(part)
    assert {"train", "serve", "spleem", "tune", "cli"}.isdisjoint(below("models"))
    assert "serve" not in below("train")


def test_the_served_model_loads_without_training_code():
    """Loading the served pyfunc and a predictor imports the models part, never training,
    the config or the simulator (numba is not among the served model's requirements)."""
    code = (
        "import sys, spinfer.serve.pyfunc, spinfer.models.predictor;"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['spinfer', 'train'], ['spinfer', 'config'], ['spinfer', 'physics']) "
        "or m == 'numba'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


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
