"""Latency samples, percentiles and peak memory for the benchmark.

Two memory figures, because neither sees everything:

* ``py_peak_mb``: tracemalloc's peak of Python and NumPy allocations during one run
  (torch's CPU allocator is invisible to it);
* ``rss_peak_mb``: how far the process's resident set rose above its level before the
  run (Linux VmHWM, reset through /proc/self/clear_refs first). It includes torch and
  native code, but memory the allocator reuses from earlier frames does not show.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIB = 1024.0 * 1024.0
KIB_PER_MIB = 1024.0
PERCENTILES = (50, 99)
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_PEAK_RSS = "5"  # proc(5): writing 5 to clear_refs resets VmHWM to VmRSS


@dataclass
class Stat:
    """Latency samples (ms) of one measured thing, and its peak memory."""

    name: str
    samples_ms: list[float] = field(default_factory=list)
    py_peak_mb: float | None = None
    rss_peak_mb: float | None = None
    kind: str = ""  # pipeline stages: "network" or "host"
    note: str = ""

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q)) if self.samples_ms else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples_ms)) if self.samples_ms else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "n": len(self.samples_ms),
            "p50_ms": _round(self.p50), "p99_ms": _round(self.p99), "mean_ms": _round(self.mean),
            "py_peak_mb": _round(self.py_peak_mb), "rss_peak_mb": _round(self.rss_peak_mb),
            "samples_ms": [_round(s) for s in self.samples_ms], "note": self.note,
        }


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK_RSS)
    except OSError:
        return False
    return True


@dataclass
class MemoryProbe:
    py_peak_mb: float | None = None
    rss_peak_mb: float | None = None


@contextmanager
def memory_probe() -> Iterator[MemoryProbe]:
    """Peak memory of the enclosed code (see the module docstring)."""
    probe = MemoryProbe()
    rss_ok = _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        yield probe
    finally:
        _, peak = tracemalloc.get_traced_memory()
        if not was_tracing:
            tracemalloc.stop()
        probe.py_peak_mb = max(0, peak - base) / MIB
        hwm = _status_kib("VmHWM")
        if rss_ok and hwm is not None and rss_before is not None:
            probe.rss_peak_mb = max(0, hwm - rss_before) / KIB_PER_MIB


def time_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1e3, result


def measure(name: str, fn: Callable[[], Any], warmup: int, iters: int, budget_s: float | None = None,
            memory: bool = True, min_iters: int = 2) -> Stat:
    """Run ``fn`` ``warmup`` times untimed, then up to ``iters`` timed times (stopping
    early, after ``min_iters``, once ``budget_s`` is spent), then once under the memory
    probe (untimed: tracemalloc slows Python code down)."""
    stat = Stat(name)
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for i in range(iters):
        ms, _ = time_ms(fn)
        stat.samples_ms.append(ms)
        if budget_s is not None and i + 1 >= min_iters and time.perf_counter() - start > budget_s:
            break
    if memory:
        with memory_probe() as probe:
            fn()
        stat.py_peak_mb, stat.rss_peak_mb = probe.py_peak_mb, probe.rss_peak_mb
    return stat
