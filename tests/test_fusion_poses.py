"""Poses for the temporal map: KITTI camera poses to grid poses, interpolation against
float64 hand-computed cases, distances, poses.txt reading, injected odometry drift."""

from __future__ import annotations

import numpy as np
import pytest

from occdepth_ros.data.kitti_odometry import read_poses
from occdepth_ros.fusion.odometry_noise import DRIFT_DISTANCE_FRACTION, DRIFT_YAW_RAD_PER_M, drifted_poses
from occdepth_ros.geometry.poses import (PoseError, grid_poses_from_camera_poses, interpolate_pose, invert_rigid,
                                         pose_distance)

# KITTI's Tr for a velodyne (x fwd, y left, z up) 0.27 m behind and 0.08 m above camera 0.
TR = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]])


def rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    T = np.eye(4)
    T[:3, :3] = R
    return T


def rodrigues_slerp(R0: np.ndarray, R1: np.ndarray, alpha: float) -> np.ndarray:
    """Independent reference: R0 @ exp(alpha * log(R0^T R1)) by axis-angle, float64."""
    rel = R0.T @ R1
    angle = np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1))
    axis = np.array([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]]) / (2 * np.sin(angle))
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = alpha * angle
    return R0 @ (np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx)


def test_camera_moving_forward_moves_the_grid_forward_in_x() -> None:
    cam = np.tile(np.eye(4), (3, 1, 1))
    cam[1, 2, 3] = 1.0  # camera 0 one metre along its optical axis
    cam[2] = cam[1] @ rot("y", np.pi / 2)  # then turned right (about camera y, down)
    grid = grid_poses_from_camera_poses(cam, TR)
    np.testing.assert_allclose(grid[0], np.eye(4), atol=1e-12)  # odom = the first grid frame
    np.testing.assert_allclose(grid[1][:3, 3], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(grid[1][:3, :3], np.eye(3), atol=1e-12)
    # Turning right about camera y (down) is a yaw of -90 degrees about grid z (up).
    np.testing.assert_allclose(grid[2][:3, :3], rot("z", -np.pi / 2)[:3, :3], atol=1e-12)
    # The camera sits 0.27 m ahead of the velodyne (and 0.08 m below): it is at (1.27, 0, -0.08)
    # in frame 2, and the velodyne, behind the camera now facing -y, at (1.27, 0.27, 0).
    np.testing.assert_allclose(grid[2][:3, 3], [1.27, 0.27, 0.0], atol=1e-12)
    p_grid = np.array([2.0, 1.0, 0.5, 1.0])  # a point in frame 2's grid frame, checked via camera frames
    via_camera = np.linalg.inv(TR) @ cam[2] @ TR @ p_grid
    np.testing.assert_allclose(grid[2] @ p_grid, via_camera, atol=1e-12)


def test_grid_poses_accept_3x4_tr_and_refuse_non_rigid() -> None:
    cam = np.tile(np.eye(4), (2, 1, 1))
    np.testing.assert_allclose(grid_poses_from_camera_poses(cam, TR[:3]), grid_poses_from_camera_poses(cam, TR))
    bad = cam.copy()
    bad[1, :3, :3] *= 2.0
    with pytest.raises(PoseError, match="proper rotation"):
        grid_poses_from_camera_poses(bad, TR)
    with pytest.raises(PoseError, match=r"\(N, 4, 4\)"):
        grid_poses_from_camera_poses(np.eye(4), TR)


def test_interpolation_hand_computed_yaw_case() -> None:
    T0 = np.eye(4)
    T1 = rot("z", np.pi / 2)
    T1[:3, 3] = [2.0, 4.0, -1.0]
    T = interpolate_pose(T0, T1, 0.25)
    c, s = np.cos(np.pi / 8), np.sin(np.pi / 8)  # a quarter of 90 degrees
    np.testing.assert_allclose(T[:3, :3], [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [0.5, 1.0, -0.25], atol=1e-12)
    np.testing.assert_allclose(interpolate_pose(T0, T1, 0.0), T0, atol=1e-12)
    np.testing.assert_allclose(interpolate_pose(T0, T1, 1.0), T1, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.8])
def test_interpolation_matches_axis_angle_reference(alpha: float) -> None:
    T0 = rot("z", 0.3) @ rot("x", -0.2)
    T0[:3, 3] = [1.0, -2.0, 0.5]
    T1 = rot("y", 1.1) @ rot("z", 2.5)
    T1[:3, 3] = [-3.0, 4.0, 2.0]
    T = interpolate_pose(T0, T1, alpha)
    np.testing.assert_allclose(T[:3, :3], rodrigues_slerp(T0[:3, :3], T1[:3, :3], alpha), atol=1e-10)
    np.testing.assert_allclose(T[:3, 3], (1 - alpha) * T0[:3, 3] + alpha * T1[:3, 3], atol=1e-12)
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])


def test_interpolation_takes_the_short_way_round() -> None:
    T0, T1 = rot("z", np.deg2rad(170)), rot("z", np.deg2rad(-170))
    mid = interpolate_pose(T0, T1, 0.5)
    np.testing.assert_allclose(mid[:3, :3], rot("z", np.pi)[:3, :3], atol=1e-10)


def test_pose_distance() -> None:
    T0 = np.eye(4)
    T1 = rot("x", 0.4)
    T1[:3, 3] = [3.0, 4.0, 0.0]
    metres, radians = pose_distance(T0, T1)
    assert metres == pytest.approx(5.0, abs=1e-12) and radians == pytest.approx(0.4, abs=1e-12)
    assert pose_distance(T1, T1) == pytest.approx((0.0, 0.0), abs=1e-7)
    np.testing.assert_allclose(invert_rigid(T1) @ T1, np.eye(4), atol=1e-12)


def test_read_poses_round_trip(tmp_path) -> None:
    poses = np.stack([rot("y", 0.1 * i) for i in range(3)])
    poses[:, 2, 3] = [0.0, 1.0, 2.5]
    path = tmp_path / "poses.txt"
    path.write_text("\n".join(" ".join(f"{v:.12e}" for v in p[:3].reshape(-1)) for p in poses) + "\n")
    np.testing.assert_allclose(read_poses(path), poses, atol=1e-12)
    path.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="expected 12"):
        read_poses(path)


def test_drift_is_one_percent_of_distance_and_half_a_degree_per_10_m() -> None:
    n, step = 201, 0.5  # 100 m straight ahead
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3] = np.arange(n) * step
    noisy = drifted_poses(poses, seed=4)
    # Heading error after 100 m: 10 x 0.5 degrees (the sign is seeded).
    yaw = np.arctan2(noisy[-1][1, 0], noisy[-1][0, 0])
    assert abs(yaw) == pytest.approx(DRIFT_YAW_RAD_PER_M * 100.0, rel=1e-9)
    assert abs(yaw) == pytest.approx(np.deg2rad(5.0), rel=1e-9)
    # Distance travelled is scaled by 1 +- 1 %.
    travelled = np.sum(np.linalg.norm(np.diff(noisy[:, :3, 3], axis=0), axis=1))
    assert abs(travelled - 100.0) == pytest.approx(DRIFT_DISTANCE_FRACTION * 100.0, rel=1e-9)
    np.testing.assert_allclose(noisy[0], poses[0])
    np.testing.assert_allclose(drifted_poses(poses, seed=4), noisy)  # seeded: repeatable
