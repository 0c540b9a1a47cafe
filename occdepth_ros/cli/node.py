"""occdepth_node: the ROS 2 node (ros2 run occdepth_ros occdepth_node)."""

from __future__ import annotations

from ..node.ros_node import main

__all__ = ["main"]
