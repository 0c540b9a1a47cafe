"""occdepth-kitti2bag: a KITTI odometry sequence as a rosbag2 (mcap or sqlite3)."""

from __future__ import annotations

from ..tools.kitti2bag import main

__all__ = ["main"]
