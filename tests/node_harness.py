"""The node under test on real DDS, with a feeder and a collector, for the node tests
(test_node_ros, test_node_onnxruntime); and a tiny synthetic sequence to feed it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import UInt8MultiArray

from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.node.ros_node import OccDepthNode
from helpers.dds import domain_id

DOMAIN_ID = domain_id("node_harness")
TIMEOUT_S = 60.0


def small_sequence(root: Path) -> KittiSequence:
    """Three 320x96 synthetic frames (no voxels): enough to drive the node."""
    assert synth_main(["--out", str(root), "--sequences", "00", "--frames", "3", "--seed", "9",
                       "--voxel-every", "0", "--image-size", "96", "320"]) == 0
    return KittiSequence(root, "00")


def image_msg(rgb: np.ndarray, stamp_ns: int, frame: str, encoding: str = "rgb8") -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding, msg.step = encoding, rgb.shape[1] * 3
    msg.data = rgb.tobytes()
    return msg


class Harness:
    """The node under test, a feeder and a collector on one executor."""

    def __init__(self, overrides: dict, domain_id: int = DOMAIN_ID) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        # Eager torch unless a test names a backend: node behaviour, not backend choice
        # (test_auto_backend.py), is under test here, and auto would export ONNX first.
        params = {"preset": "compact", "backend": "torch", "frame_id": "velodyne", "diagnostics_period_s": 0.2,
                  **overrides}
        self.node = OccDepthNode(context=self.context,
                                 parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.io = rclpy.create_node("harness", context=self.context)
        # rclpy's default QoS (reliable, depth 10), as camera drivers and ros2 bag play offer it
        self.pub_left = self.io.create_publisher(Image, "left/image_rect", 10)
        self.pub_right = self.io.create_publisher(Image, "right/image_rect", 10)
        self.pub_left_info = self.io.create_publisher(CameraInfo, "left/camera_info", 10)
        self.pub_right_info = self.io.create_publisher(CameraInfo, "right/camera_info", 10)
        self.got: dict[str, list] = {"cloud": [], "grid": [], "labels": [], "diag": []}
        self.cloud_sub = self.io.create_subscription(PointCloud2, "/occdepth_node/voxels", self.got["cloud"].append, 10)
        self.io.create_subscription(OccupancyGrid, "/occdepth_node/occupancy", self.got["grid"].append, 10)
        self.io.create_subscription(UInt8MultiArray, "/occdepth_node/label_grid", self.got["labels"].append, 10)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self.got["diag"].append, 10)
        self.executor = MultiThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for(self, key: str, n: int, timeout: float = TIMEOUT_S) -> None:
        end = time.monotonic() + timeout
        while len(self.got[key]) < n and time.monotonic() < end:
            time.sleep(0.05)
        assert len(self.got[key]) >= n, f"waited {timeout} s for {n} {key} message(s), got {len(self.got[key])}"

    def send(self, left: Image, right: Image, infos: tuple[CameraInfo, CameraInfo] | None = None) -> None:
        self.pub_left.publish(left)
        self.pub_right.publish(right)
        if infos is not None:
            self.pub_left_info.publish(infos[0])
            self.pub_right_info.publish(infos[1])

    def wait_drops(self, reason: str, n: int, timeout: float = TIMEOUT_S) -> None:
        end = time.monotonic() + timeout
        while self.node.stats.drops[reason] < n and time.monotonic() < end:
            time.sleep(0.05)
        assert self.node.stats.drops[reason] >= n, f"{reason} drops: {self.node.stats.drops[reason]} < {n}"

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5)


