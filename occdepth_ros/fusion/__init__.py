"""Temporal fusion: a rolling semantic voxel map in the odometry frame (plain Python, no ROS).

Data flow: inference (per-frame class probabilities) -> fusion -> node / tools.
"""

from .config import FusionConfig
from .odometry_noise import drifted_poses
from .rolling_map import IntegrateStats, RollingSemanticMap

__all__ = ["FusionConfig", "IntegrateStats", "RollingSemanticMap", "drifted_poses"]
