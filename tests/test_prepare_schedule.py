"""PrepareSchedule (node/prepare_schedule): when the pipelined node prepares its next set.
A fake clock makes every due time exact (hand-computed from the moving averages)."""

from __future__ import annotations

import threading

import pytest

from occdepth_ros.node.prepare_schedule import LEAD_FACTOR, LEAD_MARGIN_S, SMOOTHING, PrepareSchedule


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_nothing_is_due_without_a_request() -> None:
    schedule = PrepareSchedule(FakeClock())
    assert not schedule.wait_due(0.0)


def test_untimed_request_is_due_at_once() -> None:
    schedule = PrepareSchedule(FakeClock())
    schedule.request()
    assert schedule.wait_due(0.0)
    schedule.fulfil()
    assert not schedule.wait_due(0.0)


def test_timed_request_is_due_a_lead_before_the_network_frees() -> None:
    clock = FakeClock()
    schedule = PrepareSchedule(clock)
    schedule.network_took(0.300)
    schedule.network_took(0.200)  # average 0.3 + SMOOTHING * (0.2 - 0.3)
    schedule.prepared(0.008)
    network = 0.300 + SMOOTHING * (0.200 - 0.300)
    lead = LEAD_FACTOR * 0.008 + LEAD_MARGIN_S
    assert schedule.network_s == pytest.approx(network) and schedule.lead_s() == pytest.approx(lead)
    schedule.request()
    due = 100.0 + network - lead
    clock.t = due - 1e-6
    assert not schedule.wait_due(0.0)
    clock.t = due
    assert schedule.wait_due(0.0)


def test_an_earlier_pending_request_stands() -> None:
    clock = FakeClock()
    schedule = PrepareSchedule(clock)
    schedule.network_took(1.0)
    schedule.request_now()  # e.g. the set before failed to prepare
    schedule.request()  # due a second later: the earlier due time stands
    assert schedule.wait_due(0.0)


@pytest.mark.parametrize("wake, due", [("close", False), ("request_now", True)])
def test_a_waiting_prepare_is_woken(wake: str, due: bool) -> None:
    """close() wakes it with "not due" (the stage ends), request_now() with "due"."""
    schedule = PrepareSchedule()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(schedule.wait_due(60.0)))
    waiter.start()
    getattr(schedule, wake)()
    waiter.join(10.0)
    assert result == [due]
