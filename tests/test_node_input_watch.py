"""Nothing silent: on real DDS, every input problem is named in a /rosout warning and in
/diagnostics (WARN, over the node's own STALE), each reason logged on its own; and input_qos
AUTO receives from a best-effort publisher without being told."""

from __future__ import annotations

import threading
import time

import pytest
from rcl_interfaces.msg import Log
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2

from helpers.dds import domain_id
from helpers.node_harness import TIMEOUT_S, Harness, image_msg, small_sequence
from occdepth_ros.data.images import read_rgb
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.node.stats import Level

WARN = 30  # rcl_interfaces/msg/Log level
RIGHT_LAG_NS = 300_000  # kitti2mcap: right stamped 0.3 ms after left


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> KittiSequence:
    return small_sequence(tmp_path_factory.mktemp("synth"))


class Watched(Harness):
    """The harness plus the node's /rosout lines."""

    def __init__(self, overrides: dict, domain: int) -> None:
        super().__init__(overrides, domain_id=domain)
        self.logs: list[Log] = []
        self._lock = threading.Lock()
        self.io.create_subscription(Log, "/rosout", self._keep_log, 100)

    def _keep_log(self, msg: Log) -> None:
        if msg.name.endswith("occdepth_node"):
            with self._lock:
                self.logs.append(msg)

    def wait_log(self, text: str, timeout: float = TIMEOUT_S) -> Log:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                hits = [m for m in self.logs if text in m.msg]
            if hits:
                return hits[0]
            time.sleep(0.05)
        with self._lock:
            raise AssertionError(f"no log line with {text!r}; got {[m.msg for m in self.logs]}")

    def wait_status(self, predicate, timeout: float = TIMEOUT_S):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for array in reversed(self.got["diag"]):
                for status in array.status:
                    if "occdepth_node" in status.name and predicate(status):
                        return status
            time.sleep(0.05)
        last = [s for a in self.got["diag"][-1:] for s in a.status]
        raise AssertionError(f"no diagnostics status as expected; last: {last}")


@pytest.fixture(scope="class")
def exact(sequence):
    """Exact pairing (the non-default), calibration file: image streams only."""
    h = Watched({"calib_file": str(sequence.path / "calib.txt"), "approximate_sync": False},
                domain_id("node_input_watch"))
    try:
        time.sleep(1.0)
        yield h
    finally:
        h.close()


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


class TestImageStreams:
    """One node per class: nodes of one name in one process share a /rosout publisher."""

    def test_bad_input_alone_raises_warn_over_stale_and_each_reason_is_logged(self, exact: Watched, sequence) -> None:
        """A fresh node fed only garbage: WARN naming the drops, not STALE; two different reject
        reasons within the throttle period are both logged."""
        left, right = (read_rgb(p) for p in sequence.image_paths(0))
        t0 = 1_700_001_000_000_000_000
        bad = image_msg(left, t0, "l")
        bad.encoding = "yuv422"
        exact.send(bad, image_msg(right, t0, "r"))
        exact.wait_drops("bad_input", 1)
        short = image_msg(left, t0 + 10**8, "l")
        short.data = short.data[: len(short.data) // 2]
        exact.send(short, image_msg(right, t0 + 10**8, "r"))
        exact.wait_drops("bad_input", 2)
        assert exact.node.stats.frames_processed == 0
        status = exact.wait_status(lambda s: "bad_input drop(s)" in s.message)
        assert status.level == bytes([Level.WARN])
        first, second = exact.wait_log("yuv422"), exact.wait_log("but step * height")
        assert first.level == WARN and second.level == WARN and first is not second


    def test_exact_sync_on_cameras_stamped_apart_names_the_gap(self, exact: Watched, sequence) -> None:
        left, right = (read_rgb(p) for p in sequence.image_paths(1))
        t0 = 1_700_002_000_000_000_000
        before = exact.node.stats.drops["unmatched"]
        for i in range(3):
            t = t0 + i * 10**8
            exact.send(image_msg(left, t, "l"), image_msg(right, t + RIGHT_LAG_NS, "r"))
            time.sleep(0.05)
        exact.wait_drops("unmatched", before + 2)
        line = exact.wait_log("found no partner")
        assert "0.300 ms apart" in line.msg and "tolerance 0 ms" in line.msg
        status = exact.wait_status(lambda s: "unmatched drop(s)" in s.message)
        assert status.level == bytes([Level.WARN]), status
        counted = exact.wait_status(lambda s: int(_values(s)["dropped_unmatched"]) >= before + 2)
        assert {"queue_left_image", "queue_right_image"} <= set(_values(counted))


    def test_auto_qos_receives_from_a_best_effort_publisher(self, exact: Watched, sequence) -> None:
        """input_qos AUTO starts reliable and re-subscribes a topic best effort once a
        best-effort-only publisher appears there (a reliable reader would never match it)."""
        node = exact.node
        assert node.params.input_qos == "AUTO" and not any(be for _, be in node._subs.values())
        pub_l = exact.io.create_publisher(Image, "left/image_rect", qos_profile_sensor_data)
        pub_r = exact.io.create_publisher(Image, "right/image_rect", qos_profile_sensor_data)
        end = time.monotonic() + TIMEOUT_S
        while not all(be for _, be in node._subs.values()) and time.monotonic() < end:
            time.sleep(0.05)
        for topic in ("/left/image_rect", "/right/image_rect"):
            infos = exact.io.get_subscriptions_info_by_topic(topic)
            assert [i.qos_profile.reliability for i in infos] == [ReliabilityPolicy.BEST_EFFORT]
        while not all(p.get_subscription_count() for p in (pub_l, pub_r)) and time.monotonic() < end:
            time.sleep(0.05)
        exact.wait_log("offers only best effort")
        left, right = (read_rgb(p) for p in sequence.image_paths(2))
        t = 1_700_003_000_000_000_000
        clouds = len(exact.got["cloud"])
        pub_l.publish(image_msg(left, t, "l"))
        pub_r.publish(image_msg(right, t, "r"))
        exact.wait_for("cloud", clouds + 1)
        assert node.stats.events["qos_incompatible"] == 0  # resolved by AUTO, not a problem

    def test_an_incompatible_output_subscriber_is_logged_and_counted(self, exact: Watched) -> None:
        """A subscriber asking ~/voxels for transient local (the node offers volatile) gets
        nothing: the node says so and counts it."""
        from rclpy.qos import DurabilityPolicy, QoSProfile

        before = exact.node.stats.events["qos_incompatible"]
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        exact.io.create_subscription(PointCloud2, "/occdepth_node/voxels", lambda _: None, latched)
        line = exact.wait_log("incompatible QoS (DURABILITY) between an output and a peer")
        assert line.level == WARN and exact.node.stats.events["qos_incompatible"] >= before + 1
        status = exact.wait_status(lambda s: "qos_incompatible event(s)" in s.message)
        assert status.level in (bytes([Level.WARN]), bytes([Level.ERROR]))  # ERROR: over the time budget


    def test_messages_lost_in_the_middleware_are_counted_and_named(self, exact: Watched) -> None:
        """The message-lost event of an input subscription (what DDS reports when a best-effort
        sample is lost in transit) reaches the drop counter, a warning and the diagnostics.
        The event is delivered through the subscription's own registered handler; its data
        (total_count, total_count_change) is what rclpy hands that handler."""
        from types import SimpleNamespace

        from rclpy.event_handler import QoSSubscriptionEventType

        sub, _ = exact.node._subs["left_image"]
        handlers = [h for h in sub.event_handlers
                    if h.event_type == QoSSubscriptionEventType.RCL_SUBSCRIPTION_MESSAGE_LOST]
        if not handlers:
            pytest.skip("this middleware has no message-lost event (the node subscribes without it)")
        before = exact.node.stats.drops["lost"]
        handlers[0].callback(SimpleNamespace(total_count=3, total_count_change=3))
        line = exact.wait_log("3 message(s) on /left/image_rect lost in the middleware")
        assert line.level == WARN and exact.node.stats.drops["lost"] == before + 3
        handlers[0].callback(SimpleNamespace(total_count=3, total_count_change=0))  # no news: not counted
        assert exact.node.stats.drops["lost"] == before + 3
        status = exact.wait_status(lambda s: any(kv.key == "dropped_lost" and int(kv.value) >= before + 3
                                                 for kv in s.values))
        assert status.level in (bytes([Level.WARN]), bytes([Level.ERROR]))  # ERROR: over the time budget

@pytest.fixture(scope="class")
def info_mode(sequence):
    """Calibration from camera_info, which nobody publishes; the right image on a wrong topic."""
    h = Watched({"calib_file": "", "right_image_topic": "right/image_typo"}, domain_id("node_input_watch_camera_info"))
    try:
        yield h
    finally:
        h.close()


class TestCameraInfoMode:
    def test_topics_never_seen_are_named_in_a_warning_and_in_diagnostics(self, info_mode: Watched, sequence) -> None:
        left, _ = (read_rgb(p) for p in sequence.image_paths(0))
        t0 = 1_700_004_000_000_000_000
        for i in range(5):  # only the left image arrives
            info_mode.pub_left.publish(image_msg(left, t0 + i * 10**8, "l"))
            time.sleep(0.1)
        for topic in ("/right/image_typo", "/left/camera_info", "/right/camera_info"):
            line = info_mode.wait_log(f"nothing received on {topic}")
            assert line.level == WARN
        status = info_mode.wait_status(lambda s: "/right/image_typo" in s.message)
        assert status.level == bytes([Level.WARN]) and "/left/camera_info" in status.message
        assert "/left/image_rect" not in status.message
        values = _values(status)
        assert values["last_right_image_s"] == "never" and values["last_left_image_s"] != "never"
        assert int(values["queue_left_image"]) >= 1 and values["queue_right_image"] == "0"


    def test_a_stream_that_stops_is_named(self, info_mode: Watched) -> None:
        """The left image stopped after the previous test: 2 s later it is named too."""
        line = info_mode.wait_log("no message on /left/image_rect")
        assert line.level == WARN
