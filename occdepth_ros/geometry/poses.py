"""Rigid poses: the grid frame's pose in the odometry frame, interpolation and distances.

Conventions (4x4 homogeneous, float64): ``T_a_from_b`` maps coordinates in frame b to
frame a (``p_a = T_a_from_b @ p_b``).

KITTI ``poses.txt`` holds, per frame i, ``T_c0_from_ci``: camera 0 of frame i in camera 0 of
frame 0 (x right, y down, z forward). The voxel grid (the velodyne frame: x forward, y left,
z up) relates to camera 0 through calib ``Tr`` = ``T_cam0_from_grid`` (our calibration's
``T_grid_to_ref``). The **odometry frame** used by the temporal map is the *grid frame of the
first frame*: z up, so the map's height band is an axis of the map. Hence

    T_odom_from_grid[i] = inv(Tr) @ poses[i] @ Tr.
"""

from __future__ import annotations

import numpy as np


class PoseError(ValueError):
    """A pose is not a finite rigid transform."""


def check_rigid(T: np.ndarray, name: str, error: type[ValueError] = PoseError) -> np.ndarray:
    """``T`` (3x4 or 4x4, or a stack of them) as float64 4x4 rigid transforms; ``error``
    (naming ``name``) when a value is not finite, the bottom row is not [0, 0, 0, 1] or the
    rotation part is not a proper rotation."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] == (3, 4):
        T = np.concatenate([T, np.broadcast_to([0.0, 0.0, 0.0, 1.0], T.shape[:-2] + (1, 4))], axis=-2)
    if T.shape[-2:] != (4, 4) or not np.all(np.isfinite(T)):
        raise error(f"{name}: expected a finite 3x4 or 4x4 transform, got shape {T.shape}")
    if not np.allclose(T[..., 3, :], [0.0, 0.0, 0.0, 1.0]):
        raise error(f"{name}: bottom row must be [0, 0, 0, 1], got {T[..., 3, :].tolist()}")
    R = T[..., :3, :3]
    if not np.allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-4) \
            or np.any(np.linalg.det(R) <= 0):
        raise error(f"{name}: rotation part is not a proper rotation")
    return T


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transform(s) (..., 4, 4) without a general matrix inverse."""
    T = np.asarray(T, dtype=np.float64)
    out = np.zeros_like(T)
    R = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = R
    out[..., :3, 3] = -(R @ T[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def grid_poses_from_camera_poses(cam0_poses: np.ndarray, T_cam0_from_grid: np.ndarray) -> np.ndarray:
    """(N, 4, 4) ``T_odom_from_grid`` per frame from KITTI camera-0 poses (N, 4, 4) and
    ``Tr`` = ``T_cam0_from_grid``; odom = the grid frame of the first frame (see module)."""
    P = check_rigid(cam0_poses, "camera poses")
    if P.ndim != 3:
        raise PoseError(f"camera poses: expected (N, 4, 4), got {P.shape}")
    Tr = check_rigid(T_cam0_from_grid, "T_cam0_from_grid")
    return invert_rigid(Tr) @ P @ Tr


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a proper rotation matrix, w >= 0 (Shepperd's method:
    the largest of the four squared components is taken from the diagonal, so no branch
    divides by a small number). (x, y, z, w) is the order of geometry_msgs/Quaternion."""
    R = np.asarray(R, dtype=np.float64)
    t = np.trace(R)
    squares = np.array([1 + 2 * R[0, 0] - t, 1 + 2 * R[1, 1] - t, 1 + 2 * R[2, 2] - t, 1 + t])  # 4x^2 .. 4w^2
    i = int(np.argmax(squares))
    q = np.empty(4)
    q[i] = np.sqrt(squares[i]) / 2
    # off-diagonal sums and differences give the products of pairs of components
    xy, xz, yz = (R[0, 1] + R[1, 0]) / 4, (R[0, 2] + R[2, 0]) / 4, (R[1, 2] + R[2, 1]) / 4
    wx, wy, wz = (R[2, 1] - R[1, 2]) / 4, (R[0, 2] - R[2, 0]) / 4, (R[1, 0] - R[0, 1]) / 4
    pairs = {0: (None, xy, xz, wx), 1: (xy, None, yz, wy), 2: (xz, yz, None, wz), 3: (wx, wy, wz, None)}[i]
    for j, product in enumerate(pairs):
        if j != i:
            q[j] = product / q[i]
    return q if q[3] >= 0 else -q


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w) (normalised first)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions along the shorter arc."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 1.0 - 1e-12:  # (nearly) the same rotation: linear is exact to rounding
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(min(dot, 1.0))
    s = np.sin(theta)
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / s


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """The pose a fraction ``alpha`` of the way from ``T0`` to ``T1``: rotation by slerp,
    translation linear (alpha 0 gives T0, 1 gives T1; outside [0, 1] extrapolates)."""
    T0, T1 = check_rigid(T0, "T0"), check_rigid(T1, "T1")
    if not np.isfinite(alpha):
        raise PoseError(f"alpha must be finite, got {alpha}")
    out = np.eye(4)
    out[:3, :3] = quaternion_to_rotation(slerp(rotation_to_quaternion(T0[:3, :3]),
                                               rotation_to_quaternion(T1[:3, :3]), float(alpha)))
    out[:3, 3] = (1.0 - alpha) * T0[:3, 3] + alpha * T1[:3, 3]
    return out


def rotation_angle(R: np.ndarray) -> float:
    """Angle (radians, in [0, pi]) of a 3x3 rotation."""
    c = (np.trace(np.asarray(R, np.float64)) - 1.0) / 2.0
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


def pose_distance(T0: np.ndarray, T1: np.ndarray) -> tuple[float, float]:
    """(metres between the origins, radians of the relative rotation) of two poses."""
    T0, T1 = check_rigid(T0, "T0"), check_rigid(T1, "T1")
    rel = invert_rigid(T0) @ T1
    return float(np.linalg.norm(T1[:3, 3] - T0[:3, 3])), rotation_angle(rel[:3, :3])
