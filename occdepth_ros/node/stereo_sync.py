"""Pairing buffer for the stereo inputs (left/right image + camera_info).

message_filters is not on PyPI, so the node pairs messages itself. The policy is the
one image_pipeline uses through message_filters' ExactTime (``tolerance_ns == 0``) and
ApproximateEpsilonTime (``tolerance_ns > 0``):

* every stream has a FIFO of at most ``queue_size`` messages (an int for all streams, or a
  mapping stream -> size); a full FIFO drops its oldest message (counted as ``overflow``):
  that is what a silent stream causes, and also what a small stream that runs ahead of a
  large one causes: camera_info (a few hundred bytes) arrives at once while the image of
  the same stamp (megabytes, fragmented) is still in transit or waiting for the executor,
  so under load the info queue fills up with newer stamps, its oldest entry is pushed out
  and the late image then finds no partner (``unmatched``). The node therefore gives the
  small camera_info streams a deep queue (``INFO_QUEUE_SIZE``);
* whenever every FIFO holds a message, the heads (the oldest of each stream) are
  compared: if their stamp spread ``max - min`` is ``<= tolerance_ns`` (inclusive) the
  heads are emitted as one set, oldest first; otherwise the oldest head can never be
  matched any more (every other stream has moved past it, and stamps only grow per
  stream), so it is dropped (counted as ``unmatched``) and the heads are compared again;
* a stamp older than the last one accepted on its stream is rejected (``backwards``), one
  equal to it too (``duplicate``: a driver that re-publishes, or two streams remapped onto
  one topic); a jump back by at least ``reset_jump_ns`` (a looping bag, a simulator
  reset) clears the whole buffer instead (``resets``, the cleared messages ``flushed``)
  so the node recovers instead of rejecting every later message.

Greedy oldest-first pairing is exact as long as the tolerance is below half the frame
period, which is how it should be set (a few milliseconds for hardware-triggered rigs).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

STEREO_STREAMS = ("left_image", "right_image", "left_info", "right_info")
IMAGE_STREAMS = ("left_image", "right_image")  # with a calibration file, no camera_info
INFO_STREAMS = ("left_info", "right_info")
INFO_QUEUE_SIZE = 100  # camera_info is tiny: a deep queue costs nothing and absorbs image lag
NS_PER_S = 1_000_000_000


@dataclass
class SyncCounters:
    """Cumulative counts since construction (never reset, so diagnostics can diff them)."""

    received: int = 0
    matched: int = 0
    overflow: int = 0  # dropped: the stream's queue was full
    unmatched: int = 0  # dropped: no partner within the tolerance can arrive any more
    backwards: int = 0  # rejected: stamp older than the stream's previous one
    duplicate: int = 0  # rejected: stamp equal to the stream's previous one
    resets: int = 0  # buffer cleared after a large jump back in time
    flushed: int = 0  # messages discarded by those resets
    last_unmatched_stream: str = ""  # the stream of the latest unmatched message
    last_unmatched_spread_ns: int = 0  # its heads' stamp spread: tells a too-small tolerance

    @property
    def dropped(self) -> int:
        """Messages that will never be part of an emitted set."""
        return self.overflow + self.unmatched + self.backwards + self.duplicate + self.flushed


class StereoSync:
    """Pairs messages of several streams by stamp; see the module docstring for the policy."""

    def __init__(
        self,
        streams: Sequence[str] = STEREO_STREAMS,
        tolerance_ns: int = 0,
        queue_size: int | Mapping[str, int] = 5,
        reset_jump_ns: int | None = None,
    ) -> None:
        if len(streams) < 2 or len(set(streams)) != len(streams):
            raise ValueError(f"streams must be at least two distinct names, got {list(streams)}")
        if tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        sizes = dict(queue_size) if isinstance(queue_size, Mapping) else dict.fromkeys(streams, queue_size)
        if set(sizes) != set(streams) or any(int(n) < 1 for n in sizes.values()):
            raise ValueError(f"queue_size must be >= 1 for each of {list(streams)}, got {queue_size}")
        if reset_jump_ns is not None and reset_jump_ns <= 0:
            raise ValueError(f"reset_jump_ns must be positive or None, got {reset_jump_ns}")
        self.streams = tuple(streams)
        self.tolerance_ns = int(tolerance_ns)
        self.queue_sizes = tuple(int(sizes[name]) for name in streams)
        self.reset_jump_ns = reset_jump_ns
        self._index = {name: i for i, name in enumerate(self.streams)}
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in self.streams]
        self._last: list[int | None] = [None] * len(self.streams)
        self._counters = SyncCounters()
        self._lock = threading.Lock()  # callbacks may run on a multi-threaded executor

    # -- public ----------------------------------------------------------------
    def add(self, stream: str | int, stamp_ns: int, msg: Any) -> tuple | None:
        """Queue ``msg``; return the messages of a completed set in stream order, or None.

        At most one set can complete per call: before the call some queue was empty.
        """
        i = self._stream_index(stream)
        stamp_ns = int(stamp_ns)
        with self._lock:
            self._counters.received += 1
            if not self._accept_stamp(i, stamp_ns):
                return None
            queue = self._queues[i]
            if len(queue) >= self.queue_sizes[i]:
                queue.popleft()
                self._counters.overflow += 1
            queue.append((stamp_ns, msg))
            self._last[i] = stamp_ns
            return self._match()

    def reset(self) -> None:
        """Forget queued messages and per-stream stamps (e.g. on a /clock jump)."""
        with self._lock:
            self._clear()

    @property
    def counters(self) -> SyncCounters:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._counters)

    def queue_lengths(self) -> dict[str, int]:
        """Queued messages per stream: an always-empty one is the stream that never arrives."""
        with self._lock:
            return {name: len(q) for name, q in zip(self.streams, self._queues)}

    # -- internals -------------------------------------------------------------
    def _stream_index(self, stream: str | int) -> int:
        if isinstance(stream, int) and 0 <= stream < len(self.streams):
            return stream
        if isinstance(stream, str) and stream in self._index:
            return self._index[stream]
        raise KeyError(f"unknown stream {stream!r}; streams are {list(self.streams)}")

    def _accept_stamp(self, i: int, stamp_ns: int) -> bool:
        last = self._last[i]
        if last is None or stamp_ns > last:
            return True
        if self.reset_jump_ns is not None and last - stamp_ns >= self.reset_jump_ns:
            self._clear()
            self._counters.resets += 1
            return True
        if stamp_ns == last:
            self._counters.duplicate += 1
        else:
            self._counters.backwards += 1
        return False

    def _clear(self) -> None:
        self._counters.flushed += sum(len(q) for q in self._queues)
        for q in self._queues:
            q.clear()
        self._last = [None] * len(self.streams)

    def _match(self) -> tuple | None:
        queues = self._queues
        while all(queues):
            heads = [q[0][0] for q in queues]
            oldest = min(heads)
            if max(heads) - oldest <= self.tolerance_ns:
                self._counters.matched += 1
                return tuple(q.popleft()[1] for q in queues)
            i = heads.index(oldest)
            queues[i].popleft()
            self._counters.unmatched += 1
            self._counters.last_unmatched_stream = self.streams[i]
            self._counters.last_unmatched_spread_ns = max(heads) - oldest
        return None


def stream_queue_sizes(streams: Sequence[str], queue_size: int) -> dict[str, int]:
    """``queue_size`` for the images, ``INFO_QUEUE_SIZE`` (or more) for camera_info streams."""
    return {s: max(queue_size, INFO_QUEUE_SIZE) if s in INFO_STREAMS else queue_size for s in streams}


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """builtin_interfaces/Time fields -> integer nanoseconds (no float rounding)."""
    return int(sec) * NS_PER_S + int(nanosec)


def seconds_to_ns(seconds: float) -> int:
    """A tolerance in seconds (a ROS parameter) -> integer nanoseconds."""
    return int(round(float(seconds) * NS_PER_S))
