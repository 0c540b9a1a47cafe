"""occdepth-play: replay a rosbag2 into ROS 2 without ros2 bag."""

from __future__ import annotations

from ..tools.bag_player import main

__all__ = ["main"]
