"""The house keeps its plan: the README's layout block names every module and package under edgernn/ (and
nothing that is not there), every file does one job in at most MAX_LINES lines, and nothing in the repository
points at files outside it. The import layering itself is checked by `lint-imports` (pyproject.toml)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
LONGER = {}  # path -> why it is still one job; none today


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Layout", 1)[1].split("```", 2)[1]


def test_readme_layout_names_every_module_and_package():
    block = _layout_block()
    named = set(re.findall(r"[\w.]+\.py|[\w]+/", block))
    pkg = ROOT / "edgernn"
    for path in pkg.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py") or "__pycache__" in path.parts:
            continue
        assert path.name in named, f"README layout does not name {path.relative_to(ROOT)}"
    for d in pkg.rglob("*"):
        if d.is_dir() and (d / "__init__.py").exists() and d != pkg:
            assert d.name + "/" in named, f"README layout does not name the package {d.relative_to(ROOT)}"
    on_disk = {p.name for p in ROOT.rglob("*.py")}
    for name in (n for n in named if n.endswith(".py")):
        assert name in on_disk, f"README layout names {name}, which does not exist"
    docs = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert docs == set(re.findall(r"\b[\w]+\.md\b", block.split("docs/", 1)[1])), "README layout's docs/ line"


def test_every_module_is_at_most_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "edgernn").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= set(LONGER), f"over {MAX_LINES} lines: {long} - split by job, or say in LONGER why not"


def test_nothing_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = []
    for rel in files:
        path = ROOT / rel
        if path.suffix not in (".py", ".md", ".toml", ".sh", ".cfg", ".txt", "") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for pattern in ("../shared", "/work/shared", "TOOLCHAIN.md", "DESIGN.md"):
            if pattern in text and rel != "tests/test_layout.py":
                bad.append(f"{rel}: {pattern}")
    assert not bad, bad
