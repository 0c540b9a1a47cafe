"""Odometry drift injected into a pose sequence, to measure how the map degrades.

Drift grows with distance travelled: each step's translation is scaled by
``1 + scale_error`` (a seeded per-run error of ``distance_fraction`` in size: 1 % of the
distance) and the heading turns by ``yaw_per_m`` radians per metre (0.5 degrees per 10 m),
with a seeded sign. The errors accumulate as they would in a wheel or visual odometry.
"""

from __future__ import annotations

import numpy as np

from ..geometry.poses import invert_rigid

DRIFT_DISTANCE_FRACTION = 0.01  # 1 % of the distance travelled
DRIFT_YAW_RAD_PER_M = np.deg2rad(0.5) / 10.0  # 0.5 degrees per 10 m


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.eye(4)
    R[:2, :2] = [[c, -s], [s, c]]
    return R


def drifted_poses(poses: np.ndarray, seed: int = 0, distance_fraction: float = DRIFT_DISTANCE_FRACTION,
                  yaw_per_m: float = DRIFT_YAW_RAD_PER_M) -> np.ndarray:
    """(N, 4, 4) odometry-frame poses (z up) with accumulated drift. The first pose is kept;
    every relative motion is scaled in length by ``1 ± distance_fraction`` and followed by
    a yaw of ``± yaw_per_m`` per metre moved (signs drawn once from ``seed``)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"expected (N, 4, 4) poses, got {poses.shape}")
    rng = np.random.default_rng(seed)
    scale_sign, yaw_sign = rng.choice([-1.0, 1.0], size=2)
    out = poses.copy()
    for i in range(1, len(poses)):
        step = invert_rigid(poses[i - 1]) @ poses[i]
        dist = float(np.linalg.norm(step[:3, 3]))
        noisy = step.copy()
        noisy[:3, 3] *= 1.0 + scale_sign * distance_fraction
        out[i] = out[i - 1] @ noisy @ _yaw(yaw_sign * yaw_per_m * dist)
    return out
