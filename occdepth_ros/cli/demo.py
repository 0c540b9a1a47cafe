"""occdepth-demo: the demo: synthetic bag -> DDS -> occdepth_node, rate and latency."""

from __future__ import annotations

from ..tools.demo import main

__all__ = ["main"]
