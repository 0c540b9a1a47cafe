"""KITTI-like calibration of the synthetic rig, and where its cameras sit in the world.

The matrices follow the KITTI odometry convention: all four cameras share the
rectified cam0 orientation, ``P_i = K [I | -c_i]`` with ``c_i`` the camera
centre on cam0's x axis, and ``Tr`` maps velodyne to cam0. Image_2 sits
``cam2_offset_m`` left of cam0 (so ``P2[0, 3] = +fx * offset``) and image_3 one
baseline to its right (``P3[0, 3] = -fx * (baseline - offset)``): the image_2 /
image_3 pair is exactly ``baseline_m`` apart, as in KITTI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry.calib import StereoRig, kitti_stereo_rig
from .config import RigConfig
from .primitives import Pose2D

#: velodyne (x fwd, y left, z up) -> camera (x right, y down, z fwd) axes
VELO_TO_CAM_ROTATION = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def intrinsics(rig: RigConfig) -> np.ndarray:
    return np.array([[rig.fx, 0.0, rig.cx], [0.0, rig.fy, rig.cy], [0.0, 0.0, 1.0]])


def _projection(K: np.ndarray, centre_x: float) -> np.ndarray:
    """Rectified camera on cam0's x axis at ``centre_x`` metres."""
    return K @ np.hstack([np.eye(3), [[-centre_x], [0.0], [0.0]]])


def velo_to_cam0(rig: RigConfig) -> np.ndarray:
    """4x4 Tr: velodyne -> cam0, from the axis swap and cam0's mounting position."""
    T = np.eye(4)
    T[:3, :3] = VELO_TO_CAM_ROTATION
    T[:3, 3] = -VELO_TO_CAM_ROTATION @ np.asarray(rig.cam0_in_velo)
    return T


def kitti_calib_matrices(rig: RigConfig) -> dict[str, np.ndarray]:
    """calib.txt matrices P0..P3 (3x4) and Tr (3x4)."""
    K = intrinsics(rig)
    left = -rig.cam2_offset_m
    return {
        "P0": _projection(K, 0.0),
        "P1": _projection(K, rig.baseline_m),
        "P2": _projection(K, left),
        "P3": _projection(K, left + rig.baseline_m),
        "Tr": velo_to_cam0(rig)[:3],
    }


def stereo_rig(rig: RigConfig) -> StereoRig:
    """The project's rig object for these matrices (left = image_2, right = image_3)."""
    return kitti_stereo_rig(kitti_calib_matrices(rig), (rig.height, rig.width))


@dataclass(frozen=True)
class CameraPose:
    """One camera in the world: centre, rotation (camera -> world) and intrinsics."""

    origin: np.ndarray  # (3,) world
    R_world_cam: np.ndarray  # (3, 3)
    K: np.ndarray  # (3, 3)


def camera_poses(stereo: StereoRig, ego: Pose2D) -> list[CameraPose]:
    """World placement of each camera for an ego (velodyne = grid frame) pose."""
    world_from_grid = ego.matrix()
    out = []
    for cam in stereo.cameras:
        world_from_cam = world_from_grid @ np.linalg.inv(cam.T_grid_to_cam)
        out.append(CameraPose(world_from_cam[:3, 3].copy(), world_from_cam[:3, :3].copy(), cam.K))
    return out


def cam0_pose_rows(rig: RigConfig, egos: list[Pose2D]) -> np.ndarray:
    """poses.txt content: cam0 of every frame in cam0 of the first frame, (N, 12)."""
    Tr = velo_to_cam0(rig)
    Tr_inv = np.linalg.inv(Tr)
    first_inv = np.linalg.inv(egos[0].matrix())
    rows = [(Tr @ first_inv @ e.matrix() @ Tr_inv)[:3].reshape(-1) for e in egos]
    return np.asarray(rows)
