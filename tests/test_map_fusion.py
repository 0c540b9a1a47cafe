"""The node's MapFuser without ROS: odometry checks, frames without a pose, resets, clearing, and the
map's bird's-eye view and markers against hand-built scenes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from occdepth_ros.classes import load_class_set
from occdepth_ros.inference import Prediction
from occdepth_ros.model.config import GridConfig
from occdepth_ros.node.map_fusion import CLEARED, FRAME_CHANGED, WRONG_FRAME, MapFuser
from occdepth_ros.node.params import NodeParams
from occdepth_ros.node.pose_buffer import ADDED, INVALID, JUMP, MISSING
from occdepth_ros.resources import share_dir
from occdepth_ros.node.voxel_outputs import OCC_FREE, OCC_OCCUPIED, OCC_UNKNOWN, OccupiedVoxels, marker_groups

CS = load_class_set()
CAR, ROAD = CS.names.index("car"), CS.names.index("road")
GRID = GridConfig(origin=(0.0, -1.0, -1.0), dims=(4, 4, 4), voxel_size=0.5)  # x 0..2, y -1..1, z -1..1 m
S = 1_000_000_000
IDENTITY_Q = (0.0, 0.0, 0.0, 1.0)


def fuser(**params) -> MapFuser:
    p = dataclasses.replace(NodeParams(), fuse=True, map_extent_m=4.0, occupancy_min_z=-0.5,
                            occupancy_max_z=0.5, odom_wait_s=0.0, **params).resolved(share_dir()).validate()
    return MapFuser(p, GRID, CS)


def one_hot(labels: np.ndarray) -> np.ndarray:
    probs = np.zeros((CS.n_classes, *labels.shape), np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), 1.0, axis=0)
    return probs


def scene() -> Prediction:
    """Road on the bottom layer, a car voxel at grid (1, 2, 2) (centre 0.75, 0.25, 0.25 m),
    empty above; seen everywhere but the x = 3 slab."""
    labels = np.zeros(GRID.dims, np.uint8)
    labels[:, :, 0] = ROAD
    labels[1, 2, 2] = CAR
    seen = np.ones(GRID.dims, bool)
    seen[3] = False
    return Prediction(labels=labels, confidence=None, seen=seen, probs=one_hot(labels))


def test_odometry_for_another_frame_or_not_rigid_is_refused() -> None:
    f = fuser()
    assert f.add_odometry(S, "odom", "base_link", (0, 0, 0), IDENTITY_Q) == WRONG_FRAME
    assert f.add_odometry(S, "odom", "velodyne", (0, 0, 0), IDENTITY_Q) == ADDED
    assert f.map_frame == "odom"
    assert f.add_odometry(2 * S, "map", "velodyne", (0, 0, 0), IDENTITY_Q) == FRAME_CHANGED
    assert f.add_odometry(2 * S, "odom", "velodyne", (0, 0, 0), (0, 0, 0, 0)) == INVALID
    assert (f.counters.wrong_frame, f.counters.frame_changed, f.buffer.counters.invalid) == (1, 1, 1)


def test_a_frame_without_a_pose_is_not_fused_and_says_why() -> None:
    f = fuser()
    result = f.fuse(S, scene())
    assert result.status == MISSING and result.outputs is None and "no odometry" in result.reason
    assert (f.counters.frames_unfused, f.counters.frames_fused) == (1, 0) and f.map.origin is None
    with pytest.raises(ValueError, match="probabilities"):
        f.fuse(S, dataclasses.replace(scene(), probs=None))


def test_fused_map_voxels_bev_and_reset_on_a_jump() -> None:
    f = fuser(odom_jump_m=1.0)
    f.add_odometry(S, "odom", "velodyne", (0, 0, 0), IDENTITY_Q)
    result = f.fuse(S, scene())
    assert result.status == "fused" and not result.reset
    out = result.outputs
    assert out.frame_id == "odom" and out.voxels is not None
    # occupied map voxels: the car and the seen road (x < 1.5 m), centres in odom = grid frame here
    got = {(tuple(np.round(c, 6)), int(l)) for c, l in zip(out.voxels.centres, out.voxels.labels)}
    road = {((x + 0.25, y + 0.25, -0.75), ROAD) for x in (0.0, 0.5, 1.0) for y in (-1.0, -0.5, 0.0, 0.5)}
    assert got == road | {((0.75, 0.25, 0.25), CAR)}
    # bird's-eye view: the window is 8 x 8 cells of 0.5 m around the robot; band -0.5..0.5 m
    bev = out.bev
    assert (bev.width, bev.height, bev.resolution) == (8, 8, 0.5)
    col = lambda x: int(np.floor((x - bev.origin[0]) / 0.5))  # noqa: E731
    row = lambda y: int(np.floor((y - bev.origin[1]) / 0.5))  # noqa: E731
    assert bev.data[row(0.25), col(0.75)] == OCC_OCCUPIED  # the car
    assert bev.data[row(-0.75), col(0.25)] == OCC_FREE  # seen, empty in the band (road is below it)
    assert bev.data[row(0.25), col(1.75)] == OCC_UNKNOWN  # the unseen slab
    assert bev.data[row(0.25), col(-0.25)] == OCC_UNKNOWN  # behind the grid
    assert int((bev.data == OCC_OCCUPIED).sum()) == 1
    # a jump: the map restarts from the next frame alone
    assert f.add_odometry(2 * S, "odom", "velodyne", (1.5, 0, 0), IDENTITY_Q) == JUMP
    again = f.fuse(2 * S, scene())
    assert "jumped 1.50 m" in again.reset and f.map.resets == 1
    moved = {(tuple(np.round(c, 6)), int(l)) for c, l in zip(again.outputs.voxels.centres, again.outputs.voxels.labels)}
    assert moved == {((x + 1.5, y, z), c) for (x, y, z), c in got}



def test_a_clear_request_waits_for_the_next_fused_frame() -> None:
    f = fuser(odom_jump_m=1.0)
    f.add_odometry(S, "odom", "velodyne", (0, 0, 0), IDENTITY_Q)
    first = f.fuse(S, scene())
    held = len(first.outputs.voxels.labels)
    f.request_clear()
    assert f.fuse(3 * S, scene()).status == MISSING  # no pose: the request waits, the map stays
    assert f.map.resets == 0 and f.counters.clears == 0 and len(f.map.occupied()[1]) == held
    f.add_odometry(2 * S, "odom", "velodyne", (0.5, 0, 0), IDENTITY_Q)  # a step, not a jump
    cleared = f.fuse(2 * S, scene())
    assert cleared.reset == CLEARED and f.map.resets == 1 and f.counters.clears == 1
    # the map holds the new frame alone: the first frame's voxels the new one does not cover are gone
    alone = fuser()
    alone.add_odometry(2 * S, "odom", "velodyne", (0.5, 0, 0), IDENTITY_Q)
    expected = alone.fuse(2 * S, scene()).outputs.voxels
    assert np.array_equal(cleared.outputs.voxels.centres, expected.centres)
    assert np.array_equal(cleared.outputs.voxels.labels, expected.labels)
    # with a jump at the same time both reasons are named, and the map resets once
    f.request_clear()
    f.add_odometry(4 * S, "odom", "velodyne", (3.0, 0, 0), IDENTITY_Q)
    both = f.fuse(4 * S, scene())
    assert "jumped" in both.reset and both.reset.endswith("; " + CLEARED)
    assert f.map.resets == 2 and f.counters.clears == 2


def test_map_markers_keep_the_voxels_nearest_the_robot() -> None:
    voxels = OccupiedVoxels(centres=np.array([[0.0, 0, 0], [10.0, 0, 0], [11.0, 0, 0]]),
                            labels=np.array([CAR, CAR, ROAD], np.uint8), confidence=None)
    groups = marker_groups(voxels, CS, max_voxels=2, centre=np.array([10.5, 0.0, 0.0]))
    kept = sorted(float(c[0]) for g in groups.groups for c in g.centres)
    assert kept == [10.0, 11.0] and groups.dropped == 1
    assert sorted(float(c[0]) for g in marker_groups(voxels, CS, max_voxels=2).groups for c in g.centres) == [0.0, 10.0]
