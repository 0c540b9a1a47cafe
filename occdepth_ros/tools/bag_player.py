"""occdepth-play: replay a rosbag2 (mcap or sqlite3) into ROS 2 with rclpy.

For machines that have the ROS 2 PyPI wheels but no ``ros2 bag`` (rosbag2_py and ros2cli
are not on PyPI). The bag is read with rosbags and its serialized CDR payloads are
published as they are (rclpy's ``Publisher.publish`` accepts ``bytes``), so nothing is
decoded on the way; only if an rclpy refuses bytes are messages deserialised first.

Timing follows the bag's receive timestamps divided by ``--rate``; a publisher that falls
behind publishes at once (no skipping) and the worst lag is reported. Header stamps are
never rewritten: ``--loop`` replays the same old stamps, i.e. time jumps backwards at
each restart. The OccDepth node clears its pairing buffer on a jump back of at least
``stamp_reset_jump_s`` (default 1 s): for bags shorter than that, lower the parameter or
the first frames of each new pass are rejected as "backwards".

QoS (``--qos``): ``auto`` (default) re-offers what the bag recorded, like ``ros2 bag
play``: reliable unless an offer was best effort, transient_local only if every offer
was (latched topics such as /tf_static); bags without offers get reliable/volatile.
Reliable volatile topics keep at least ``RELIABLE_MIN_DEPTH`` messages for lagging readers.
``reliable`` matches every subscriber; ``sensor_data`` (best effort) only best-effort ones.

    occdepth-play /tmp/seq08_bag --rate 0.5 --loop --topics /left/image_rect /right/image_rect
"""

from __future__ import annotations

import argparse
import importlib
import math
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..node.stereo_sync import NS_PER_S, seconds_to_ns

QOS_CHOICES = ("auto", "sensor_data", "reliable")
DEFAULT_DEPTH = 10
# Reliable volatile topics keep at least this many messages for readers that have not
# acknowledged yet: a shorter writer history drops what a reader is still recovering (a lost
# fragment of a large image waits for the writer's next heartbeat), and the reader reports it
# lost. Memory is only used while a reader lags.
RELIABLE_MIN_DEPTH = 30
DEFAULT_DELAY_S = 0.5
ACK_TIMEOUT_S = 10.0  # close(): how long to wait for reliable readers to acknowledge the last messages


class PlayerError(RuntimeError):
    """The bag, a topic or an argument cannot be played; the message says why."""


@dataclass
class PlayStats:
    """What one ``play()`` call did."""

    published: int = 0
    per_topic: Counter = field(default_factory=Counter)
    passes: int = 0  # passes over the bag that reached its end
    wall_s: float = 0.0
    max_lag_s: float = 0.0  # worst delay of a publish behind its scheduled time
    stopped: bool = False  # ended early by stop_event or max_messages
    deserialized: int = 0  # messages that had to go through deserialize_message


@dataclass(frozen=True)
class TopicPlan:
    """One topic to publish: its type, the Python message class and the QoS to offer."""

    name: str
    msgtype: str
    msg_class: type
    qos: Any  # rclpy.qos.QoSProfile


class Timer:
    """Wall clock + interruptible wait; tests substitute a fake to check the schedule."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop_event: threading.Event | None) -> bool:
        """Sleep ``seconds``; True if ``stop_event`` was set meanwhile."""
        if stop_event is None:
            time.sleep(seconds)
            return False
        return stop_event.wait(seconds)


# -- types and QoS -----------------------------------------------------------------
def resolve_msg_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' (or ROS 1 style 'sensor_msgs/Image') -> sensor_msgs.msg.Image."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise PlayerError(f"cannot parse message type {msgtype!r}")
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
    except ImportError as exc:
        raise PlayerError(f"message package for {msgtype} is not importable ({exc}); "
                          "install its ROS 2 Python package") from exc
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise PlayerError(f"{pkg}.{kind} has no message {name} (from {msgtype})")
    return cls


def _offer_summary(offers: Sequence[Any]) -> tuple[bool, bool, int]:
    """(all reliable, all transient_local, largest keep-last depth) of recorded offers."""
    from rosbags.interfaces import QosDurability, QosReliability

    reliable = all(o.reliability != QosReliability.BEST_EFFORT for o in offers)
    latched = bool(offers) and all(o.durability == QosDurability.TRANSIENT_LOCAL for o in offers)
    depth = max((o.depth for o in offers if o.depth > 0), default=DEFAULT_DEPTH)
    return reliable, latched, depth


def qos_profile(mode: str, offers: Sequence[Any] = ()) -> Any:
    """The rclpy QoSProfile to publish with; ``offers`` are the bag's rosbags Qos entries."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if mode == "sensor_data":
        return qos_profile_sensor_data
    if mode == "reliable":
        return QoSProfile(depth=RELIABLE_MIN_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if mode != "auto":
        raise PlayerError(f"qos must be one of {QOS_CHOICES}, got {mode!r}")
    reliable, latched, depth = _offer_summary(offers)
    if reliable and not latched:
        depth = max(depth, RELIABLE_MIN_DEPTH)
    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def _normalise_topic(name: str) -> str:
    return name if name.startswith("/") else f"/{name}"


def plan_topics(connections: Iterable[Any], topics: Sequence[str] | None, qos: str,
                warn: Any = print) -> dict[str, TopicPlan]:
    """Topics to publish. Unknown message types are skipped with a warning, unless the
    topic was asked for explicitly, which is an error, as is a filter naming no bag topic."""
    by_topic: dict[str, list[Any]] = {}
    for conn in connections:
        by_topic.setdefault(conn.topic, []).append(conn)
    wanted = None if topics is None else {_normalise_topic(t) for t in topics}
    if wanted is not None and (missing := sorted(wanted - set(by_topic))):
        raise PlayerError(f"topic(s) {missing} not in the bag; it has {sorted(by_topic)}")
    plans = {}
    for name, conns in sorted(by_topic.items()):
        if wanted is not None and name not in wanted:
            continue
        types = {c.msgtype for c in conns}
        if len(types) > 1:
            raise PlayerError(f"topic {name} has several message types {sorted(types)}")
        (msgtype,) = types
        try:
            cls = resolve_msg_class(msgtype)
        except PlayerError as exc:
            if wanted is not None:
                raise
            warn(f"skipping {name}: {exc}")
            continue
        offers = [q for c in conns for q in getattr(c.ext, "offered_qos_profiles", [])]
        plans[name] = TopicPlan(name, msgtype, cls, qos_profile(qos, offers))
    return plans


# -- the player --------------------------------------------------------------------
class BagPlayer:
    """Publishes a bag's messages through ``node``'s publishers on the bag's schedule.

    ``play()`` blocks the calling thread; the node needs no executor for publishing, but
    may be spun elsewhere (e.g. with subscribers in the same process).
    """

    def __init__(self, bag_path: str | Path, node: Any, rate: float = 1.0, loop: bool = False,
                 topics: Sequence[str] | None = None, qos: str = "auto", start_offset: float = 0.0,
                 timer: Timer | None = None) -> None:
        from rosbags.rosbag2 import Reader

        if not (math.isfinite(rate) and rate > 0):
            raise PlayerError(f"rate must be a finite number > 0, got {rate}")
        if start_offset < 0:
            raise PlayerError(f"start offset must be >= 0 s, got {start_offset}")
        if qos not in QOS_CHOICES:
            raise PlayerError(f"qos must be one of {QOS_CHOICES}, got {qos!r}")
        path = Path(bag_path)
        if not path.exists():
            raise PlayerError(f"bag not found: {path}")
        self.rate, self.loop, self._timer = float(rate), loop, timer or Timer()
        self.ack_timeout_s = ACK_TIMEOUT_S
        self._reader = Reader(path)
        try:
            self._reader.open()
        except Exception as exc:  # rosbags raises ReaderError and others for bad bags
            raise PlayerError(f"cannot open bag {path}: {exc}") from exc
        self._node = node
        self.publishers: dict[str, Any] = {}
        self._raw_ok = True
        try:
            self.plans = plan_topics(self._reader.connections, topics, qos, warn=self._warn)
            if not self.plans:
                raise PlayerError(f"nothing to play in {path}")
            self._connections = [c for c in self._reader.connections if c.topic in self.plans]
            self._start_ns = self._reader.start_time + seconds_to_ns(start_offset)
            for name, plan in self.plans.items():
                self.publishers[name] = node.create_publisher(plan.msg_class, name, plan.qos)
        except BaseException:
            self.close()
            raise

    def _warn(self, text: str) -> None:
        logger = getattr(self._node, "get_logger", None)
        (logger().warning if logger else print)(text)

    @property
    def message_count(self) -> int:
        """Messages of the played topics in one full pass (ignoring the start offset)."""
        return sum(c.msgcount for c in self._connections)

    def _publish(self, topic: str, raw: bytes, stats: PlayStats) -> None:
        """Raw CDR if rclpy takes bytes; else once and for all fall back to decoding."""
        pub = self.publishers[topic]
        if self._raw_ok:
            try:
                pub.publish(raw)
                return
            except TypeError:
                self._raw_ok = False
                self._warn("rclpy cannot publish serialized bytes; deserializing messages")
        from rclpy.serialization import deserialize_message

        pub.publish(deserialize_message(raw, self.plans[topic].msg_class))
        stats.deserialized += 1

    def _one_pass(self, t_wall0: float, stats: PlayStats, budget: int | None,
                  stop_event: threading.Event | None) -> tuple[float, bool]:
        """Publish one pass starting at wall time ``t_wall0``; returns (its scheduled end, stopped)."""
        t_bag0 = None
        due = t_wall0
        for conn, t_ns, raw in self._reader.messages(connections=self._connections, start=self._start_ns):
            if budget is not None and stats.published >= budget:
                return due, True
            if stop_event is not None and stop_event.is_set():
                return due, True
            t_bag0 = t_ns if t_bag0 is None else t_bag0
            due = t_wall0 + (t_ns - t_bag0) / NS_PER_S / self.rate
            delay = due - self._timer.now()
            if delay > 0 and self._timer.wait(delay, stop_event):
                return due, True
            stats.max_lag_s = max(stats.max_lag_s, self._timer.now() - due)
            self._publish(conn.topic, raw if isinstance(raw, bytes) else bytes(raw), stats)
            stats.published += 1
            stats.per_topic[conn.topic] += 1
        return due, False

    def play(self, max_messages: int | None = None, stop_event: threading.Event | None = None) -> PlayStats:
        """Play once, or until ``stop_event``/``max_messages`` when looping. A new pass
        starts right after the previous pass's last message, like ``ros2 bag play --loop``."""
        stats = PlayStats()
        t0 = self._timer.now()
        t_pass = t0
        while True:
            end, stats.stopped = self._one_pass(t_pass, stats, max_messages, stop_event)
            if stats.stopped:
                break
            stats.passes += 1
            if not self.loop or stats.published == 0:
                break
            if max_messages is not None and stats.published >= max_messages:
                stats.stopped = True
                break
            t_pass = max(end, self._timer.now())
        stats.wall_s = self._timer.now() - t0
        return stats

    def wait_acknowledged(self, timeout_s: float = ACK_TIMEOUT_S) -> list[str]:
        """Wait until every reliable reader acknowledged every message published so far;
        returns the topics still unacknowledged after ``timeout_s``. A publisher destroyed
        earlier takes its unsent fragments with it: the last large image may never arrive."""
        from rclpy.duration import Duration
        from rclpy.qos import ReliabilityPolicy

        pending = []
        for name, pub in self.publishers.items():
            wait = getattr(pub, "wait_for_all_acked", None)  # rclpy >= Galactic
            if wait is None or self.plans[name].qos.reliability != ReliabilityPolicy.RELIABLE:
                continue
            if not wait(Duration(nanoseconds=seconds_to_ns(timeout_s))):
                pending.append(name)
        return pending

    def close(self) -> None:
        """Wait for reliable readers' acknowledgements (``wait_acknowledged``), then destroy
        the publishers and close the bag; the node stays the caller's."""
        try:
            if self.publishers and (pending := self.wait_acknowledged(self.ack_timeout_s)):
                self._warn(f"closing with messages not acknowledged by every reader on {pending}")
        finally:
            for pub in self.publishers.values():
                self._node.destroy_publisher(pub)
            self.publishers = {}
            self._reader.close()

    def __enter__(self) -> "BagPlayer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- CLI ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-play", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 folder (metadata.yaml) or a .mcap/.db3 file")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    p.add_argument("--loop", action="store_true", help="restart at the end until Ctrl-C")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    p.add_argument("--start-offset", type=float, default=0.0, help="skip this many seconds of the bag")
    p.add_argument("--qos", choices=QOS_CHOICES, default="auto",
                   help="auto = the bag's recorded offer (reliable if none); see the description")
    p.add_argument("--delay", type=float, default=DEFAULT_DELAY_S,
                   help=f"seconds to wait after creating publishers, for discovery (default {DEFAULT_DELAY_S})")
    p.add_argument("--node-name", default="occdepth_bag_player")
    return p


def _summary(stats: PlayStats) -> str:
    topics = ", ".join(f"{t}: {n}" for t, n in sorted(stats.per_topic.items()))
    return (f"published {stats.published} messages in {stats.wall_s:.2f} s over {stats.passes} pass(es), "
            f"max lag {stats.max_lag_s * 1e3:.1f} ms ({topics})")


def main(argv: list[str] | None = None) -> int:
    """``--ros-args`` (remaps, namespace) after the player's own arguments go to rclpy."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["occdepth-play", *argv])[1:])
    if args.delay < 0:
        print("occdepth-play: error: --delay must be >= 0", file=sys.stderr)
        return 2
    # rclpy's own SIGINT handler would invalidate the context under a running publish;
    # ours only asks play() to stop, so the summary still gets printed.
    rclpy.init(args=["occdepth-play", *argv], signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        node = rclpy.create_node(args.node_name)
        try:
            with BagPlayer(args.bag, node, rate=args.rate, loop=args.loop, topics=args.topics,
                           qos=args.qos, start_offset=args.start_offset) as player:
                node.get_logger().info(f"playing {args.bag}: {sorted(player.plans)} at rate {args.rate}")
                stop.wait(args.delay)
                stats = player.play(stop_event=stop)
            node.get_logger().info(_summary(stats))
        finally:
            node.destroy_node()
    except PlayerError as exc:
        print(f"occdepth-play: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
