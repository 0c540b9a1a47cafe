"""occdepth-play / BagPlayer: the schedule with a fake clock and node, then real DDS over
loopback in one process (own rclpy context and a per-process ROS domain, so parallel test
runs and other ROS processes on the machine do not cross-talk)."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime  # noqa: E402
from rosbags.rosbag2 import Reader, Writer  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from occdepth_ros.data.synth import cli as synth_cli  # noqa: E402
from occdepth_ros.tools import bag_player, kitti2bag  # noqa: E402
from occdepth_ros.tools.bag_player import BagPlayer, PlayerError  # noqa: E402
from helpers.dds import domain_id

pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")  # lark, via rosidl

FRAMES = 3
BAG_SPAN_S = 0.2  # synth times.txt: 0.0, 0.1, 0.2
TYPES = {"/left/image_rect": Image, "/right/image_rect": Image,
         "/left/camera_info": CameraInfo, "/right/camera_info": CameraInfo, "/odom": Odometry}
DOMAIN_ID = domain_id("bag_player")
WAIT_S = 5.0


# -- bags --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kitti")
    assert synth_cli.main(["--out", str(root), "--sequences", "00", "--frames", str(FRAMES),
                           "--image-size", "96", "320", "--voxel-every", "0"]) == 0
    out = tmp_path_factory.mktemp("bag") / "tiny"
    kitti2bag.convert(kitti2bag.ConvertOptions(kitti=root, sequence="00", out=out), progress=False)
    return out


@pytest.fixture(scope="module")
def bag_raw(bag) -> list[tuple[str, int, bytes]]:
    with Reader(bag) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def by_topic(items):
    out = defaultdict(list)
    for topic, *rest in items:
        out[topic].append(rest[-1])
    return dict(out)


@pytest.fixture(scope="module")
def odd_bag(tmp_path_factory) -> Path:
    """A latched std_msgs/String topic, a best-effort one, and a type no package provides."""
    ts = kitti2bag.typestore()
    zero = QosTime(0, 0)

    def qos(rel, dur, depth=1):
        return Qos(QosHistory.KEEP_LAST, depth, rel, dur, zero, zero, QosLiveliness.AUTOMATIC, zero, False)

    out = tmp_path_factory.mktemp("odd") / "odd"
    String_ = ts.types["std_msgs/msg/String"]
    with Writer(out, version=9) as w:
        latched = w.add_connection("/latched", "std_msgs/msg/String", typestore=ts, offered_qos_profiles=[
            qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)])
        lossy = w.add_connection("/lossy", "std_msgs/msg/String", typestore=ts, offered_qos_profiles=[
            qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE, 7)])
        alien = w.add_connection("/alien", "nonexistent_msgs/msg/Thing", msgdef="string data",
                                 rihs01="RIHS01_" + "0" * 64)
        for i, conn in enumerate((latched, lossy, alien, latched)):
            w.write(conn, 1_000 + i * 10_000_000, ts.serialize_cdr(String_(data=str(i)), "std_msgs/msg/String"))
    return out


# -- fakes for the schedule tests ---------------------------------------------------
class FakeTimer(bag_player.Timer):
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def wait(self, seconds, stop_event):
        self.t += seconds
        return stop_event is not None and stop_event.is_set()


@dataclass
class FakePublisher:
    topic: str
    qos: QoSProfile
    timer: FakeTimer
    log: list
    accept_bytes: bool = True
    closing: list = field(default_factory=list)  # acknowledgement waits, in order

    def publish(self, msg):
        if isinstance(msg, bytes) and not self.accept_bytes:
            raise TypeError("bytes not supported")
        self.log.append((self.topic, self.timer.now(), msg))

    def wait_for_all_acked(self, timeout):
        self.closing.append((self.topic, "acked", timeout.nanoseconds))
        return True


@dataclass
class FakeNode:
    timer: FakeTimer
    accept_bytes: bool = True
    log: list = field(default_factory=list)
    publishers: dict = field(default_factory=dict)
    closing: list = field(default_factory=list)

    def create_publisher(self, cls, topic, qos):
        self.publishers[topic] = FakePublisher(topic, qos, self.timer, self.log, self.accept_bytes, self.closing)
        return self.publishers[topic]

    def destroy_publisher(self, pub):
        self.closing.append((pub.topic, "destroyed", None))
        del self.publishers[pub.topic]


def fake_player(bag, **kw):
    timer = FakeTimer()
    node = FakeNode(timer, accept_bytes=kw.pop("accept_bytes", True))
    return BagPlayer(bag, node, timer=timer, **kw), node, timer


# -- schedule, selection, QoS (no middleware) ----------------------------------------
@pytest.mark.parametrize("rate", [1.0, 0.5, 4.0])
def test_schedule_follows_receive_times_over_rate(bag, bag_raw, rate):
    player, node, timer = fake_player(bag, rate=rate)
    with player:
        stats = player.play()
    t0, s0 = node.log[0][1], bag_raw[0][1]
    assert [(t, raw) for t, _, raw in node.log] == [(t, raw) for t, _, raw in bag_raw]
    assert [when - t0 for _, when, _ in node.log] == pytest.approx([(s - s0) / 1e9 / rate for _, s, _ in bag_raw])
    assert stats.published == len(bag_raw) and stats.passes == 1 and not stats.stopped
    assert stats.wall_s == pytest.approx(BAG_SPAN_S / rate)
    assert node.publishers == {}  # closed


def test_close_waits_for_reliable_readers_before_destroying_publishers(bag, bag_raw):
    """Destroyed before every reader acknowledged, a publisher loses what is still in flight
    (the last large image); close() waits for acknowledgements first, per reliable topic."""
    player, node, _ = fake_player(bag)
    with player:
        player.play()
        assert node.closing == []
    events = node.closing
    topics = sorted({t for t, _, _ in bag_raw})
    assert [(t, e) for t, e, _ in events] == [(t, "acked") for t in topics] + [(t, "destroyed") for t in topics]
    assert all(ns == bag_player.ACK_TIMEOUT_S * 1e9 for _, e, ns in events if e == "acked")
    player, node, _ = fake_player(bag, qos="sensor_data")  # best effort: nothing to wait for
    with player:
        player.play(max_messages=1)
    assert [e for _, e, _ in node.closing] == ["destroyed"] * len(node.closing)


def test_loop_start_offset_topics_and_max_messages(bag, bag_raw):
    player, node, _ = fake_player(bag, loop=True, topics=["left/image_rect"], start_offset=0.05)
    with player:
        stats = player.play(max_messages=4)
    expected = [raw for topic, s, raw in bag_raw if topic == "/left/image_rect" and s - bag_raw[0][1] >= 5e7]
    assert [m for _, _, m in node.log] == (expected * 2)[:4]
    assert (stats.published, stats.passes, stats.stopped) == (4, 2, True)


def test_stop_event_ends_a_looping_player(bag):
    player, node, _ = fake_player(bag, loop=True)
    stop = threading.Event()
    stop.set()
    with player:
        stats = player.play(stop_event=stop)
    assert stats.stopped and stats.published == 0


def test_falls_back_to_deserializing_when_bytes_are_refused(bag, bag_raw):
    player, node, _ = fake_player(bag, accept_bytes=False, topics=["/right/camera_info"])
    with player:
        stats = player.play()
    assert stats.deserialized == FRAMES
    expected = [deserialize_message(raw, CameraInfo) for t, _, raw in bag_raw if t == "/right/camera_info"]
    assert [m for _, _, m in node.log] == expected


def test_auto_qos_follows_the_recorded_offers(odd_bag, bag):
    player, node, _ = fake_player(odd_bag)
    with player:
        assert set(node.publishers) == {"/latched", "/lossy"}  # /alien skipped: no Python package
        latched, lossy = node.publishers["/latched"].qos, node.publishers["/lossy"].qos
        assert (latched.reliability, latched.durability, latched.depth) == \
            (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL, 1)
        assert (lossy.reliability, lossy.durability, lossy.depth) == \
            (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE, 7)
    player, node, _ = fake_player(bag, qos="sensor_data")
    with player:
        assert all(p.qos.reliability == ReliabilityPolicy.BEST_EFFORT for p in node.publishers.values())
    for qos in ("auto", "reliable"):  # reliable volatile topics keep enough for a lagging reader
        player, node, _ = fake_player(bag, qos=qos)
        with player:
            assert {(p.qos.reliability, p.qos.depth) for p in node.publishers.values()} == \
                {(ReliabilityPolicy.RELIABLE, bag_player.RELIABLE_MIN_DEPTH)}


def test_errors(bag, odd_bag, tmp_path):
    with pytest.raises(PlayerError, match="not importable"):
        fake_player(odd_bag, topics=["/alien"])
    with pytest.raises(PlayerError, match="not in the bag"):
        fake_player(bag, topics=["/nope"])
    with pytest.raises(PlayerError, match="rate"):
        fake_player(bag, rate=0)
    with pytest.raises(PlayerError, match="bag not found"):
        fake_player(tmp_path / "missing")
    assert bag_player.resolve_msg_class("sensor_msgs/Image") is Image


# -- real DDS in one process ------------------------------------------------------------
@dataclass
class Ros:
    context: Context
    player_node: object
    sub_node: object
    received: dict = field(default_factory=lambda: defaultdict(list))  # topic -> [(t, raw bytes)]
    typed: dict = field(default_factory=lambda: defaultdict(list))  # topic -> [msg]

    def wait_for(self, count: int, timeout: float = WAIT_S) -> None:
        end = time.monotonic() + timeout
        while sum(len(v) for v in self.received.values()) < count and time.monotonic() < end:
            time.sleep(0.01)

    def wait_for_subscribers(self, player: BagPlayer) -> None:
        end = time.monotonic() + WAIT_S
        while time.monotonic() < end:
            if all(self.player_node.count_subscribers(t) >= 2 for t in player.publishers):
                return
            time.sleep(0.01)
        raise AssertionError("subscriptions were not discovered")

    def clear(self) -> None:
        self.received.clear()
        self.typed.clear()


@pytest.fixture(scope="module")
def ros():
    """Context, two nodes and an executor thread; everything is torn down even on failure."""
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    executor = thread = None
    nodes = []
    try:
        nodes = [rclpy.create_node(n, context=context) for n in ("test_bag_player", "test_bag_sink")]
        harness = Ros(context, *nodes)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for topic, cls in TYPES.items():
            harness.sub_node.create_subscription(
                cls, topic, lambda raw, t=topic: harness.received[t].append((time.monotonic(), raw)), qos, raw=True)
            harness.sub_node.create_subscription(cls, topic, lambda m, t=topic: harness.typed[t].append(m), qos)
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        yield harness
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if thread is not None:
            thread.join(timeout=2.0)
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)
        if saved is None:
            os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved


def play_over_dds(ros, bag, **kw):
    max_messages = kw.pop("max_messages", None)
    ros.clear()
    with BagPlayer(bag, ros.player_node, qos="reliable", **kw) as player:
        ros.wait_for_subscribers(player)
        stats = player.play(max_messages=max_messages)
        ros.wait_for(stats.published)
    return stats


def test_dds_delivers_every_message_unchanged_and_in_order(ros, bag, bag_raw):
    stats = play_over_dds(ros, bag)
    assert stats.published == len(bag_raw) == len(TYPES) * FRAMES
    expected = by_topic(bag_raw)
    assert {t: [raw for _, raw in v] for t, v in ros.received.items()} == expected
    for topic, raws in expected.items():
        # typed messages: rclpy's serialize_message leaves CDR padding bytes uninitialised,
        # so compare decoded messages (all fields, stamps included) rather than re-serialised bytes
        assert ros.typed[topic] == [deserialize_message(raw, TYPES[topic]) for raw in raws]
        stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in ros.typed[topic]]
        assert stamps == sorted(stamps) and len(set(stamps)) == FRAMES
    left = [m.header.stamp for m in ros.typed["/left/image_rect"]]
    assert left == [m.header.stamp for m in ros.typed["/right/camera_info"]]


@pytest.mark.parametrize("rate", [0.5, 4.0])
def test_dds_rate_scales_playback_time(ros, bag, bag_raw, rate):
    stats = play_over_dds(ros, bag, rate=rate)
    arrivals = [t for v in ros.received.values() for t, _ in v]
    spread = max(arrivals) - min(arrivals)
    nominal = BAG_SPAN_S / rate
    # Lower bounds only: the player waits out the scaled gaps; how much longer a loaded
    # machine takes is the benchmark's business, not a test's.
    assert stats.wall_s >= nominal - 0.01 and spread >= nominal - 0.03
    assert stats.published == len(arrivals) == len(bag_raw)  # every message, in the bag's order
    assert {t: [raw for _, raw in v] for t, v in ros.received.items()} == by_topic(bag_raw)


def test_dds_loop_replays_the_bag_twice(ros, bag, bag_raw):
    stats = play_over_dds(ros, bag, loop=True, max_messages=2 * len(bag_raw))
    assert (stats.passes, stats.published) == (2, 2 * len(bag_raw))
    for topic, raws in by_topic(bag_raw).items():
        assert [raw for _, raw in ros.received[topic]] == raws * 2


def test_cli_plays_a_bag_and_reports_errors(bag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    assert bag_player.main([str(bag), "--rate", "20", "--delay", "0", "--topics", "/left/camera_info"]) == 0
    assert bag_player.main([str(tmp_path / "missing"), "--delay", "0"]) == 2
    assert "bag not found" in capsys.readouterr().err
    assert not rclpy.ok()  # the CLI shut its default context down
