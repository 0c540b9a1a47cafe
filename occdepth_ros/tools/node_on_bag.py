"""occdepth_node, a bag player and output collectors in one process on their own DDS
domain: what the demo and the end-to-end test both need."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from ..node.ros_node import OccDepthNode
from .bag_player import BagPlayer, PlayStats

DISCOVERY_S = 1.0


class NodeOnBag:
    """Context manager. ``topics`` maps a key to (message type, topic); every received
    message is kept in ``got[key]`` as (arrival wall time, message)."""

    def __init__(self, bag: str | Path, overrides: dict[str, Any], topics: dict[str, tuple[type, str]],
                 domain_id: int) -> None:
        self.bag, self.overrides, self.topics, self.domain_id = Path(bag), overrides, topics, domain_id
        self.got: dict[str, list[tuple[float, Any]]] = {key: [] for key in topics}
        self._lock = threading.Lock()

    def __enter__(self) -> "NodeOnBag":
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        try:
            params = [Parameter(k, value=v) for k, v in self.overrides.items()]
            self.node = OccDepthNode(context=self.context, parameter_overrides=params)
            self.sink = rclpy.create_node("occdepth_sink", context=self.context)
            self.player_node = rclpy.create_node("occdepth_player", context=self.context)
            for key, (msg_type, topic) in self.topics.items():
                self.sink.create_subscription(msg_type, topic, lambda m, k=key: self._keep(k, m), 10)
            self.executor = MultiThreadedExecutor(context=self.context)
            for n in (self.node, self.sink, self.player_node):
                self.executor.add_node(n)
            self._spin = threading.Thread(target=self.executor.spin, daemon=True)
            self._spin.start()
            time.sleep(DISCOVERY_S)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        return self

    def _keep(self, key: str, msg: Any) -> None:
        with self._lock:
            self.got[key].append((time.time(), msg))

    def messages(self, key: str) -> list[Any]:
        with self._lock:
            return [m for _, m in self.got[key]]

    def play(self, rate: float = 1.0) -> tuple[PlayStats, float]:
        """Play the bag once; returns the player's stats and the wall time playback began."""
        with BagPlayer(self.bag, self.player_node, rate=rate) as player:
            start = time.time()
            return player.play(), start

    def wait_for(self, key: str, n: int, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                if len(self.got[key]) >= n:
                    return True
            time.sleep(0.05)
        return False

    def __exit__(self, *exc: Any) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.sink.destroy_node()
        self.player_node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spin.join(timeout=5.0)
