"""StereoSync against hand-built stamp sequences and invariants on jittered streams;
LatestSlot, the latest-wins hand-over to the worker."""

from __future__ import annotations

import random
import threading

import pytest

from occdepth_ros.node.latest_slot import LatestSlot
from occdepth_ros.node.stereo_sync import (
    IMAGE_STREAMS,
    INFO_QUEUE_SIZE,
    NS_PER_S,
    STEREO_STREAMS,
    StereoSync,
    SyncCounters,
    seconds_to_ns,
    stamp_to_ns,
    stream_queue_sizes,
)

MS = 1_000_000  # ns


def feed(sync: StereoSync, events):
    """events: (stream, stamp_ns); the message is (stream, stamp) so results are readable."""
    out = []
    for stream, stamp in events:
        got = sync.add(stream, stamp, (stream, stamp))
        if got is not None:
            out.append(got)
    return out


def full_set(stamp, streams=STEREO_STREAMS):
    return tuple((s, stamp) for s in streams)


def test_exact_set_completes_on_last_message_in_stream_order():
    sync = StereoSync(tolerance_ns=0)
    order = ["right_info", "left_image", "left_info", "right_image"]
    assert feed(sync, [(s, 100) for s in order[:3]]) == []
    assert sync.add("right_image", 100, ("right_image", 100)) == full_set(100)
    c = sync.counters
    assert (c.received, c.matched, c.dropped) == (4, 1, 0)
    assert sync.queue_lengths() == dict.fromkeys(STEREO_STREAMS, 0)


def test_exact_streams_accepted_by_index():
    sync = StereoSync(IMAGE_STREAMS)
    assert sync.add(0, 5, "L") is None
    assert sync.add(1, 5, "R") == ("L", "R")


def test_exact_mismatch_drops_the_oldest_head_then_matches():
    sync = StereoSync(IMAGE_STREAMS, tolerance_ns=0)
    got = feed(sync, [("left_image", 10), ("left_image", 20), ("right_image", 20)])
    assert got == [(("left_image", 20), ("right_image", 20))]
    assert sync.counters.unmatched == 1  # left 10 can never match: right is already at 20


def test_exact_out_of_order_across_streams_still_pairs():
    sync = StereoSync(IMAGE_STREAMS)
    got = feed(sync, [("left_image", 10), ("left_image", 20), ("right_image", 10), ("right_image", 20)])
    assert got == [full_set(10, IMAGE_STREAMS), full_set(20, IMAGE_STREAMS)]
    assert sync.counters.dropped == 0


@pytest.mark.parametrize("spread, matched", [(0, True), (5 * MS, True), (5 * MS + 1, False)])
def test_approximate_tolerance_edge_is_inclusive(spread, matched):
    sync = StereoSync(tolerance_ns=5 * MS)
    stamps = {"left_image": 1000 * MS, "right_image": 1000 * MS + spread,
              "left_info": 1000 * MS, "right_info": 1000 * MS + spread // 2}
    got = feed(sync, list(stamps.items()))
    if matched:
        assert got == [tuple((s, stamps[s]) for s in STEREO_STREAMS)]
    else:
        assert got == [] and sync.counters.unmatched >= 1


def test_approximate_picks_heads_oldest_first():
    sync = StereoSync(IMAGE_STREAMS, tolerance_ns=3)
    got = feed(sync, [("left_image", 0), ("left_image", 10), ("left_image", 20),
                      ("right_image", 11), ("right_image", 19)])
    # left 0 is dropped (right starts at 11), 10~11 pair, then 20~19 pair
    assert got == [(("left_image", 10), ("right_image", 11)), (("left_image", 20), ("right_image", 19))]
    assert sync.counters.unmatched == 1


def test_queue_overflow_drops_oldest_and_counts():
    sync = StereoSync(IMAGE_STREAMS, queue_size=3)
    feed(sync, [("left_image", t) for t in (1, 2, 3, 4, 5)])
    assert sync.counters.overflow == 2
    assert sync.queue_lengths() == {"left_image": 3, "right_image": 0}
    # 1 and 2 are gone: a right 2 cannot pair; a right 3 pairs with left 3
    assert sync.add("right_image", 2, "R2") is None
    assert sync.add("right_image", 3, "R3") == (("left_image", 3), "R3")
    c = sync.counters
    assert (c.overflow, c.unmatched, c.matched) == (2, 1, 1)


def test_silent_stream_is_visible_in_queue_lengths():
    sync = StereoSync(queue_size=2)
    feed(sync, [(s, t) for t in (1, 2, 3) for s in ("left_image", "right_image", "left_info")])
    assert sync.queue_lengths()["right_info"] == 0
    assert sync.counters.overflow == 3 and sync.counters.matched == 0


def test_backwards_and_repeated_stamps_are_rejected_per_stream():
    sync = StereoSync(IMAGE_STREAMS)
    assert sync.add("left_image", 10, "a") is None
    assert sync.add("left_image", 9, "b") is None  # backwards
    assert sync.add("left_image", 10, "c") is None  # not newer: a duplicate, counted apart
    assert (sync.counters.backwards, sync.counters.duplicate) == (1, 1)
    assert sync.add("right_image", 10, "R") == ("a", "R")  # the rejected ones never replace 'a'
    assert sync.add("right_image", 5, "old") is None  # right's own history counts too
    assert sync.add("right_image", 10, "again") is None
    c = sync.counters
    assert (c.backwards, c.duplicate, c.dropped) == (2, 2, 4)


def test_large_jump_back_resets_instead_of_rejecting_forever():
    sync = StereoSync(IMAGE_STREAMS, reset_jump_ns=NS_PER_S)
    feed(sync, [("left_image", 100 * NS_PER_S), ("right_image", 100 * NS_PER_S), ("left_image", 101 * NS_PER_S)])
    got = feed(sync, [("left_image", 1 * NS_PER_S), ("right_image", 1 * NS_PER_S)])  # bag looped
    assert got == [full_set(1 * NS_PER_S, IMAGE_STREAMS)]
    c = sync.counters
    assert (c.resets, c.flushed, c.backwards) == (1, 1, 0)
    # a small step back is still just rejected
    assert sync.add("left_image", NS_PER_S - 1, "x") is None
    assert sync.counters.backwards == 1 and sync.counters.resets == 1


def test_reset_clears_queues_and_history():
    sync = StereoSync(IMAGE_STREAMS)
    sync.add("left_image", 50, "a")
    sync.reset()
    assert sync.counters.flushed == 1
    assert feed(sync, [("left_image", 5), ("right_image", 5)]) == [full_set(5, IMAGE_STREAMS)]


def test_counters_are_a_snapshot():
    sync = StereoSync(IMAGE_STREAMS)
    snap = sync.counters
    sync.add("left_image", 1, "a")
    assert snap == SyncCounters() and sync.counters.received == 1


@pytest.mark.parametrize("kwargs", [
    {"streams": ("only",)}, {"streams": ("a", "a")}, {"tolerance_ns": -1},
    {"queue_size": 0}, {"reset_jump_ns": 0},
    {"queue_size": {"left_image": 3}}, {"queue_size": dict.fromkeys(STEREO_STREAMS, 3) | {"left_info": 0}},
])
def test_invalid_construction(kwargs):
    with pytest.raises(ValueError):
        StereoSync(**kwargs)


def test_unknown_stream():
    with pytest.raises(KeyError, match="unknown stream"):
        StereoSync().add("depth", 1, None)
    with pytest.raises(KeyError):
        StereoSync().add(4, 1, None)


def test_jittered_streams_pair_every_frame_and_conserve_messages():
    """Frames 100 ms apart, per-stream jitter < tol / 2, random arrival interleaving."""
    rng = random.Random(7)
    tol, period, n = 4 * MS, 100 * MS, 60
    events = []
    for frame in range(n):
        for s in STEREO_STREAMS:
            stamp = frame * period + rng.randrange(-tol // 2, tol // 2)
            events.append((frame * period + rng.randrange(0, 30 * MS), s, stamp, frame))
    events.sort()  # arrival order: per stream still in frame order (delay < period)
    sync = StereoSync(tolerance_ns=tol, queue_size=4)
    sets = [sync.add(s, stamp, (frame, stamp)) for _, s, stamp, frame in events]
    sets = [x for x in sets if x is not None]
    assert [x[0][0] for x in sets] == list(range(n))
    for x in sets:
        assert {f for f, _ in x} == {x[0][0]}
        stamps = [t for _, t in x]
        assert max(stamps) - min(stamps) <= tol
    c = sync.counters
    queued = sum(sync.queue_lengths().values())
    assert c.received == len(STEREO_STREAMS) * c.matched + c.dropped + queued
    assert c.dropped == 0


def test_unmatched_records_the_stream_and_the_spread():
    """Exact sync on cameras stamped 0.3 ms apart (kitti2mcap): every left image is unmatched,
    and the counters say by how much, so the node can name the cause."""
    sync = StereoSync(IMAGE_STREAMS, tolerance_ns=0)
    got = feed(sync, [(s, f * 100 * MS + (300_000 if s == "right_image" else 0))
                      for f in range(3) for s in IMAGE_STREAMS])
    c = sync.counters
    # each arrival finds the other stream's head 0.3 ms away: all but the last message drop
    assert got == [] and c.unmatched == 5 and c.matched == 0 and sync.queue_lengths()["right_image"] == 1
    assert (c.last_unmatched_stream, c.last_unmatched_spread_ns) == ("left_image", 300_000)
    approx = StereoSync(IMAGE_STREAMS, tolerance_ns=seconds_to_ns(0.005))
    assert len(feed(approx, [(s, f * 100 * MS + (300_000 if s == "right_image" else 0))
                             for f in range(3) for s in IMAGE_STREAMS])) == 3


def _lagging_images(lag_frames: int, n: int):
    """Camera_info arrives at once, each image ``lag_frames`` frames later (a large message
    still in transit or waiting for a busy executor): the arrival order under load."""
    events = []
    for f in range(n + lag_frames):
        if f < n:
            events += [("left_info", f * 100 * MS), ("right_info", f * 100 * MS)]
        if f >= lag_frames:
            g = f - lag_frames
            events += [("left_image", g * 100 * MS), ("right_image", g * 100 * MS)]
    return events


def test_small_streams_running_ahead_overflow_a_shallow_queue_and_leave_images_unmatched():
    """The mechanism that lost pairs at 2x load: with one queue size for all streams the
    camera_info queue overflows while images lag, and the late images find no partner."""
    shallow = StereoSync(tolerance_ns=0, queue_size=5)
    got = feed(shallow, _lagging_images(lag_frames=8, n=20))
    c = shallow.counters
    assert len(got) < 20 and c.overflow > 0 and c.unmatched > 0


def test_deep_camera_info_queues_pair_every_frame_despite_image_lag():
    sizes = stream_queue_sizes(STEREO_STREAMS, 5)
    assert sizes == {"left_image": 5, "right_image": 5, "left_info": INFO_QUEUE_SIZE, "right_info": INFO_QUEUE_SIZE}
    deep = StereoSync(tolerance_ns=0, queue_size=sizes)
    got = feed(deep, _lagging_images(lag_frames=8, n=20))
    assert [x[0][1] for x in got] == [f * 100 * MS for f in range(20)]
    assert deep.counters.dropped == 0


def test_stamp_conversions():
    assert stamp_to_ns(3, 5) == 3 * NS_PER_S + 5
    assert seconds_to_ns(0.01) == 10 * MS
    assert seconds_to_ns(1.5) == 1_500_000_000


# -- LatestSlot: the hand-over to the inference worker ----------------------------------------
def test_latest_slot_latest_wins_and_counts_replacements():
    slot = LatestSlot()
    assert slot.put("a") is False
    assert slot.put("b") is True and slot.put("c") is True
    assert slot.replaced == 2
    assert slot.take(timeout=0) == "c"
    assert slot.take(timeout=0) is None  # taken items are gone
    assert slot.put("d") is False  # nothing pending: not a drop


def test_latest_slot_wakes_a_waiting_worker_and_closes():
    slot = LatestSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    worker.start()
    slot.put("pair")
    worker.join(timeout=5)
    assert got == ["pair"]
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    worker.start()
    slot.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and got[-1] is None and slot.closed
