"""Delivery on real DDS with KITTI-size images and the shipped defaults: a bag in the
third-party kitti2mcap layout plays into the node configured by generic_stereo.yaml with
topic remaps only (what docs/CAMERA.md's command passes), every pair gives a cloud; and
occdepth-bench's delivery run accounts for every pair it sends to the fully default node."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import PointCloud2

from helpers.bag_watch import BagWatch
from helpers.dds import domain_id
from helpers.kitti2mcap_bag import LEFT, RIGHT, TOPIC, synthetic_kitti2mcap_bag
from occdepth_ros.bench.delivery import DeliveryRow, _row, bench_delivery, markdown_table
from occdepth_ros.node.stereo_sync import stamp_to_ns
from occdepth_ros.resources import share_dir

DOMAIN_ID = domain_id("node_delivery")
FRAMES = 3
START_NS = 1_317_000_000 * 10**9
RATE = 0.05  # the bag's 10 Hz pairs 2 s apart: slower than the node, so every pair is processed
START_TIMEOUT_S = 300.0
OUTPUT_TIMEOUT_S = 120.0
OUTPUTS = {"cloud": (PointCloud2, "/occdepth_node/voxels"), "diag": (DiagnosticArray, "/diagnostics")}
REMAPS = {"left/image_rect": TOPIC[LEFT][0], "right/image_rect": TOPIC[RIGHT][0],
          "left/camera_info": TOPIC[LEFT][1], "right/camera_info": TOPIC[RIGHT][1]}


@pytest.fixture(scope="module")
def kitti2mcap_bag(tmp_path_factory):
    return synthetic_kitti2mcap_bag(tmp_path_factory.mktemp("kitti_raw"), FRAMES, START_NS)


@pytest.fixture(scope="class")
def node():
    """occdepth_node as ``ros2 run ... --ros-args --params-file generic_stereo.yaml -r ...``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from occdepth_ros.node.ros_node import OccDepthNode

    args = ["occdepth_node", "--ros-args", "--params-file", str(share_dir() / "config" / "generic_stereo.yaml")]
    for src, dst in REMAPS.items():
        args += ["-r", f"{src}:={dst}"]
    context = rclpy.Context()
    rclpy.init(args=args, context=context, domain_id=DOMAIN_ID)
    node = OccDepthNode(context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        thread.join(timeout=5.0)


class TestKitti2McapWithRemapsOnly:
    def test_every_pair_gives_a_cloud_and_nothing_is_dropped(self, node, kitti2mcap_bag) -> None:
        assert node.params.input_qos == "AUTO" and node.params.approximate_sync  # the shipped defaults
        with BagWatch(OUTPUTS, DOMAIN_ID) as watch:
            assert watch.wait_subscribed(list(REMAPS.values()), START_TIMEOUT_S)
            watch.play(kitti2mcap_bag.path, rate=RATE)
            watch.wait_for("cloud", FRAMES, OUTPUT_TIMEOUT_S)
            clouds = watch.messages("cloud")
        stamps = [stamp_to_ns(m.header.stamp.sec, m.header.stamp.nanosec) for m in clouds]
        assert stamps == kitti2mcap_bag.left_stamps_ns, f"drops: {node.stats.drops}"
        assert all(c.width * c.height > 0 for c in clouds)
        assert node.stats.frames_processed == FRAMES
        assert not any(node.stats.drops.values()), node.stats.drops
        assert node.stats.events["qos_incompatible"] == 0
        assert all(not best_effort for _, best_effort in node._subs.values())  # the player offers reliable


# -- the delivery measurement -----------------------------------------------------------
def test_row_arithmetic_accounts_every_pair() -> None:
    before = {"frames_processed": 2, "dropped_busy": 1, "dropped_unmatched": 0, "dropped_bad_input": 4}
    after = {"frames_processed": 9, "dropped_busy": 20, "dropped_unmatched": 1, "dropped_bad_input": 4}
    row = _row(10.0, 30, before, after, 3.0)
    assert (row.processed, row.busy, row.other_drops, row.lost) == (7, 19, {"unmatched": 1}, 3)
    assert row.accounted_share == pytest.approx(26 / 30)
    table = markdown_table([row, DeliveryRow(1.0, 30, 30, 0)])
    assert "| 10 Hz | 30 | 7 | 19 | unmatched 1 | 3 | 87 % |" in table
    assert "| 1 Hz | 30 | 30 | 0 | 0 | 0 | 100 % |" in table


def test_delivery_run_accounts_for_every_pair_sent_to_the_default_node(tmp_path) -> None:
    """Pairs faster than inference: each one is processed or counted busy, none lost."""
    (row,) = bench_delivery(tmp_path, rates_hz=(10.0,), pairs=FRAMES, domain_id=DOMAIN_ID)
    log = (tmp_path / "node.log").read_text()
    assert row.sent == FRAMES and row.lost == 0 and not row.other_drops, f"{row}\n{log[-3000:]}"
    assert row.processed >= 1 and row.processed + row.busy == FRAMES
    assert np.isclose(row.accounted_share, 1.0)
