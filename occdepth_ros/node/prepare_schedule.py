"""When the pipelined node prepares its next input set: just before the network wants it.

Preparing every arriving set (decode, resize, normalise: 5-10 ms of CPU) wastes that CPU
on the sets the latest-wins rule then drops: at a 10 Hz input and a 3-4 Hz network about
two in three. On a 2-core machine that CPU is taken from the network's threads. So the
network stage *requests* its next set when it starts a frame, due when the frame is
expected to end less the time a prepare takes; the prepare stage waits for the request
and its due time, then prepares the newest set there is. The set is still ready when the
network frees, and it is as new as the one preparing everything would have handed over,
except for sets that arrive within the lead time before the network frees.

Estimates are exponential moving averages of the measured wall times; until the first
frame has been timed a request is due at once (prepare-ahead, as before).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SMOOTHING = 0.3  # weight of the newest sample in the moving averages
LEAD_FACTOR = 2.0  # prepare this many typical prepare times before the network frees
LEAD_MARGIN_S = 0.01  # plus this much, for the hand-over and scheduling jitter


class PrepareSchedule:
    """The network stage calls ``request`` when it takes a frame (and ``network_took``
    with its wall time when it ends); the prepare stage calls ``wait_due`` before taking
    an input set, ``prepared`` with its wall time, and ``fulfil`` before handing it on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._due: float | None = None  # the pending request's due time; None: none pending
        self._closed = False
        self.network_s: float | None = None  # typical network wall time
        self.prepare_s: float | None = None  # typical prepare wall time

    def lead_s(self) -> float:
        return LEAD_FACTOR * (self.prepare_s or 0.0) + LEAD_MARGIN_S

    def request(self, started: float | None = None) -> None:
        """The network started a frame at ``started`` (default now): the next set is due
        when it is expected to end, less the lead; at once while nothing is timed yet.
        An earlier pending due time stands."""
        now = self._clock() if started is None else started
        due = now if self.network_s is None else now + self.network_s - self.lead_s()
        with self._cond:
            self._due = due if self._due is None else min(self._due, due)
            self._cond.notify_all()

    def request_now(self) -> None:
        """The network waits for a set (or the last one failed to prepare)."""
        with self._cond:
            self._due = self._clock()
            self._cond.notify_all()

    def wait_due(self, timeout: float) -> bool:
        """True once a request is pending and due; False after ``timeout`` or close()."""
        end = self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                if self._due is not None and now >= self._due:
                    return True
                if now >= end:
                    return False
                wait = end - now if self._due is None else min(end, self._due) - now
                self._cond.wait(max(wait, 0.0))
            return False

    def fulfil(self) -> None:
        """The pending request is met (call before handing the set on, so the network's
        next request cannot be cleared by this one)."""
        with self._cond:
            self._due = None

    def network_took(self, seconds: float) -> None:
        self.network_s = _smooth(self.network_s, seconds)

    def prepared(self, seconds: float) -> None:
        self.prepare_s = _smooth(self.prepare_s, seconds)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _smooth(average: float | None, sample: float) -> float:
    return sample if average is None else (1.0 - SMOOTHING) * average + SMOOTHING * sample
