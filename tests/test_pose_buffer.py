"""The node's odometry pose buffer: interpolation at image stamps, late / missing odometry,
out-of-order stamps, jumps and loops, against hand-computed float64 poses."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from occdepth_ros.geometry.poses import interpolate_pose, pose_distance
from occdepth_ros.node.pose_buffer import (
    ADDED, HELD, INTERPOLATED, INVALID, JUMP, MISSING, OUT_OF_ORDER, RESTART, PoseBuffer, pose_from_odometry,
)

S = 1_000_000_000
C225, S225 = 0.9238795325112867, 0.3826834323650898  # cos, sin of 22.5 degrees (by hand: sqrt(2 +- sqrt 2) / 2)


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = x, y, z
    return T


def buffer(**kw) -> PoseBuffer:
    args = {"max_age_ns": S // 2, "jump_m": 5.0, "jump_rad": 0.5, "restart_back_ns": S}
    args.update(kw)
    return PoseBuffer(**args)


def test_interpolates_translation_and_rotation_at_the_image_stamp() -> None:
    buf = buffer(max_age_ns=S, jump_rad=2.0)
    assert buf.add(1 * S, np.eye(4)) == ADDED
    assert buf.add(2 * S, pose(x=2.0, yaw_deg=90.0)) == ADDED
    got = buf.pose_at(S + S // 4)  # a quarter of the way: 22.5 degrees, 0.5 m
    expected = np.array([[C225, -S225, 0, 0.5], [S225, C225, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert got.status == INTERPOLATED and got.generation == 0
    np.testing.assert_allclose(got.T, expected, rtol=0, atol=1e-15)
    exact = buf.pose_at(2 * S)
    np.testing.assert_array_equal(exact.T, pose(x=2.0, yaw_deg=90.0))


def test_interpolation_takes_the_short_way_and_composes_with_the_start_rotation() -> None:
    T0, T1 = pose(yaw_deg=170.0), pose(yaw_deg=-170.0)  # 20 degrees apart across +-180
    mid = interpolate_pose(T0, T1, 0.5)
    np.testing.assert_allclose(mid, pose(yaw_deg=180.0), atol=1e-15)
    # about another axis than z, on top of a rotated start: R0 Rx(alpha * 60 deg)
    R0 = pose(yaw_deg=30.0)
    Rx60 = np.eye(4)
    Rx60[1:3, 1:3] = [[0.5, -math.sqrt(3) / 2], [math.sqrt(3) / 2, 0.5]]
    Rx20 = np.eye(4)
    Rx20[1:3, 1:3] = [[math.cos(math.radians(20)), -math.sin(math.radians(20))],
                      [math.sin(math.radians(20)), math.cos(math.radians(20))]]
    np.testing.assert_allclose(interpolate_pose(R0, R0 @ Rx60, 1 / 3), R0 @ Rx20, atol=1e-15)
    half_turn = interpolate_pose(np.eye(4), pose(yaw_deg=180.0), 0.5)  # the axis taken from R + I
    assert pose_distance(np.eye(4), half_turn) == pytest.approx((0.0, math.pi / 2), abs=1e-12)
    assert abs(half_turn[2, 2] - 1.0) < 1e-12  # still about z


def test_pose_distance_by_hand() -> None:
    metres, radians = pose_distance(pose(x=1.0, y=2.0), pose(x=4.0, y=6.0, yaw_deg=-30.0))
    assert metres == pytest.approx(5.0, abs=1e-15) and radians == pytest.approx(math.pi / 6, abs=1e-12)


def test_missing_odometry_says_why() -> None:
    buf = buffer()
    first = buf.pose_at(5 * S)
    assert (first.status, first.T) == (MISSING, None) and "no odometry" in first.reason
    buf.add(1 * S, pose())
    buf.add(3 * S, pose(x=1.0))  # a 2 s gap, max age 0.5 s
    gap = buf.pose_at(2 * S)
    assert gap.status == MISSING and "gap of 2.000 s" in gap.reason
    old = buf.pose_at(S // 2)
    assert old.status == MISSING and "older than the oldest" in old.reason
    far = buf.pose_at(4 * S)
    assert far.status == MISSING and "1.000 s older than the image" in far.reason
    assert buf.counters.missing == 4
    near_gap = buf.pose_at(S + S // 4)  # 0.25 s after a pose but 1.75 s before the next
    assert near_gap.status == MISSING


def test_late_odometry_holds_the_newest_pose_after_the_wait() -> None:
    buf = buffer()
    buf.add(1 * S, pose(x=1.0))
    held = buf.pose_at(1 * S + S // 10)
    assert held.status == HELD and "0.100 s" in held.reason
    np.testing.assert_array_equal(held.T, pose(x=1.0))
    assert buf.counters.late == 1


def test_a_waiting_lookup_takes_odometry_that_arrives_meanwhile() -> None:
    buf = buffer()
    buf.add(1 * S, pose(x=1.0))
    later = threading.Timer(0.2, lambda: buf.add(1 * S + S // 5, pose(x=3.0)))
    later.start()
    got = buf.pose_at(1 * S + S // 10, wait_s=30.0)  # returns when the newer pose is in
    later.join()
    assert got.status == INTERPOLATED
    np.testing.assert_allclose(got.T, pose(x=2.0), atol=1e-15)
    assert buf.counters.late == 0


def test_out_of_order_and_repeated_stamps_are_dropped_and_counted() -> None:
    buf = buffer()
    buf.add(1 * S, pose(x=0.0))
    buf.add(2 * S - S // 2, pose(x=1.0))
    assert buf.add(1 * S + S // 4, pose(x=9.0)) == OUT_OF_ORDER
    assert buf.add(2 * S - S // 2, pose(x=9.0)) == OUT_OF_ORDER
    assert buf.counters.out_of_order == 2 and len(buf) == 2
    np.testing.assert_allclose(buf.pose_at(1 * S + S // 4).T, pose(x=0.5), atol=1e-15)


def test_a_jump_restarts_the_buffer_and_the_generation() -> None:
    buf = buffer()
    buf.add(1 * S, pose())
    assert buf.add(1 * S + S // 10, pose(x=4.9)) == ADDED  # under 5 m
    assert buf.add(1 * S + S // 5, pose(x=10.0)) == JUMP  # 5.1 m
    assert (buf.generation, buf.counters.jumps, len(buf)) == (1, 1, 1)
    assert buf.counters.last_restart == "odometry jumped 5.10 m, 0.0 deg"
    before = buf.pose_at(1 * S + S // 10 + 1)  # between the poses across the jump: never interpolated
    assert before.status == MISSING and before.generation == 1
    assert buf.add(1 * S + 3 * S // 10, pose(x=10.5, yaw_deg=28.0)) == ADDED  # 0.489 rad: under 0.5
    np.testing.assert_allclose(buf.pose_at(1 * S + S // 4).T, pose(x=10.25, yaw_deg=14.0), atol=1e-14)


def test_rotation_jump_threshold() -> None:
    buf = buffer(jump_rad=math.radians(20.0))
    buf.add(1 * S, pose())
    assert buf.add(2 * S, pose(yaw_deg=19.9)) == ADDED
    assert buf.add(3 * S, pose(yaw_deg=40.0)) == JUMP
    assert buf.generation == 1


def test_stamps_far_back_restart_instead_of_dropping_everything() -> None:
    buf = buffer()
    buf.add(10 * S, pose())
    buf.add(11 * S, pose(x=1.0))
    assert buf.add(2 * S, pose()) == RESTART  # a bag loop: 9 s back, restart_back 1 s
    assert (buf.generation, buf.counters.restarts, len(buf)) == (1, 1, 1)
    assert "went back 9.000 s" in buf.counters.last_restart
    assert buf.pose_at(2 * S).status == INTERPOLATED
    no_restart = buffer(restart_back_ns=None)
    no_restart.add(10 * S, pose())
    assert no_restart.add(2 * S, pose()) == OUT_OF_ORDER


def test_invalid_poses_are_refused() -> None:
    buf = buffer()
    bad = pose()
    bad[0, 3] = float("nan")
    assert buf.add(1 * S, bad) == INVALID and buf.add(0, pose()) == INVALID and buf.add(1 * S, np.eye(3)) == INVALID
    assert buf.counters.invalid == 3 and len(buf) == 0


def test_history_is_bounded() -> None:
    buf = buffer(history_ns=2 * S, max_poses=15)
    for i in range(100):
        buf.add((i + 1) * S // 10, pose(x=i * 0.01))
    assert len(buf) == 15  # the count cap (2 s at 10 Hz would keep 21)
    buf2 = buffer(history_ns=S)
    for i in range(100):
        buf2.add((i + 1) * S // 10, pose(x=i * 0.01))
    assert len(buf2) == 11  # stamps 9.0 .. 10.0 s


def test_pose_from_odometry_fields() -> None:
    h = math.sqrt(0.5)
    T = pose_from_odometry((1.0, 2.0, 3.0), (0.0, 0.0, h, h))  # 90 degrees about z
    np.testing.assert_allclose(T, [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-15)
    assert pose_from_odometry((0, 0, 0), (0, 0, 0, 2.0)) is None  # not a unit quaternion
    assert pose_from_odometry((0, 0, 0), (0, 0, 0, 0)) is None  # an unset Pose
    assert pose_from_odometry((float("inf"), 0, 0), (0, 0, 0, 1)) is None
    almost = pose_from_odometry((0, 0, 0), (0, 0, 0, 1.001))  # normalised
    np.testing.assert_allclose(almost, np.eye(4), atol=1e-15)
