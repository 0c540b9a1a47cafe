"""KITTI odometry sequence reader on a tiny fake sequence written to tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occdepth_ros.classes import load_class_set
from occdepth_ros.data.kitti_odometry import (
    DEPTH_SCALE,
    KittiSequence,
    read_depth_png,
    sequence_dirs,
    write_depth_png,
)
from occdepth_ros.data.semantic_kitti import remap_to_target, write_frame_voxels
from occdepth_ros.geometry.calib import write_kitti_calib

GRID = (4, 4, 8)
FRAMES = ["000000", "000001", "000002", "000005"]
LABELLED = ["000000", "000005"]


def _poses(n: int) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        c, s = np.cos(0.1 * i), np.sin(0.1 * i)
        poses[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        poses[i, :3, 3] = [0.5 * i, -0.1 * i, 2.0 * i]
    return poses


def make_sequence(root: Path, seq: str = "08") -> dict:
    """Write a sequence with images, calib, times, poses, voxels and depth."""
    sdir = root / "sequences" / seq
    rng = np.random.default_rng(0)
    for cam in ("image_2", "image_3"):
        (sdir / cam).mkdir(parents=True)
        for f in reversed(FRAMES):  # write out of order: frame_ids must sort
            Image.fromarray(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)).save(sdir / cam / f"{f}.png")
    P2 = np.array([[700.0, 0, 600, 45.0], [0, 700, 180, 0.1], [0, 0, 1, 0.003]])
    P3 = P2.copy()
    P3[0, 3] = -340.0
    Tr = np.array([[0.0, -1, 0, 0.1], [0, 0, -1, -0.05], [1, 0, 0, -0.3]])
    write_kitti_calib(sdir / "calib.txt", {"P0": P2, "P1": P3, "P2": P2, "P3": P3, "Tr": Tr})
    times = np.array([0.0, 0.1036, 0.2073, 0.5181])
    (sdir / "times.txt").write_text("".join(f"{t:e}\n" for t in times))
    poses = _poses(len(FRAMES))
    (sdir / "poses.txt").write_text(
        "".join(" ".join(f"{v:.9e}" for v in p[:3].reshape(-1)) + "\n" for p in poses)
    )
    raws = {}
    for f in LABELLED:
        raw = rng.choice(np.array([0, 1, 10, 40, 70, 252]), size=GRID).astype(np.uint16)
        invalid = rng.random(GRID) < 0.25
        write_frame_voxels(sdir / "voxels", f, raw, invalid, grid=GRID)
        raws[f] = (raw, invalid)
    depth = rng.uniform(2.0, 80.0, size=(6, 10)).astype(np.float32)
    depth[0, :3] = 0.0  # no depth
    write_depth_png(sdir / "depth" / "000001.png", depth)
    calib = {"P2": P2, "P3": P3, "Tr": Tr}
    return {"calib": calib, "times": times, "poses": poses, "raws": raws, "depth": depth}


@pytest.fixture()
def fake(tmp_path):
    info = make_sequence(tmp_path)
    (tmp_path / "sequences" / "00").mkdir()
    return tmp_path, info


def test_sequence_dirs(fake, tmp_path):
    root, _ = fake
    assert [p.name for p in sequence_dirs(root)] == ["00", "08"]
    with pytest.raises(FileNotFoundError, match="sequences"):
        sequence_dirs(tmp_path / "nowhere")


def test_frames_images_calib_times_poses(fake):
    root, info = fake
    seq = KittiSequence(root, "08")
    assert seq.frame_ids() == FRAMES
    left, right = seq.image_paths(5)
    assert left == root / "sequences/08/image_2/000005.png"
    assert right == root / "sequences/08/image_3/000005.png"
    assert seq.image_paths("000001")[0].name == "000001.png"
    calib = seq.calib()
    for key in ("P2", "P3", "Tr"):
        np.testing.assert_allclose(calib[key], info["calib"][key], rtol=1e-10)
    times = seq.times()
    assert times.shape == (4,)
    np.testing.assert_allclose(times, info["times"], rtol=1e-6)
    poses = seq.poses()
    assert poses.shape == (4, 4, 4) and seq.has_poses()
    np.testing.assert_allclose(poses, info["poses"], atol=1e-8)


def test_int_sequence_name(fake):
    root, _ = fake
    assert KittiSequence(root, 8).sequence == "08"


def test_voxels_and_target(fake):
    root, info = fake
    seq = KittiSequence(root, "08")
    assert seq.labelled_frames() == LABELLED
    assert seq.voxel_path(5, "label") == root / "sequences/08/voxels/000005.label"
    assert seq.voxel_path("000005", ".invalid").name == "000005.invalid"
    assert all(seq.voxel_path(5, ext).is_file() for ext in ("bin", "label", "invalid", "occluded"))
    with pytest.raises(ValueError, match="png"):
        seq.voxel_path(5, "png")
    cs = load_class_set()
    raw, invalid = info["raws"]["000005"]
    assert np.array_equal(seq.read_target(5, cs, grid=GRID), remap_to_target(raw, invalid, cs))


def test_depth_round_trip(fake, tmp_path):
    root, info = fake
    seq = KittiSequence(root, "08")
    depth = seq.read_depth(1)
    assert depth.dtype == np.float32 and depth.shape == (6, 10)
    assert np.all(depth[0, :3] == 0)
    # stored as round(m * 256): error at most half a step
    assert np.max(np.abs(depth - info["depth"])) <= 0.5 / DEPTH_SCALE + 1e-6
    # raw PNG really is 16-bit with value = metres * 256
    with Image.open(seq.depth_path(1)) as img:
        raw = np.asarray(img)
    assert raw.dtype in (np.uint16, np.int32)
    np.testing.assert_allclose(raw[2, 5] / DEPTH_SCALE, depth[2, 5])

    bad = np.array([[1.0, np.nan, -3.0, 300.0, np.inf]])  # only 1.0 is storable
    path = tmp_path / "x" / "d.png"
    KittiSequence.write_depth(path, bad)
    assert read_depth_png(path).tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="2D"):
        write_depth_png(path, np.zeros((2, 2, 2)))


def test_depth_under_separate_root(fake, tmp_path):
    root, info = fake
    other = tmp_path / "teacher"
    write_depth_png(other / "sequences" / "08" / "depth" / "000002.png", info["depth"])
    seq = KittiSequence(root, "08", depth_root=other)
    assert seq.read_depth(2).shape == (6, 10)


def test_missing_files_are_named(fake, tmp_path):
    root, _ = fake
    with pytest.raises(FileNotFoundError, match="sequences/99"):
        KittiSequence(root, "99")
    empty = KittiSequence(root, "00")
    with pytest.raises(FileNotFoundError, match="image_2"):
        empty.frame_ids()
    with pytest.raises(FileNotFoundError, match="calib.txt"):
        empty.calib()
    with pytest.raises(FileNotFoundError, match="times.txt"):
        empty.times()
    with pytest.raises(FileNotFoundError, match="poses.txt"):
        empty.poses()
    assert not empty.has_poses() and empty.labelled_frames() == []
    seq = KittiSequence(root, "08")
    with pytest.raises(FileNotFoundError, match="000003.png"):
        seq.image_paths(3)
    with pytest.raises(FileNotFoundError, match=r"depth/000000\.png"):
        seq.read_depth(0)
    with pytest.raises(FileNotFoundError, match=r"000001\.label"):
        seq.read_target(1, grid=GRID)


def test_malformed_text_files(fake):
    root, _ = fake
    sdir = root / "sequences" / "08"
    (sdir / "poses.txt").write_text("1 0 0 0 0 1 0 0 0 0 1\n")  # 11 numbers
    with pytest.raises(ValueError, match=r"poses.txt:1: 11 numbers, expected 12"):
        KittiSequence(root, "08").poses()
    (sdir / "times.txt").write_text("0.0\nabc\n")
    with pytest.raises(ValueError, match=r"times.txt:2"):
        KittiSequence(root, "08").times()
