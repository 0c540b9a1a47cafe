"""Synthetic stereo street world written in the KITTI odometry + SemanticKITTI layout.

A seeded street (road, parking, sidewalks, terrain, buildings, fences, trees,
bushes, poles, signs, cars, trucks, people) made of analytic primitives is
ray-cast into a rectified stereo pair with depth, and voxelized into the
SemanticKITTI grid from the same primitives, so images, depth and labels agree
by construction. Console script: ``occdepth-synth`` (``cli.main``).
"""

from .config import (
    GridConfig,
    ObjectConfig,
    RenderConfig,
    RigConfig,
    RoadConfig,
    SynthConfig,
    TrajectoryConfig,
)
from .render import SceneRenderer, StereoFrame
from .rig import kitti_calib_matrices, stereo_rig
from .scene import Scene, build_scene
from .voxelize import FrameVoxels, GridProjection, frame_voxels, label_voxels
from .writer import SequenceGenerator, generate, iter_frames

__all__ = [
    "FrameVoxels",
    "GridConfig",
    "GridProjection",
    "ObjectConfig",
    "RenderConfig",
    "RigConfig",
    "RoadConfig",
    "Scene",
    "SceneRenderer",
    "SequenceGenerator",
    "StereoFrame",
    "SynthConfig",
    "TrajectoryConfig",
    "build_scene",
    "frame_voxels",
    "generate",
    "iter_frames",
    "kitti_calib_matrices",
    "label_voxels",
    "stereo_rig",
]
