"""Which input topics have gone quiet: the node names them in a warning and in diagnostics.

Plain Python with an injectable monotonic clock. A stream is missing when nothing arrived on
it for ``timeout_s`` (or, never seen, for ``timeout_s`` since the watch started): a wrong
topic name, a camera_info nobody publishes, a dead driver or a QoS mismatch all look like this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

MISSING_AFTER_S = 2.0


@dataclass(frozen=True)
class MissingStream:
    stream: str
    topic: str
    silent_s: float
    never_seen: bool

    def describe(self) -> str:
        if self.never_seen:
            return f"nothing received on {self.topic} ({self.stream}) in {self.silent_s:.1f} s"
        return f"no message on {self.topic} ({self.stream}) for {self.silent_s:.1f} s"


class StreamWatch:
    def __init__(self, topics: Mapping[str, str], timeout_s: float = MISSING_AFTER_S,
                 now: float | None = None) -> None:
        """``topics``: stream name -> the (resolved) topic it comes from."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.topics = dict(topics)
        self.timeout_s = float(timeout_s)
        self._start = _now(now)
        self._last: dict[str, float | None] = dict.fromkeys(self.topics)

    def seen(self, stream: str, now: float | None = None) -> None:
        self._last[stream] = _now(now)

    def missing(self, now: float | None = None) -> list[MissingStream]:
        now = _now(now)
        out = []
        for stream, topic in self.topics.items():
            last = self._last[stream]
            since = self._start if last is None else last
            if now - since >= self.timeout_s:
                out.append(MissingStream(stream, topic, now - since, last is None))
        return out

    def ages(self, now: float | None = None) -> dict[str, str]:
        """Seconds since each stream's last message ('never' before the first), for diagnostics."""
        now = _now(now)
        return {stream: "never" if last is None else f"{now - last:.1f}" for stream, last in self._last.items()}


class ReasonThrottle:
    """At most one log line per reason per ``period_s``: a second reason is never hidden by
    a first one (rclpy's own throttle is per call site, so one helper would share it)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = float(period_s)
        self._last: dict[str, float] = {}

    def allow(self, reason: str, now: float | None = None) -> bool:
        now = _now(now)
        last = self._last.get(reason)
        if last is not None and now - last < self.period_s:
            return False
        self._last[reason] = now
        return True


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else float(now)
