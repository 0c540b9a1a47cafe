"""A bag player and output collectors on one DDS domain, for a node running in another process."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor

from occdepth_ros.tools.bag_player import BagPlayer, PlayStats


class BagWatch:
    """Context manager. ``topics`` maps a key to (message type, topic); messages are kept in
    ``got[key]`` in arrival order."""

    def __init__(self, topics: dict[str, tuple[type, str]], domain_id: int) -> None:
        self.topics, self.domain_id = topics, domain_id
        self.got: dict[str, list[Any]] = {key: [] for key in topics}
        self._lock = threading.Lock()

    def __enter__(self) -> "BagWatch":
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.sink = rclpy.create_node("bag_watch_sink", context=self.context)
        self.player_node = rclpy.create_node("bag_watch_player", context=self.context)
        for key, (msg_type, topic) in self.topics.items():
            self.sink.create_subscription(msg_type, topic, lambda m, k=key: self._keep(k, m), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.sink)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        return self

    def _keep(self, key: str, msg: Any) -> None:
        with self._lock:
            self.got[key].append(msg)

    def messages(self, key: str) -> list[Any]:
        with self._lock:
            return list(self.got[key])

    def wait_for(self, key: str, n: int, timeout_s: float) -> bool:
        """True once ``n`` messages of ``key`` arrived, False after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if len(self.messages(key)) >= n:
                return True
            time.sleep(0.05)
        return False

    def wait_subscribed(self, topics: list[str], timeout_s: float) -> bool:
        """True once every topic in ``topics`` has a subscriber (the node is listening)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(self.player_node.count_subscribers(t) > 0 for t in topics):
                return True
            time.sleep(0.1)
        return False

    def play(self, bag: Path, rate: float) -> PlayStats:
        """Play once; closing the player waits until every reliable reader acknowledged."""
        with BagPlayer(bag, self.player_node, rate=rate) as player:
            time.sleep(0.5)  # publishers discovered by the node before the first message
            return player.play()

    def __exit__(self, *exc: Any) -> None:
        self.executor.shutdown()
        self.sink.destroy_node()
        self.player_node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spin.join(timeout=5.0)
