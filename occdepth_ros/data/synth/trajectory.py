"""Ego motion: the velodyne (= voxel grid) frame driving along its lane."""

from __future__ import annotations

import numpy as np

from .config import RigConfig, TrajectoryConfig
from .primitives import Pose2D


def draw_step(cfg: TrajectoryConfig, rng: np.random.Generator) -> float:
    """Per-sequence speed in metres per frame."""
    return float(rng.uniform(*cfg.step_m))


def ego_poses(cfg: TrajectoryConfig, rig: RigConfig, lane_y: float, step: float, n_frames: int) -> list[Pose2D]:
    """Velodyne poses in the world: steady speed, a gentle sinusoidal drift in the lane.

    The heading follows the drift's slope, so consecutive grids turn slightly.
    """
    k = 2.0 * np.pi / cfg.wobble_period_m
    poses = []
    for i in range(n_frames):
        x = cfg.start_x + i * step
        y = lane_y + cfg.wobble_amplitude_m * np.sin(k * x)
        yaw = np.arctan(cfg.wobble_amplitude_m * k * np.cos(k * x))
        poses.append(Pose2D(float(x), float(y), rig.velo_height_m, float(yaw)))
    return poses
