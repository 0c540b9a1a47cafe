"""occdepth-bench: stage latency per backend, micro-benchmarks, targets."""

from __future__ import annotations

from ..bench.cli import main

__all__ = ["main"]
