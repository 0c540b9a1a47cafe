"""One-item mailbox between the subscription callbacks and the inference worker.

Callbacks ``put`` every synchronised input set and never block; the worker ``take``s
the newest one. A set replaced before the worker took it is a ``busy`` drop: when
inputs burst faster than inference, the latest pair wins and latency stays one frame.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.replaced = 0  # items overwritten before they were taken

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced one that was never taken (count a drop)."""
        with self._cond:
            replaced = self._full
            self.replaced += int(replaced)
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` s; None on timeout or after close()."""
        with self._cond:
            self._cond.wait_for(lambda: self._full or self._closed, timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake a waiting worker so it can exit (node shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
