"""occdepth_node fed from a rosbag2 in one process (the demo and the end-to-end test):
a NodeSession that knows its bag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bag_player import PlayStats
from .node_session import NodeSession


class NodeOnBag(NodeSession):
    def __init__(self, bag: str | Path, overrides: dict[str, Any], topics: dict[str, tuple[type, str]],
                 domain_id: int) -> None:
        super().__init__(overrides, topics, domain_id)
        self.bag = Path(bag)

    def __enter__(self) -> "NodeOnBag":
        super().__enter__()
        return self

    def play(self, rate: float = 1.0) -> tuple[PlayStats, float]:  # type: ignore[override]
        return super().play(self.bag, rate)
