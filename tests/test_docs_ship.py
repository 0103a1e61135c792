"""The installed package cites only what it ships: no repository paths, no internal notes.

``docs/`` and ``benchmarks/`` are not installed with the package, and the design notes are
not published at all, so a docstring or comment that points at them points nowhere for a
user. Refer to a documentation page by its title ("the Derivations page of the
documentation", "the Large images page") instead.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bayes_restore"

#: what a shipped file must not mention (case-insensitive)
FORBIDDEN = re.compile(
    r"shared/"  # the notes folder outside the repository
    r"|design[ _-]?page|design\.md|design notes"  # the design notes themselves
    r"|reference notes"  # the source notes they were written from
    r"|\bdocs/[\w./-]*\.(?:md|rst)\b"  # documentation sources (not installed)
    r"|\bbenchmarks/[\w./-]*\.py\b",  # benchmark scripts (not installed)
    re.IGNORECASE,
)

#: files still being edited by others; remove an entry once the file is fixed (the xfail
#: is strict, so a fixed file listed here fails the suite until its entry is removed)
PENDING: dict[str, str] = {}


def _shipped_files() -> list[str]:
    """Every text file of the package, relative to it (compiled files left out)."""
    files = []
    for path in sorted(PACKAGE.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if path.suffix in {".pyc", ".pyo", ".so", ".pyd"}:
            continue
        files.append(path.relative_to(PACKAGE).as_posix())
    return files


def _param(name: str):
    marks = ()
    if name in PENDING:
        marks = (pytest.mark.xfail(strict=True, reason=PENDING[name]),)
    return pytest.param(name, id=name, marks=marks)


def test_pending_files_exist():
    missing = sorted(set(PENDING) - set(_shipped_files()))
    assert not missing, f"PENDING lists files that are gone (moved?): {missing}"


@pytest.mark.parametrize("name", [_param(name) for name in _shipped_files()])
def test_no_reference_outside_the_package(name):
    text = (PACKAGE / name).read_text(encoding="utf-8", errors="replace")
    hits = [
        f"{name}:{number}: {match.group(0)!r}"
        for number, line in enumerate(text.splitlines(), start=1)
        for match in FORBIDDEN.finditer(line)
    ]
    assert not hits, "cites what the package does not ship:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "text",
    [
        "see ``shared/design.md`` section 1",
        "the closed form of the design page",
        "in the conventions of the reference notes",
        "see ``docs/scale.md``",
        "measured by ``benchmarks/scale.py``",
    ],
)
def test_the_pattern_catches(text):
    assert FORBIDDEN.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "see the Derivations page of the documentation",
        "the shared parameters of all tiles",
        "the Large images page",
        "a benchmark of the scale",
    ],
)
def test_the_pattern_spares(text):
    assert not FORBIDDEN.search(text)


#: the documentation and the README speak to users too: no notes from outside the repository
NOTES = re.compile(r"shared/|design (page|notes)|design\.md|reference notes|references/",
                   re.IGNORECASE)


@pytest.mark.parametrize(
    "path", sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]), ids=lambda p: p.name)
def test_docs_cite_no_notes_outside_the_repository(path):
    hits = [f"{path.name}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if NOTES.search(line)]
    assert not hits, hits
