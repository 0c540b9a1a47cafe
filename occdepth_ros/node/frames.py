"""Which frame the outputs are in, and how it hangs off the camera (plain Python).

In camera_info mode the grid's frame (``occdepth_grid`` unless ``frame_id`` says
otherwise) sits where ``grid_to_camera`` puts it relative to the left rectified camera,
whose frame is the left image's ``header.frame_id``. That transform is a static TF
(parent: the camera frame, child: the grid frame): the node publishes it where tf2_ros
imports, and its start-up log states it (with the command that publishes it) always.
"""

from __future__ import annotations

import numpy as np

from ..geometry.poses import rotation_to_quaternion
from .params import NodeParams


def grid_pose_in_camera(T_grid_to_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation (3,), quaternion x, y, z, w): the grid frame's pose in the camera frame,
    i.e. the TF transform with the camera as parent and the grid as child."""
    T = np.asarray(T_grid_to_camera, dtype=np.float64)
    return T[:3, 3].copy(), rotation_to_quaternion(T[:3, :3])


def static_transform_command(T_grid_to_camera: np.ndarray, camera_frame: str, grid_frame: str) -> str:
    t, q = grid_pose_in_camera(T_grid_to_camera)
    nums = " ".join(f"--{k} {v:.6g}" for k, v in zip(("x", "y", "z", "qx", "qy", "qz", "qw"), (*t, *q)))
    return f"ros2 run tf2_ros static_transform_publisher {nums} --frame-id {camera_frame} --child-frame-id {grid_frame}"


def frames_summary(params: NodeParams, tf_available: bool) -> str:
    """The start-up log's statement of the output frame and its transform."""
    grid = params.grid_frame()
    if params.calib_file:
        return (f"outputs in frame '{grid}', the calibration file's grid frame (its transform to the cameras "
                "comes from the file; publish it in TF with the rest of the robot)")
    T = params.grid_to_camera_matrix()
    t, q = grid_pose_in_camera(T)
    pose = (f"translation [{', '.join(f'{v:.4g}' for v in t)}] m, rotation xyzw "
            f"[{', '.join(f'{v:.4g}' for v in q)}]")
    where = ("published on /tf_static once the left image's frame_id is known" if tf_available else
             "tf2_ros is not installed, so publish it yourself: "
             + static_transform_command(T, "<left image frame_id>", grid))
    return f"outputs in frame '{grid}': pose in the left camera frame (grid_to_camera) {pose}; {where}"
