"""The repository speaks of the project, not of how it was built; its docs link to real files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".ipynb", ".cfg", ".txt", ""}
SKIP_PARTS = {".venv", ".git", ".dvc", "mlruns", "artifacts", "data", ".cache", "node_modules"}
#: development narration: work sessions, issue numbers, harness nicknames
NARRATION = re.compile(
    r"\bsessions?\s+\d+"
    r"|\b(?:this|last|previous|next|earlier|later|one|a|an) (?:work )?session\b"
    r"|\bissues?\s*#?\d+\b"
    r"|\bS\d+ harness\b",
    re.IGNORECASE,
)
README_MAX_LINES = 200


def tracked_text_files() -> list[Path]:
    """Files git tracks (or, outside a checkout, the tree without generated folders)."""
    if shutil.which("git") and (ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split("\n")
        paths = [ROOT / p for p in out if p]
    else:  # pragma: no cover - an exported tree
        paths = [p for p in ROOT.rglob("*") if p.is_file()]
    return [
        p
        for p in paths
        if p.is_file()
        and p.suffix in TEXT_SUFFIXES
        and not SKIP_PARTS.intersection(p.relative_to(ROOT).parts)
    ]


def test_no_tracked_text_narrates_development():
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if NARRATION.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, "development narration in tracked text:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    ("line", "narrates"),
    [
        # the narrating examples are assembled, so that this file does not narrate itself
        (" ".join(["as found in", "session", "7"]), True),
        (" ".join(["fixed in this", "session"]), True),
        (" ".join(["see", "issue", "19"]), True),
        (" ".join(["issue", "#5 asked"]), True),
        (" ".join(["the", "S6", "harness"]), True),
        ('@pytest.fixture(scope="session")', False),
        ("an MLflow session token", False),
        ("the issues it raised", False),
    ],
)
def test_narration_pattern(line, narrates):
    assert bool(NARRATION.search(line)) is narrates


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    for doc in re.findall(r"\b(docs/[\w./-]+\.(?:md|png))", readme):
        assert (ROOT / doc).is_file(), f"README names {doc}, which does not exist"
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README's index misses docs/{page.name}"
