"""StreamWatch (a quiet or never-seen input is named with its topic) and ReasonThrottle
(one log line per reason per period), on an injected clock."""

from __future__ import annotations

import pytest

from occdepth_ros.node.stream_watch import MISSING_AFTER_S, ReasonThrottle, StreamWatch

TOPICS = {"left_image": "/cam/left/image_rect", "right_image": "/cam/right/image_rect"}


def test_nothing_missing_within_the_grace_period():
    w = StreamWatch(TOPICS, now=0.0)
    assert w.missing(now=MISSING_AFTER_S - 0.01) == []
    assert w.ages(now=1.0) == {"left_image": "never", "right_image": "never"}


def test_never_seen_topic_is_named():
    w = StreamWatch(TOPICS, now=0.0)
    w.seen("left_image", now=1.9)
    (gone,) = w.missing(now=2.0)
    assert (gone.stream, gone.topic, gone.never_seen) == ("right_image", "/cam/right/image_rect", True)
    assert gone.describe() == "nothing received on /cam/right/image_rect (right_image) in 2.0 s"


def test_stream_that_stops_is_named_after_two_seconds():
    w = StreamWatch(TOPICS, now=0.0)
    for t in (0.5, 1.0, 1.5):
        w.seen("left_image", now=t)
        w.seen("right_image", now=t)
    w.seen("left_image", now=3.4)
    assert w.missing(now=3.49) == []
    (gone,) = w.missing(now=3.5)
    assert gone.stream == "right_image" and not gone.never_seen and gone.silent_s == pytest.approx(2.0)
    assert gone.describe() == "no message on /cam/right/image_rect (right_image) for 2.0 s"
    assert w.ages(now=3.5) == {"left_image": "0.1", "right_image": "2.0"}


def test_invalid_timeout():
    with pytest.raises(ValueError):
        StreamWatch(TOPICS, timeout_s=0.0)


def test_throttle_is_per_reason():
    t = ReasonThrottle(5.0)
    assert t.allow("bad_input", now=0.0)
    assert not t.allow("bad_input", now=4.9)
    assert t.allow("calibration", now=1.0)  # a second reason is not hidden by the first
    assert t.allow("bad_input", now=5.0)
