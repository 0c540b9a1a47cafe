"""Shared fixtures; tests never download anything."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "occdepth"


@pytest.fixture(scope="session")
def official_tsv():
    """Path of an official state-dict listing in ../shared (CI checks out shared/ beside the repo)."""

    def get(name: str) -> Path:
        path = SHARED / f"official_state_dict_{name}.tsv"
        if not path.is_file():
            pytest.skip(f"official listing {path} is not available (../shared/occdepth missing)")
        return path

    return get
