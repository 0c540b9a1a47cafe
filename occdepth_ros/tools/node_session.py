"""occdepth_node in this process on its own DDS domain, with a feeder, collectors and an
optional bag player: the one harness behind the demo, the end-to-end check and the node
tests (on real DDS, never a mock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from ..node.ros_node import OccDepthNode
from .bag_player import BagPlayer, PlayStats

DISCOVERY_S = 1.0
COLLECT_DEPTH = 10
# The node's input topics (relative names, as the node subscribes them without remaps).
INPUTS = {"left": "left/image_rect", "right": "right/image_rect",
          "left_info": "left/camera_info", "right_info": "right/camera_info"}


class NodeSession:
    """Context manager. ``topics`` maps a key to (message type, topic) to collect: every
    message received is appended to ``got[key]`` and its wall arrival time to ``arrivals[key]``.
    The feeder publishes with ``input_qos`` (default: the ROS default profile, reliable,
    which matches a reliable or a best-effort subscriber)."""

    def __init__(self, overrides: dict[str, Any], topics: dict[str, tuple[type, str]], domain_id: int,
                 input_qos: QoSProfile | None = None, discovery_s: float = DISCOVERY_S) -> None:
        self.overrides, self.topics, self.domain_id = dict(overrides), dict(topics), domain_id
        self.input_qos = input_qos or QoSProfile(depth=COLLECT_DEPTH)
        self.discovery_s = discovery_s
        self.got: dict[str, list[Any]] = {key: [] for key in topics}
        self.arrivals: dict[str, list[float]] = {key: [] for key in topics}
        self._subs: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------
    def __enter__(self) -> "NodeSession":
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        try:
            params = [Parameter(k, value=v) for k, v in self.overrides.items()]
            self.node = OccDepthNode(context=self.context, parameter_overrides=params)
            self.io = rclpy.create_node("occdepth_session", context=self.context)
            self.pubs = {key: self.io.create_publisher(CameraInfo if key.endswith("info") else Image, topic,
                                                       self.input_qos)
                         for key, topic in INPUTS.items()}
            for key in self.topics:
                self.subscribe(key)
            self._start_spinning()
            time.sleep(self.discovery_s)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        return self

    def _start_spinning(self) -> None:
        """The node spins alone on one thread, as ``occdepth_node``'s ``rclpy.spin`` runs it
        (its own timers re-create input subscriptions, which rclpy allows only from the thread
        that builds the wait set); the feeder and collectors spin on a second thread."""
        self._executors = []
        self._spins = []
        for node in (self.node, self.io):
            executor = SingleThreadedExecutor(context=self.context)
            executor.add_node(node)
            thread = threading.Thread(target=executor.spin, daemon=True)
            thread.start()
            self._executors.append(executor)
            self._spins.append(thread)

    def _stop_spinning(self) -> None:
        for executor in self._executors:
            executor.shutdown()
        for thread in self._spins:
            thread.join(timeout=5.0)

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop_spinning()
        self.node.destroy_node()
        self.io.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # -- collecting ----------------------------------------------------------------
    def subscribe(self, key: str) -> None:
        msg_type, topic = self.topics[key]
        self._subs[key] = self.io.create_subscription(msg_type, topic, lambda m, k=key: self._keep(k, m),
                                                      COLLECT_DEPTH)

    @contextmanager
    def unsubscribed(self, key: str) -> Iterator[None]:
        """Without the collector of ``key`` inside the block; it is back afterwards. The
        executor stops while the subscription is destroyed: rclpy (Jazzy) fails in a
        spinning executor whose wait set still holds a destroyed subscription's events."""
        self._stop_spinning()
        self.io.destroy_subscription(self._subs.pop(key))
        self._start_spinning()
        try:
            yield
        finally:
            self._stop_spinning()
            self.subscribe(key)
            self._start_spinning()

    def _keep(self, key: str, msg: Any) -> None:
        with self._lock:
            self.got[key].append(msg)
            self.arrivals[key].append(time.time())

    def messages(self, key: str) -> list[Any]:
        with self._lock:
            return list(self.got[key])

    def count(self, key: str) -> int:
        with self._lock:
            return len(self.got[key])

    def wait_for(self, key: str, n: int, timeout_s: float) -> bool:
        """True once ``got[key]`` holds ``n`` messages; False after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while self.count(key) < n:
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
        return True

    def wait_drops(self, reason: str, n: int, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while self.node.stats.drops[reason] < n:
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
        return True

    # -- feeding -------------------------------------------------------------------
    def send(self, left: Image | None, right: Image | None,
             infos: tuple[CameraInfo | None, CameraInfo | None] | None = None) -> None:
        """Publish the given messages (None: that stream is left out)."""
        for key, msg in (("left", left), ("right", right), *zip(("left_info", "right_info"), infos or ())):
            if msg is not None:
                self.pubs[key].publish(msg)

    def play(self, bag: str | Path, rate: float = 1.0) -> tuple[PlayStats, float]:
        """Play a rosbag2 once into the node; the player's stats and the wall time it began."""
        with BagPlayer(bag, self.io, rate=rate) as player:
            start = time.time()
            return player.play(), start
