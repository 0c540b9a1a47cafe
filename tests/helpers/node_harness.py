"""The node tests' view of the one in-process harness (occdepth_ros.tools.node_session):
test defaults, message builders and a tiny synthetic sequence to feed the node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.tools.node_session import NodeSession

TIMEOUT_S = 60.0
NS_PER_S = 1_000_000_000
OUTPUT_TOPICS = {"cloud": (PointCloud2, "/occdepth_node/voxels"),
                 "grid": (OccupancyGrid, "/occdepth_node/occupancy"),
                 "labels": (Image, "/occdepth_node/label_grid"),
                 "diag": (DiagnosticArray, "/diagnostics")}
# Eager torch unless a test names a backend: node behaviour, not backend choice
# (test_auto_backend.py), is under test here, and auto would export ONNX first.
TEST_DEFAULTS = {"preset": "compact", "backend": "torch", "diagnostics_period_s": 0.2}


def small_sequence(root: Path) -> KittiSequence:
    """Three 320x96 synthetic frames (no voxels): enough to drive the node."""
    assert synth_main(["--out", str(root), "--sequences", "00", "--frames", "3", "--seed", "9",
                       "--voxel-every", "0", "--image-size", "96", "320"]) == 0
    return KittiSequence(root, "00")


def image_msg(rgb: np.ndarray, stamp_ns: int, frame: str, encoding: str = "rgb8") -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS_PER_S)
    msg.header.frame_id = frame
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding, msg.step = encoding, rgb.shape[1] * 3
    msg.data = rgb.tobytes()
    return msg


def info_msg(p: np.ndarray, stamp_ns: int, width: int, height: int, frame: str = "") -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS_PER_S)
    msg.header.frame_id = frame
    msg.width, msg.height = width, height
    msg.p = [float(v) for v in np.asarray(p, dtype=np.float64).ravel()]
    return msg


class Harness(NodeSession):
    """A started NodeSession with the test defaults and the node's outputs collected;
    ``close()`` when done (module fixtures)."""

    def __init__(self, overrides: dict, domain_id: int, topics: dict | None = None) -> None:
        super().__init__({**TEST_DEFAULTS, **overrides}, topics or OUTPUT_TOPICS, domain_id)
        self.__enter__()
        self.pub_left, self.pub_right = self.pubs["left"], self.pubs["right"]
        self.pub_left_info, self.pub_right_info = self.pubs["left_info"], self.pubs["right_info"]

    def wait_for(self, key: str, n: int, timeout_s: float = TIMEOUT_S) -> None:  # type: ignore[override]
        assert super().wait_for(key, n, timeout_s), f"waited {timeout_s} s for {n} {key} message(s), got {self.count(key)}"

    def wait_drops(self, reason: str, n: int, timeout_s: float = TIMEOUT_S) -> None:  # type: ignore[override]
        assert super().wait_drops(reason, n, timeout_s), f"{reason} drops: {self.node.stats.drops[reason]} < {n}"
