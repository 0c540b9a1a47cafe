"""occdepth_node over real DDS (Fast DDS on loopback) in one process: synthetic stereo
frames in, every output checked; bad inputs are dropped and counted, never published."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import UInt8MultiArray

from occdepth_ros.data.images import read_rgb
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.node.ros_node import OccDepthNode

DOMAIN_ID = 57  # keep this test's DDS traffic away from other tests and machines' defaults
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> KittiSequence:
    root = tmp_path_factory.mktemp("synth")
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

    def __init__(self, sequence: KittiSequence) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        overrides = [Parameter("preset", value="compact"),
                     Parameter("calib_file", value=str(sequence.path / "calib.txt")),
                     Parameter("frame_id", value="velodyne"),
                     Parameter("diagnostics_period_s", value=0.2)]
        self.node = OccDepthNode(context=self.context, parameter_overrides=overrides)
        self.io = rclpy.create_node("harness", context=self.context)
        self.pub_left = self.io.create_publisher(Image, "left/image_rect", qos_profile_sensor_data)
        self.pub_right = self.io.create_publisher(Image, "right/image_rect", qos_profile_sensor_data)
        self.got: dict[str, list] = {"cloud": [], "grid": [], "labels": [], "diag": []}
        self.io.create_subscription(PointCloud2, "/occdepth_node/voxels", self.got["cloud"].append, 10)
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

    def send(self, left: Image, right: Image) -> None:
        self.pub_left.publish(left)
        self.pub_right.publish(right)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def harness(sequence):
    h = Harness(sequence)
    try:
        time.sleep(1.0)  # discovery
        yield h
    finally:
        h.close()


def test_outputs_for_a_stereo_pair(harness: Harness, sequence: KittiSequence) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(0))
    stamp = 1_700_000_000_123_456_789
    harness.send(image_msg(left, stamp, "cam_left"), image_msg(right, stamp, "cam_right"))
    harness.wait_for("cloud", 1)
    harness.wait_for("grid", 1)
    harness.wait_for("labels", 1)
    cloud, grid, labels = harness.got["cloud"][0], harness.got["grid"][0], harness.got["labels"][0]
    cfg = harness.node.processor.engine.cfg
    for msg in (cloud, grid):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(stamp, 1_000_000_000)
        assert msg.header.frame_id == "velodyne"
    assert [f.name for f in cloud.fields][:5] == ["x", "y", "z", "rgb", "label"]
    assert len(cloud.data) == cloud.width * cloud.point_step and cloud.height == 1
    X, Y, Z = cfg.grid.dims
    assert (grid.info.width, grid.info.height) == (X, Y)
    assert grid.info.resolution == pytest.approx(cfg.grid.voxel_size)
    assert len(grid.data) == X * Y and set(np.unique(np.array(grid.data, dtype=np.int8))) <= {-1, 0, 100}
    assert len(labels.data) == X * Y * Z
    # the published grid is the engine's prediction for this pair
    engine_labels = harness.node.processor.engine.predict([left, right]).labels
    np.testing.assert_array_equal(np.frombuffer(bytes(labels.data), np.uint8).reshape(X, Y, Z), engine_labels)


@pytest.mark.parametrize("problem", ["encoding", "truncated", "size_mismatch"])
def test_bad_input_is_dropped_counted_and_the_node_keeps_running(harness: Harness, sequence, problem) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(1))
    stamp = 1_700_000_100_000_000_000 + 10**9 * len(problem)
    bad_left = image_msg(left, stamp, "cam_left")
    if problem == "encoding":
        bad_left.encoding = "yuv422"
    elif problem == "truncated":
        bad_left.data = bad_left.data[: len(bad_left.data) // 2]
    else:
        bad_left = image_msg(left[:, :-8].copy(), stamp, "cam_left")
    before = len(harness.got["cloud"])
    drops_before = harness.node.stats.drops["bad_input"]
    harness.send(bad_left, image_msg(right, stamp, "cam_right"))
    end = time.monotonic() + TIMEOUT_S
    while harness.node.stats.drops["bad_input"] == drops_before and time.monotonic() < end:
        time.sleep(0.05)
    assert harness.node.stats.drops["bad_input"] == drops_before + 1
    time.sleep(0.3)
    assert len(harness.got["cloud"]) == before  # nothing published for the bad pair
    # still alive: a good pair afterwards is processed
    harness.send(image_msg(left, stamp + 1, "cam_left"), image_msg(right, stamp + 1, "cam_right"))
    harness.wait_for("cloud", before + 1)


def test_stamps_going_backwards_are_counted(harness: Harness, sequence) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(2))
    t0 = 1_700_000_200_000_000_000
    harness.send(image_msg(left, t0, "l"), image_msg(right, t0, "r"))
    harness.wait_for("cloud", len(harness.got["cloud"]) + 1)
    before = harness.node.stats.drops["stamp_backwards"]
    harness.send(image_msg(left, t0 - 1000, "l"), image_msg(right, t0 - 1000, "r"))  # 1 us back: no reset
    end = time.monotonic() + 10
    while harness.node.stats.drops["stamp_backwards"] < before + 2 and time.monotonic() < end:
        time.sleep(0.05)
    assert harness.node.stats.drops["stamp_backwards"] == before + 2


def test_diagnostics_report_rate_and_drops(harness: Harness) -> None:
    harness.wait_for("diag", 2)
    status = harness.got["diag"][-1].status[0]
    keys = {kv.key for kv in status.values}
    assert "occdepth_node" in status.name
    assert any("drop" in k for k in keys) and any("processing" in k for k in keys)
