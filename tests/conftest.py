"""Shared fixtures; tests never download anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.dds import localhost_only

DATA = Path(__file__).resolve().parent / "data"

localhost_only()


@pytest.fixture(scope="session")
def official_tsv():
    """Path of an official state-dict listing (facts about the released checkpoints, shipped in tests/data)."""

    def get(name: str) -> Path:
        return DATA / f"official_state_dict_{name}.tsv"

    return get


@pytest.fixture(scope="session")
def two_frame_synth(tmp_path_factory) -> Path:
    """A generated KITTI-layout root: sequence 00, two labelled 96x320 frames (seed 5)."""
    from occdepth_ros.data.synth.cli import main as synth_main

    root = tmp_path_factory.mktemp("synth2f")
    assert synth_main(["--out", str(root), "--sequences", "00", "--frames", "2", "--seed", "5",
                       "--voxel-every", "1", "--image-size", "96", "320"]) == 0
    return root
