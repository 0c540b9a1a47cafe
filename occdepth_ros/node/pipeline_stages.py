"""The node's frame work on three threads, so the network never waits for the host:

    input slot -> [prepare: decode, calibration, network input] -> ready slot
               -> [infer: the network]                           -> done slot
               -> [finish: labels, derived outputs, publish]

While the network runs frame N, the prepare thread readies the newest input set shortly
before the network is expected to free (PrepareSchedule: sets the latest-wins rule would
drop are never decoded), and the finish thread builds and publishes N-1's messages. Each
hand-over is a LatestSlot: when the network is free it takes the prepared set, as the
sequential worker takes the newest input; a set replaced before the next stage took it
is counted as a ``busy`` drop (the input slot's by the node, which fills it). The stages
are FrameProcessor's own (prepare, infer, finish), so the outputs are those of the
sequential path.

Threads: the network keeps the cores it is given (the backend's ``threads``); the
host stages' torch work (resize, argmax) runs on ``host_threads`` torch threads when the
network is not torch itself (whose threads they would share).
"""

from __future__ import annotations

import threading
import time
from typing import Any
from collections.abc import Callable

import torch

from .latest_slot import LatestSlot
from .prepare_schedule import PrepareSchedule
from .processor import FrameOutputs, FrameProcessor, PreparedFrame

POLL_S = 0.1  # how often an idle stage checks for shutdown

Outputs = Callable[[], frozenset[str]]


class FramePipeline:
    def __init__(self, processor: FrameProcessor, source: LatestSlot[tuple], publish: Callable[[FrameOutputs], None],
                 reject: Callable[[BaseException], None], drop: Callable[[str], None], outputs: Outputs) -> None:
        """``source``: the node's input slot; ``publish``: called on the finish thread with
        each frame's outputs; ``reject``: a stage's exception for one frame (the frame is
        skipped); ``drop``: a reason each time a prepared or inferred frame is replaced;
        ``outputs``: which derived outputs are wanted now."""
        self.processor, self.source = processor, source
        self._publish, self._reject, self._drop, self._outputs = publish, reject, drop, outputs
        self.ready: LatestSlot[PreparedFrame] = LatestSlot()
        self.done: LatestSlot[tuple[PreparedFrame, torch.Tensor]] = LatestSlot()
        self.schedule = PrepareSchedule()
        self.schedule.request_now()  # the first set is wanted at once
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=loop, name=f"occdepth_{name}", daemon=True)
                         for name, loop in (("prepare", self._prepare_loop), ("infer", self._infer_loop),
                                            ("finish", self._finish_loop))]

    def start(self) -> FramePipeline:
        for t in self._threads:
            t.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.schedule.close()
        for slot in (self.source, self.ready, self.done):
            slot.close()
        for t in self._threads:
            t.join(timeout)

    # -- stages ---------------------------------------------------------------------
    def _stage(self, inbox: LatestSlot, work: Callable[[Any], Any], outbox: LatestSlot | None) -> None:
        """One stage's loop: take the newest item, work on it, hand the result on (a result
        that replaces one not yet taken is a ``busy`` drop); a failure rejects that frame only."""
        while not self._stop.is_set():
            item = inbox.take(timeout=POLL_S)
            if item is None:
                continue
            try:
                result = work(item)
            except Exception as exc:  # noqa: BLE001 - one bad set must not stop the node
                self._reject(exc)
                continue
            if outbox is not None and outbox.put(result):
                self._drop("busy")

    def _prepare_loop(self) -> None:
        """Prepare the newest set once the network's request is due; a set that fails
        leaves the request pending, so the next one is prepared at once."""
        while not self._stop.is_set():
            if not self.schedule.wait_due(POLL_S):
                continue
            item = self.source.take(timeout=POLL_S)
            if item is None:
                continue
            start = time.perf_counter()
            try:
                frame = self.processor.prepare(item)
            except Exception as exc:  # noqa: BLE001 - one bad set must not stop the node
                self._reject(exc)
                continue
            self.schedule.prepared(time.perf_counter() - start)
            self.schedule.fulfil()
            if self.ready.put(frame):
                self._drop("busy")

    def _infer(self, frame: PreparedFrame) -> tuple[PreparedFrame, torch.Tensor]:
        """The network on ``frame``; its start requests the next set."""
        start = time.perf_counter()
        self.schedule.request()
        logits = self.processor.infer(frame)
        self.schedule.network_took(time.perf_counter() - start)
        return frame, logits

    def _infer_loop(self) -> None:
        self._stage(self.ready, self._infer, self.done)

    def _finish_loop(self) -> None:
        self._stage(self.done, lambda item: self._publish(self.processor.finish(*item, self._outputs())), None)


def host_threads_for(backend_name: str, host_threads: int) -> int | None:
    """torch threads for the host stages: ``host_threads`` unless the network is torch
    (its threads are the network's); None = leave torch as it is."""
    return None if backend_name == "torch" or host_threads <= 0 else host_threads
