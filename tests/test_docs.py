"""The docs hold together: every relative link points at a file that exists, the README stays
a short entry page, and the docs describe the project, not its tracker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("*/README.md"), *REPO.glob("export/*/README.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
README_MAX_LINES = 150


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    targets = [t for t in LINK.findall(doc.read_text()) if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert not missing, f"{doc.relative_to(REPO)} links to missing {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_tracker_references(doc: Path) -> None:
    hits = re.findall(r"(?i)\bissue #?\d+|(?<![\w&/])#\d+\b", doc.read_text())
    assert not hits, f"{doc.relative_to(REPO)}: {hits}"


def test_readme_is_an_entry_page() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    # the two commands for a fresh clone come first
    block = "\n".join(lines[:6])
    assert "make demo" in block and "make test" in block
