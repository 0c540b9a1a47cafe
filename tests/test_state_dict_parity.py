"""State-dict names, shapes and dtypes equal the official listings, line for line."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from occdepth_ros.cli.inspect import main as inspect_main
from occdepth_ros.model import OccDepth, load_preset


def model_lines(preset: str) -> list[str]:
    with torch.device("meta"):  # shapes and dtypes only, no memory for weights
        sd = OccDepth(load_preset(preset)).state_dict()
    return [f"{k}\t{tuple(v.shape)}\t{v.dtype}" for k, v in sd.items()]


@pytest.mark.parametrize("preset", ["kitti_b3_f32", "kitti_b7_f64"])
def test_state_dict_matches_official_listing(preset: str, official_tsv) -> None:
    want = official_tsv(preset).read_text().splitlines()
    got = model_lines(preset)
    assert len(got) == len(want)
    mismatches = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not mismatches, f"first mismatch at line {mismatches[0][0] + 1}: {mismatches[0][1:]}"


def test_inspect_keys_reproduces_the_listing(official_tsv) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert inspect_main(["--preset", "kitti_b3_f32", "--keys"]) == 0
    assert out.getvalue() == official_tsv("kitti_b3_f32").read_text()


@pytest.mark.parametrize(
    "preset, total, parts",
    [
        # parameter counts measured on the official code's models
        ("kitti_b3_f32", 40_859_886, (10_696_232, 24_813_712, 4_363_214, 986_728)),
        ("kitti_b7_f64", 150_581_846, (63_786_960, 68_882_640, 16_888_654, 1_023_592)),
    ],
)
def test_parameter_counts_match_official(preset: str, total: int, parts: tuple[int, ...]) -> None:
    with torch.device("meta"):
        m = OccDepth(load_preset(preset))
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(m) == total
    got = (count(m.net_rgb.encoder), count(m.net_rgb.decoder), count(m.net_3d_decoder), count(m.flosp_depth))
    assert got == parts


def test_official_buffers() -> None:
    """flosp_depth buffers as the released model defines them (0.4 m grid)."""
    m = OccDepth(load_preset("kitti_b3_f32"))
    assert torch.allclose(m.flosp_depth.voxel_size, torch.tensor([0.4, 0.4, 0.4]))
    assert torch.allclose(m.flosp_depth.voxel_coord, torch.tensor([0.2, -25.4, -1.8]))
    assert m.flosp_depth.voxel_num.tolist() == [128, 128, 16]
