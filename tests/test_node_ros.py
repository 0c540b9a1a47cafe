"""occdepth_node over real DDS (Fast DDS on loopback) in one process: synthetic stereo
frames in, every output checked; bad inputs are dropped and counted, never published."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from helpers.dds import domain_id
from helpers.node_harness import TIMEOUT_S, Harness, image_msg, small_sequence
from occdepth_ros.data.images import read_rgb
from occdepth_ros.data.kitti_odometry import KittiSequence

SPACING_S = 0.02  # between burst messages, so DDS delivers each one to the callback


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> KittiSequence:
    return small_sequence(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def harness(sequence):
    h = Harness({"calib_file": str(sequence.path / "calib.txt"), "frame_id": "velodyne"},
                domain_id=domain_id("node_harness"))
    try:
        time.sleep(1.0)  # discovery
        yield h
    finally:
        h.close()


def test_outputs_for_a_stereo_pair(harness: Harness, sequence: KittiSequence) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(0))
    stamp = 1_900_000_000_123_456_789  # newer than every other test's: order-free
    n = {key: harness.count(key) for key in ("cloud", "grid", "labels")}
    harness.send(image_msg(left, stamp, "cam_left"), image_msg(right, stamp, "cam_right"))
    for key, before in n.items():
        harness.wait_for(key, before + 1)
    cloud, grid, labels = harness.got["cloud"][-1], harness.got["grid"][-1], harness.got["labels"][-1]
    cfg = harness.node.processor.engine.cfg
    for msg in (cloud, grid):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(stamp, 1_000_000_000)
        assert msg.header.frame_id == "velodyne"
    assert [f.name for f in cloud.fields][:5] == ["x", "y", "z", "rgb", "label"]
    assert len(cloud.data) == cloud.width * cloud.point_step and cloud.height == 1
    X, Y, Z = cfg.grid.dims
    assert (grid.info.width, grid.info.height) == (X, Y)
    assert grid.info.resolution == pytest.approx(cfg.grid.voxel_size)
    assert len(grid.data) == X * Y and set(np.unique(np.array(grid.data, dtype=np.int8))) <= {-1, 0, 100}
    assert len(labels.data) == X * Y * Z
    # the published grid is the engine's prediction for this pair
    engine_labels = harness.node.processor.engine.predict([left, right]).labels
    np.testing.assert_array_equal(np.frombuffer(bytes(labels.data), np.uint8).reshape(X, Y, Z), engine_labels)


@pytest.mark.parametrize("problem", ["encoding", "truncated", "size_mismatch"])
def test_bad_input_is_dropped_counted_and_the_node_keeps_running(harness: Harness, sequence, problem) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(1))
    stamp = 1_700_000_100_000_000_000 + 10**9 * len(problem)
    bad_left = image_msg(left, stamp, "cam_left")
    if problem == "encoding":
        bad_left.encoding = "yuv422"
    elif problem == "truncated":
        bad_left.data = bad_left.data[: len(bad_left.data) // 2]
    else:
        bad_left = image_msg(left[:, :-8].copy(), stamp, "cam_left")
    before = len(harness.got["cloud"])
    drops_before = harness.node.stats.drops["bad_input"]
    harness.send(bad_left, image_msg(right, stamp, "cam_right"))
    end = time.monotonic() + TIMEOUT_S
    while harness.node.stats.drops["bad_input"] == drops_before and time.monotonic() < end:
        time.sleep(0.05)
    assert harness.node.stats.drops["bad_input"] == drops_before + 1
    time.sleep(0.3)
    assert len(harness.got["cloud"]) == before  # nothing published for the bad pair
    # still alive: a good pair afterwards is processed
    harness.send(image_msg(left, stamp + 1, "cam_left"), image_msg(right, stamp + 1, "cam_right"))
    harness.wait_for("cloud", before + 1)


def test_stamps_going_backwards_are_counted(harness: Harness, sequence) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(2))
    t0 = 1_700_000_200_000_000_000
    harness.send(image_msg(left, t0, "l"), image_msg(right, t0, "r"))
    harness.wait_for("cloud", len(harness.got["cloud"]) + 1)
    before = harness.node.stats.drops["stamp_backwards"]
    harness.send(image_msg(left, t0 - 1000, "l"), image_msg(right, t0 - 1000, "r"))  # 1 us back: no reset
    end = time.monotonic() + 10
    while harness.node.stats.drops["stamp_backwards"] < before + 2 and time.monotonic() < end:
        time.sleep(0.05)
    assert harness.node.stats.drops["stamp_backwards"] == before + 2


def test_diagnostics_report_rate_and_drops(harness: Harness) -> None:
    harness.wait_for("diag", 2)
    status = harness.got["diag"][-1].status[0]
    keys = {kv.key for kv in status.values}
    assert "occdepth_node" in status.name
    assert any("drop" in k for k in keys) and any("processing" in k for k in keys)


def test_bursts_faster_than_inference_keep_the_latest_pair(harness: Harness, sequence) -> None:
    """Ten pairs 20 ms apart (far faster than inference; the reliable input keeps them all):
    some are published, the rest replaced (busy drops)."""
    left, right = (read_rgb(p) for p in sequence.image_paths(0))
    t0 = 1_700_000_300_000_000_000
    clouds_before, busy_before = len(harness.got["cloud"]), harness.node.stats.drops["busy"]
    for i in range(10):
        harness.send(image_msg(left, t0 + i * 10**8, "l"), image_msg(right, t0 + i * 10**8, "r"))
        time.sleep(SPACING_S)
    end = time.monotonic() + TIMEOUT_S
    while time.monotonic() < end:
        published = len(harness.got["cloud"]) - clouds_before
        busy = harness.node.stats.drops["busy"] - busy_before
        if published + busy == 10:
            break
        time.sleep(0.05)
    assert published + busy == 10 and busy >= 1 and published >= 1
    last = harness.got["cloud"][-1].header.stamp
    assert (last.sec, last.nanosec) == divmod(t0 + 9 * 10**8, 10**9)  # the newest pair always wins


# --- calibration from camera_info ------------------------------------------------------------

def camera_infos(sequence: KittiSequence, stamp_ns: int, width: int, height: int, scale_p: float = 1.0):
    calib = sequence.calib()
    infos = []
    for key in ("P2", "P3"):
        msg = CameraInfo()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.width, msg.height = width, height
        msg.p = [float(v) * scale_p for v in calib[key].ravel()]
        infos.append(msg)
    return tuple(infos)


@pytest.fixture(scope="module")
def info_harness(sequence):
    tr = sequence.calib()["Tr"]
    h = Harness({"calib_file": "", "grid_to_camera": [float(v) for v in tr.ravel()]},
                domain_id=domain_id("node_harness_camera_info"))
    try:
        time.sleep(1.0)
        yield h
    finally:
        h.close()


def test_camera_info_calibration_gives_the_engine_grid(info_harness: Harness, sequence) -> None:
    """KITTI P2/P3 camera_infos + Tr as grid_to_camera: the published grid is the engine's
    prediction under that calibration (equal to the calib file's, tests/test_geometry.py)."""
    left, right = (read_rgb(p) for p in sequence.image_paths(0))
    stamp = 1_700_000_400_000_000_000
    h, w = left.shape[:2]
    info_harness.send(image_msg(left, stamp, "l"), image_msg(right, stamp, "r"), camera_infos(sequence, stamp, w, h))
    info_harness.wait_for("labels", 1)
    # camera_info mode: the grid is labelled in its own frame (hung off the camera by
    # grid_to_camera), never in the KITTI config's velodyne frame
    info_harness.wait_for("cloud", 1)
    info_harness.wait_for("grid", 1)
    assert {m.header.frame_id for m in info_harness.got["cloud"] + info_harness.got["grid"]} == {"occdepth_grid"}
    got = np.frombuffer(bytes(info_harness.got["labels"][-1].data), np.uint8)
    engine = info_harness.node.processor.engine
    np.testing.assert_array_equal(got.reshape(engine.cfg.grid.dims), engine.predict([left, right]).labels)


@pytest.mark.parametrize("problem", ["zero_p", "size_mismatch"])
def test_invalid_camera_info_is_dropped_and_counted(info_harness: Harness, sequence, problem) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(1))
    stamp = 1_700_000_500_000_000_000 + (10**9 if problem == "zero_p" else 2 * 10**9)
    h, w = left.shape[:2]
    infos = camera_infos(sequence, stamp, w, h, scale_p=0.0) if problem == "zero_p" \
        else camera_infos(sequence, stamp, w + 4, h)
    before, clouds = info_harness.node.stats.drops["calibration"], len(info_harness.got["cloud"])
    info_harness.send(image_msg(left, stamp, "l"), image_msg(right, stamp, "r"), infos)
    info_harness.wait_drops("calibration", before + 1)
    time.sleep(0.3)
    assert len(info_harness.got["cloud"]) == clouds


def test_missing_camera_info_publishes_nothing_and_counts_overflow(info_harness: Harness, sequence) -> None:
    left, right = (read_rgb(p) for p in sequence.image_paths(2))
    t0 = 1_700_000_600_000_000_000
    clouds, sync_before = len(info_harness.got["cloud"]), info_harness.node.stats.drops["overflow"]
    queue = info_harness.node.params.queue_size
    for i in range(queue + 2):  # images only: their queues overflow
        info_harness.send(image_msg(left, t0 + i * 10**8, "l"), image_msg(right, t0 + i * 10**8, "r"))
        time.sleep(SPACING_S)
    info_harness.wait_drops("overflow", sync_before + 2)
    assert len(info_harness.got["cloud"]) == clouds


def test_no_work_for_outputs_nobody_subscribes_to(harness: Harness, sequence) -> None:
    """Without a cloud subscriber the node builds no cloud (markers: none subscribed
    here either); the latched occupancy grid is always made."""
    assert "cloud" in harness.node._wanted_outputs()
    with harness.unsubscribed("cloud"):  # the collector is back afterwards: tests stay order-free
        end = time.monotonic() + TIMEOUT_S
        while harness.node.pub_cloud.get_subscription_count() > 0 and time.monotonic() < end:
            time.sleep(0.05)
        assert harness.node._wanted_outputs() == frozenset({"bev"})
        left, right = (read_rgb(p) for p in sequence.image_paths(0))
        n_grids, n_clouds = len(harness.got["grid"]), len(harness.got["cloud"])
        stamp = 1_800_000_000_000_000_000
        harness.send(image_msg(left, stamp, "cam_left"), image_msg(right, stamp, "cam_right"))
        harness.wait_for("grid", n_grids + 1)
        assert len(harness.got["cloud"]) == n_clouds
    end = time.monotonic() + TIMEOUT_S
    while harness.node.pub_cloud.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    assert "cloud" in harness.node._wanted_outputs()
