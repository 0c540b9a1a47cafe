"""The node against malformed input, on real DDS with default QoS and KITTI-size images:
one table of bad frames; for each, nothing is published for it, the drop is counted,
and the good pair sent next is published with the in-process pipeline's labels."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from helpers.dds import domain_id
from helpers.node_harness import NS_PER_S, Harness, image_msg, info_msg
from occdepth_ros.geometry.calib import KITTI_IMAGE_SIZE, calibration_from_camera_info, read_kitti_calib
from occdepth_ros.resources import config_path

H, W = KITTI_IMAGE_SIZE  # 376 x 1241: the shipped calibration's images
TIMEOUT_S = 240.0  # a 1241x376 frame takes seconds on a shared 2-core CPU
QUIET_S = 0.5  # after a drop is counted: long enough for an output that should not come
SPACING_S = 0.02
KITTI = read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt"))
# reliable input (default QoS); a budget no frame exceeds, so the levels below reflect the input only;
# a short image queue, so a stream left alone overflows it within the eight messages the cases send
COMMON = {"input_qos": "DEFAULT", "processing_budget_ms": 600_000.0, "queue_size": 5}
_stamps = itertools.count(1_750_000_000 * NS_PER_S, 10 * NS_PER_S)


@dataclass(frozen=True)
class Pair:
    left: np.ndarray
    right: np.ndarray


def _pair(seed: int, h: int = H, w: int = W) -> Pair:
    rng = np.random.default_rng(seed)
    return Pair(*(rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)))


GOOD = _pair(0)


def _stamp(msg, stamp_ns: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS_PER_S)
    return msg


# -- the bad frames ----------------------------------------------------------------
Sends = list[tuple]  # (left, right[, infos]) per publish


def images(stamp: int, pair: Pair = GOOD):
    return image_msg(pair.left, stamp, "cam_left"), image_msg(pair.right, stamp, "cam_right")


def with_left(change: Callable) -> Callable[[int, int], Sends]:
    def make(stamp: int, _last: int) -> Sends:
        left, right = images(stamp)
        change(left)
        return [(left, right)]
    return make


def _set(**fields) -> Callable:
    def change(msg) -> None:
        for k, v in fields.items():
            setattr(msg, k, v)
    return change


def _mono_right(stamp: int, _last: int) -> Sends:
    left, _ = images(stamp)
    grey = GOOD.right[..., 0].copy()
    right = image_msg(grey[..., None].repeat(3, axis=2), stamp, "cam_right")
    right.encoding, right.step, right.data = "mono8", W, grey.tobytes()
    return [(left, right)]


def _cropped_left(stamp: int, _last: int) -> Sends:
    return [(image_msg(GOOD.left[:, :-8].copy(), stamp, "cam_left"), images(stamp)[1])]


def _sized(h: int, w: int) -> Callable[[int, int], Sends]:
    return lambda stamp, _last: [images(stamp, _pair(1, h, w))]


def _zero_size(stamp: int, _last: int) -> Sends:
    left, right = images(stamp)
    for m in (left, right):
        m.height = m.width = m.step = 0
        m.data = b""
    return [(left, right)]


def _backwards(stamp: int, last: int) -> Sends:
    return [images(last - 1000)]  # 1 us before the last good pair: no bag-loop reset


def _duplicate(stamp: int, last: int) -> Sends:
    return [images(last)]


def _left_only(stamp: int, _last: int) -> Sends:
    return [(images(stamp + i * 10**8)[0], None) for i in range(8)]  # more than queue_size


def _burst_truncated(stamp: int, _last: int) -> Sends:
    sends = []
    for i in range(10):
        left, right = images(stamp + i * 10**8)
        left.data = left.data[: len(left.data) // 3]
        sends.append((left, right))
    return sends


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int, int], Sends]
    min_drops: int = 1  # drops counted (any reason) before the bad frame counts as handled
    mode: str = "file"  # file: the shipped KITTI calib_file; info: camera_info
    infos: Callable[[int], tuple] | None = None  # info mode: the camera_infos of the bad frame
    diag: tuple[str, ...] = ()  # words the diagnostics message must name


def _kitti_infos(stamp: int, p_left=None, p_right=None, size=(W, H), right_size=None) -> tuple:
    return (info_msg(KITTI["P2"] if p_left is None else p_left, stamp, *size),
            info_msg(KITTI["P3"] if p_right is None else p_right, stamp, *(right_size or size)))


def _bad_p(value: float) -> Callable[[int], tuple]:
    p = KITTI["P2"].copy()
    p[0, 0] = value
    return lambda stamp: _kitti_infos(stamp, p_left=p)


FILE_CASES = [
    Case("encoding_yuv422", with_left(_set(encoding="yuv422"))),
    Case("encoding_16bit", with_left(_set(encoding="rgb16"))),
    Case("encoding_empty", with_left(_set(encoding=""))),
    Case("colour_left_grey_right", _mono_right),
    Case("step_too_small", with_left(_set(step=W * 3 - 3))),
    Case("step_padded_data_short", with_left(_set(step=W * 3 + 8))),
    Case("data_truncated", with_left(lambda m: setattr(m, "data", m.data[:-1]))),
    Case("data_too_long", with_left(lambda m: setattr(m, "data", bytes(m.data) + b"\0" * 7))),
    Case("zero_size", _zero_size),
    Case("left_right_sizes_differ", _cropped_left),
    Case("size_640x480", _sized(480, 640), diag=("1241x376", "640x480")),
    Case("size_1226x370_kitti_03", _sized(370, 1226), diag=("1241x376", "1226x370")),
    Case("size_620x188_half", _sized(188, 620), diag=("1241x376", "620x188")),
    Case("stamp_zero", lambda stamp, last: [images(0)]),
    Case("stamp_backwards", _backwards, min_drops=2),
    Case("stamp_duplicate", _duplicate, min_drops=2),
    Case("left_stream_only", _left_only),
    Case("burst_of_truncated", _burst_truncated, min_drops=10),
]
INFO_CASES = [
    Case("p_nan", lambda s, l: [images(s)], mode="info", infos=_bad_p(math.nan)),
    Case("p_inf", lambda s, l: [images(s)], mode="info", infos=_bad_p(math.inf)),
    Case("p_zero", lambda s, l: [images(s)], mode="info", infos=lambda s: _kitti_infos(s, np.zeros((3, 4)))),
    Case("p_identical", lambda s, l: [images(s)], mode="info",
         infos=lambda s: _kitti_infos(s, p_right=KITTI["P2"])),
    Case("info_640x480", lambda s, l: [images(s)], mode="info", infos=lambda s: _kitti_infos(s, size=(640, 480)),
         diag=("1241x376", "640x480")),
    Case("info_sizes_differ", lambda s, l: [images(s)], mode="info",
         infos=lambda s: _kitti_infos(s, right_size=(640, 480))),
    Case("right_info_missing", lambda s, l: [images(s + i * 10**8) for i in range(8)], mode="info",
         infos=lambda s: (info_msg(KITTI["P2"], s, W, H), None)),
]


# -- the node, twice ---------------------------------------------------------------
@dataclass
class Session:
    harness: Harness
    reference: np.ndarray  # the pipeline's labels for GOOD under this calibration
    last_good: int = 0


def _session(overrides: dict, slot: str, calibration) -> Session:
    h = Harness({**COMMON, **overrides}, domain_id=domain_id(slot))
    engine = h.node.processor.engine  # idle until the first pair: safe to use here
    engine.set_calibration(calibration)
    return Session(h, engine.predict([GOOD.left, GOOD.right], with_confidence=False).labels.copy())


@pytest.fixture(scope="module")
def sessions():
    file_calib = calibration_from_camera_info(KITTI["P2"], KITTI["P3"], W, H, KITTI["Tr"])
    made = {"file": _session({}, "node_fuzz", file_calib)}
    try:
        tr = [float(v) for v in KITTI["Tr"].ravel()]
        made["info"] = _session({"calib_file": "", "grid_to_camera": tr}, "node_fuzz_camera_info", file_calib)
        yield made
    finally:
        for s in made.values():
            s.harness.close()


def _send_good(s: Session, stamp: int, mode: str) -> None:
    h = s.harness
    n = {k: h.count(k) for k in ("cloud", "grid", "labels")}
    h.send(*images(stamp), _kitti_infos(stamp) if mode == "info" else None)
    for key, before in n.items():
        h.wait_for(key, before + 1, TIMEOUT_S)
    grid, cloud, labels = (h.messages(k)[-1] for k in ("grid", "cloud", "labels"))
    assert (grid.header.stamp.sec, grid.header.stamp.nanosec) == divmod(stamp, NS_PER_S)
    assert (cloud.header.stamp.sec, cloud.header.stamp.nanosec) == divmod(stamp, NS_PER_S)
    got = np.frombuffer(bytes(labels.data), np.uint8).reshape(s.reference.shape)
    np.testing.assert_array_equal(got, s.reference)
    s.last_good = stamp


def _total_drops(h: Harness) -> int:
    return sum(h.node.stats.drops.values())


@pytest.mark.parametrize("case", FILE_CASES + INFO_CASES, ids=lambda c: c.name)
def test_bad_frame_publishes_nothing_and_the_next_good_pair_is_right(sessions, case: Case) -> None:
    s = sessions[case.mode]
    h = s.harness
    if not s.last_good:  # a processed pair first: stamp checks need one, and the level is not STALE
        _send_good(s, next(_stamps), case.mode)
    stamp = next(_stamps)
    outputs = {k: h.count(k) for k in ("cloud", "grid", "labels")}
    drops, n_diag = _total_drops(h), h.count("diag")
    for left, right in case.make(stamp, s.last_good):
        h.send(left, right, case.infos(stamp) if case.infos else None)
        time.sleep(SPACING_S)
    end = time.monotonic() + TIMEOUT_S
    while _total_drops(h) < drops + case.min_drops and time.monotonic() < end:
        time.sleep(0.05)
    assert _total_drops(h) >= drops + case.min_drops, f"{case.name}: drops {h.node.stats.drops}"
    time.sleep(QUIET_S)
    assert {k: h.count(k) for k in outputs} == outputs, f"{case.name}: an output was published for a bad frame"
    if case.diag:  # the diagnostics say why, naming both sizes
        end = time.monotonic() + TIMEOUT_S
        while time.monotonic() < end and not _diag_with(h, n_diag, case.diag):
            time.sleep(0.05)
        status = _diag_with(h, n_diag, case.diag)
        assert status is not None, f"no diagnostics naming {case.diag}"
        assert status.level == DiagnosticStatus.WARN
    _send_good(s, next(_stamps), case.mode)


def _diag_with(h: Harness, start: int, words: tuple[str, ...]):
    for msg in h.messages("diag")[start:]:
        for status in msg.status:
            if all(w in status.message for w in words):
                return status
    return None
