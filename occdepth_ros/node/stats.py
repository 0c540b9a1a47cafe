"""Rolling runtime statistics of the node, turned into one diagnostics report.

Plain Python with an injectable clock (``now`` in seconds of a monotonic clock) so the
levels are unit-tested; ``messages.diagnostic_array`` turns a report into ROS types.

Levels (diagnostic_msgs/DiagnosticStatus values):
* STALE: no frame processed within ``stale_after_s`` (or none yet);
* ERROR: the median processing time over the window exceeds the budget;
* WARN: the slowest frame of the window exceeds the budget;
* input problems since the previous report raise the level to at least WARN, and replace
  STALE (a node fed only garbage, or waiting on a topic nobody publishes, says so instead of
  looking merely idle): drops that mean bad or lost data (``WARN_DROP_REASONS``), QoS
  incompatibilities, and the problems the caller passes (a missing stream, by topic);
  ``busy`` drops (latest pair wins), queue ``overflow`` and ``flushed`` (bag loop) drops are
  expected and only counted;
* OK otherwise.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Sequence

DROP_REASONS = ("busy", "overflow", "unmatched", "flushed", "stamp_backwards", "duplicate", "lost",
                "bad_input", "calibration")
WARN_DROP_REASONS = ("unmatched", "stamp_backwards", "duplicate", "lost", "bad_input", "calibration")
EVENTS = ("qos_incompatible",)  # counted middleware events that are not frame drops
MS_PER_S = 1000.0


class Level(IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class StatsReport:
    level: Level
    message: str
    values: dict[str, str] = field(default_factory=dict)  # DiagnosticStatus.values, in order


class RuntimeStats:
    """Input rate, processing time against a budget, latency and drop counters."""

    def __init__(self, budget_ms: float, window: int = 50, stale_after_s: float = 5.0) -> None:
        if budget_ms <= 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self.budget_ms = float(budget_ms)
        self.window = int(window)
        self.stale_after_s = float(stale_after_s)
        self._inputs: deque[float] = deque(maxlen=window)
        self._outputs: deque[float] = deque(maxlen=window)
        self._processing_ms: deque[float] = deque(maxlen=window)
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._drops = {reason: 0 for reason in DROP_REASONS}
        self._reported_drops = dict(self._drops)
        self._events = {name: 0 for name in EVENTS}
        self._reported_events = dict(self._events)
        self._last_detail: dict[str, str] = {}  # the latest reason text per drop reason
        self.frames_processed = 0

    # -- recording -----------------------------------------------------------------
    def record_input(self, now: float | None = None) -> None:
        """A synchronised input set arrived (whether or not it will be processed)."""
        self._inputs.append(_now(now))

    def record_processed(self, processing_s: float, latency_s: float | None = None,
                         now: float | None = None) -> None:
        """A frame was published: its processing time and stamp-to-publish latency."""
        self._outputs.append(_now(now))
        self._processing_ms.append(processing_s * MS_PER_S)
        if latency_s is not None:
            self._latency_ms.append(latency_s * MS_PER_S)
        self.frames_processed += 1

    def count_drop(self, reason: str, n: int = 1, detail: str | None = None) -> None:
        """``detail``: why (e.g. both image sizes); the report quotes the latest one."""
        if reason not in self._drops:
            raise KeyError(f"unknown drop reason {reason!r}; reasons are {list(DROP_REASONS)}")
        self._drops[reason] += n
        if detail:
            self._last_detail[reason] = detail

    def count_event(self, name: str, n: int = 1) -> None:
        if name not in self._events:
            raise KeyError(f"unknown event {name!r}; events are {list(EVENTS)}")
        self._events[name] += n

    # -- queries -------------------------------------------------------------------
    @property
    def drops(self) -> dict[str, int]:
        return dict(self._drops)

    @property
    def events(self) -> dict[str, int]:
        return dict(self._events)

    def input_rate_hz(self, now: float | None = None) -> float:
        return _rate(self._inputs, _now(now), self.stale_after_s)

    def output_rate_hz(self, now: float | None = None) -> float:
        return _rate(self._outputs, _now(now), self.stale_after_s)

    def processing_ms(self) -> tuple[float, float] | None:
        """(median, max) processing time over the window, or None before the first frame."""
        if not self._processing_ms:
            return None
        return statistics.median(self._processing_ms), max(self._processing_ms)

    def report(self, now: float | None = None, problems: Sequence[str] = (),
               extra_values: dict[str, str] | None = None) -> StatsReport:
        """The current level and values; remembers the drop counts for the next report.

        ``problems``: input problems the caller sees now (e.g. a stream missing, by topic);
        ``extra_values``: appended to the values (e.g. per-stream queue lengths)."""
        now = _now(now)
        new_drops = {r: self._drops[r] - self._reported_drops[r] for r in DROP_REASONS}
        new_events = {e: self._events[e] - self._reported_events[e] for e in EVENTS}
        self._reported_drops, self._reported_events = dict(self._drops), dict(self._events)
        level, reasons = self._processing_level(now)
        inputs = list(problems)
        inputs += [f"{new_drops[r]} {r} drop(s)" + (f" ({self._last_detail[r]})" if r in self._last_detail else "")
                   for r in WARN_DROP_REASONS if new_drops[r]]
        inputs += [f"{new_events[e]} {e} event(s)" for e in EVENTS if new_events[e]]
        if inputs:
            level = Level.WARN if level in (Level.OK, Level.STALE) else level
            reasons = inputs + reasons
        message = "; ".join(reasons) if reasons else "ok"
        values = self._values(now)
        values.update(extra_values or {})
        return StatsReport(level, message, values)

    # -- internals -----------------------------------------------------------------
    def _processing_level(self, now: float) -> tuple[Level, list[str]]:
        if not self._outputs or now - self._outputs[-1] > self.stale_after_s:
            return Level.STALE, [f"no frame processed in the last {self.stale_after_s:g} s"]
        p50, worst = self.processing_ms()  # type: ignore[misc]
        if p50 > self.budget_ms:
            return Level.ERROR, [f"median processing {p50:.0f} ms over the {self.budget_ms:g} ms budget"]
        if worst > self.budget_ms:
            return Level.WARN, [f"slowest frame {worst:.0f} ms over the {self.budget_ms:g} ms budget"]
        return Level.OK, []

    def _values(self, now: float) -> dict[str, str]:
        proc = self.processing_ms()
        values = {
            "input_rate_hz": f"{self.input_rate_hz(now):.2f}",
            "output_rate_hz": f"{self.output_rate_hz(now):.2f}",
            "processing_p50_ms": f"{proc[0]:.1f}" if proc else "n/a",
            "processing_max_ms": f"{proc[1]:.1f}" if proc else "n/a",
            "processing_budget_ms": f"{self.budget_ms:g}",
            "latency_p50_ms": f"{statistics.median(self._latency_ms):.1f}" if self._latency_ms else "n/a",
            "frames_processed": str(self.frames_processed),
        }
        values.update({f"dropped_{r}": str(n) for r, n in self._drops.items()})
        values.update({e: str(n) for e, n in self._events.items()})
        values.update({f"last_{r}": d for r, d in self._last_detail.items()})
        return values


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else float(now)


def _rate(stamps: deque[float], now: float, stale_after_s: float) -> float:
    """Events per second over the window; 0 once the stream has gone quiet."""
    if len(stamps) < 2 or now - stamps[-1] > stale_after_s:
        return 0.0
    span = stamps[-1] - stamps[0]
    return (len(stamps) - 1) / span if span > 0 else 0.0
