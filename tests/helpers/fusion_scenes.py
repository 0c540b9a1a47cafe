"""Generated scenes and poses for the temporal-map tests: a static labelled world in the
odometry frame, frames of class probabilities cut from it, lattice-aligned poses."""

from __future__ import annotations

import numpy as np

from occdepth_ros.model.config import GridConfig

K = 6  # classes: 0 empty, 1..5 occupied
# A small model grid: 16 x 12 x 6 voxels of 0.4 m, the robot at x = 0, centred in y.
SMALL_GRID = GridConfig(origin=(0.0, -2.4, -0.8), dims=(16, 12, 6), voxel_size=0.4, project_scale=2)


def yaw_pose(yaw_quarter_turns: int, t_voxels: tuple[int, int, int], voxel: float) -> np.ndarray:
    """A pose on the voxel lattice: a multiple of 90 degrees about z, integer voxel shifts."""
    T = np.eye(4)
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][yaw_quarter_turns % 4]
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = np.asarray(t_voxels, dtype=np.float64) * voxel
    return T


def yaw_pose_any(yaw: float, t: tuple[float, float, float]) -> np.ndarray:
    T = np.eye(4)
    T[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T[:3, 3] = t
    return T


def world_class(index: np.ndarray) -> np.ndarray:
    """Class of odometry voxels (..., 3) int: a hashed pattern, about half empty."""
    a, b, c = (index[..., i].astype(np.int64) for i in range(3))
    h = (a * 73856093) ^ (b * 19349663) ^ (c * 83492791)
    cls = (h % 11).astype(np.int64)
    return np.where(cls < 6, cls, 0)


def grid_centres_odom(grid: GridConfig, T: np.ndarray) -> np.ndarray:
    """(X, Y, Z, 3) float64 centres of the grid's voxels in the odometry frame."""
    axes = [grid.origin[i] + (np.arange(grid.dims[i]) + 0.5) * grid.voxel_size for i in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return g @ T[:3, :3].T + T[:3, 3]


def frame_probs(grid: GridConfig, T: np.ndarray, voxel: float, confidence: float = 0.9) -> np.ndarray:
    """(K, X, Y, Z) float32 probabilities of the world as seen through a grid at pose T:
    ``confidence`` on the true class, the rest spread evenly."""
    idx = np.floor(grid_centres_odom(grid, T) / voxel).astype(np.int64)
    cls = world_class(idx)
    probs = np.full((K, *grid.dims), (1.0 - confidence) / (K - 1), dtype=np.float32)
    np.put_along_axis(probs, cls[None], np.float32(confidence), axis=0)
    return probs


def wedge_seen(grid: GridConfig, half_angle: float = 0.6) -> np.ndarray:
    """A camera-like view: voxels within ``half_angle`` of the +x axis."""
    axes = [grid.origin[i] + (np.arange(grid.dims[i]) + 0.5) * grid.voxel_size for i in range(2)]
    x, y = np.meshgrid(*axes, indexing="ij")
    wedge = np.abs(np.arctan2(y, x)) <= half_angle
    return np.repeat(wedge[:, :, None], grid.dims[2], axis=2)
