"""NodeParams validation (every error names its parameter) and RuntimeStats levels."""

from __future__ import annotations

import array
import math

from pathlib import Path

import numpy as np
import pytest

from occdepth_ros.classes import load_class_set
from occdepth_ros.geometry.calib import GRID_TO_OPTICAL
from occdepth_ros.resources import share_dir
from occdepth_ros.node.params import NodeParams
from occdepth_ros.node.stats import DROP_REASONS, Level, RuntimeStats
from occdepth_ros.node.stereo_sync import IMAGE_STREAMS

CLASS_NAMES = load_class_set().names


# -- NodeParams ---------------------------------------------------------------------------
def test_defaults_are_the_kitti_configuration():
    p = NodeParams().resolved(share_dir()).validate(CLASS_NAMES)
    assert Path(p.calib_file).is_file() and p.grid_frame() == "velodyne"
    assert p.sync_streams() == IMAGE_STREAMS  # the calibration file replaces camera_info
    assert p.sync_tolerance_ns() == 5_000_000  # approximate: cameras stamped a few ms apart pair
    assert p.input_qos == "AUTO"
    assert p.stamp_reset_jump_ns() == 1_000_000_000
    np.testing.assert_array_equal(p.grid_to_camera_matrix(), GRID_TO_OPTICAL)


def test_from_dict_round_trip_and_coercion():
    p = NodeParams.from_dict({"approximate_sync": True, "sync_tolerance_s": 1, "queue_size": 3,
                              "free_classes": ["road"], "grid_to_camera": array.array("d", GRID_TO_OPTICAL.ravel())})
    assert p.sync_tolerance_s == 1.0 and isinstance(p.sync_tolerance_s, float)
    assert p.free_classes == ("road",) and len(p.grid_to_camera) == 16
    assert p.sync_tolerance_ns() == 1_000_000_000
    assert NodeParams.from_dict(p.to_dict()) == p
    assert isinstance(p.to_dict()["free_classes"], list)


@pytest.mark.parametrize("values, name", [
    ({"queue_size": 2.5}, "queue_size"),
    ({"queue_size": True}, "queue_size"),
    ({"approximate_sync": 1}, "approximate_sync"),
    ({"sync_tolerance_s": "0.1"}, "sync_tolerance_s"),
    ({"frame_id": 3}, "frame_id"),
    ({"free_classes": "road"}, "free_classes"),
    ({"free_classes": ["road", 1]}, "free_classes"),
    ({"grid_to_camera": [1, "a"]}, "grid_to_camera"),
])
def test_from_dict_type_errors_name_the_parameter(values, name):
    with pytest.raises(ValueError, match=f"parameter {name} must be"):
        NodeParams.from_dict(values)


def test_from_dict_unknown_parameter():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['queue'\]"):
        NodeParams.from_dict({"queue": 3})


@pytest.mark.parametrize("changes, name", [
    ({"left_image_topic": " "}, "left_image_topic"),
    ({"right_info_topic": ""}, "right_info_topic"),
    ({"frame_id": "velodyne "}, "frame_id"),
    ({"frame_id": "/map"}, "frame_id"),
    ({"input_qos": "BEST_EFFORT"}, "input_qos"),
    ({"sync_tolerance_s": -0.1}, "sync_tolerance_s"),
    ({"sync_tolerance_s": math.nan}, "sync_tolerance_s"),
    ({"approximate_sync": True, "sync_tolerance_s": 0.0}, "sync_tolerance_s"),
    ({"queue_size": 0}, "queue_size"),
    ({"stamp_reset_jump_s": -1.0}, "stamp_reset_jump_s"),
    ({"backend": "tflite"}, "backend"),
    ({"backend": "tensorrt"}, "device"),  # TensorRT needs a CUDA device
    ({"precision": "bf16"}, "precision"),
    ({"ort_provider": "openvno"}, "ort_provider"),
    ({"checkpoint": "/nonexistent/model.onnx"}, "checkpoint"),  # an exported file needs onnxruntime/tensorrt
    ({"device": "gpu"}, "device"),
    ({"threads": -1}, "threads"),
    ({"checkpoint": "/nonexistent/model.safetensors"}, "checkpoint"),
    ({"preset": "no_such_preset"}, "preset"),
    ({"calib_file": "/nonexistent/calib.txt"}, "calib_file"),
    ({"grid_to_camera": (1.0,) * 9}, "grid_to_camera"),
    ({"grid_to_camera": (1.0,) * 12}, "grid_to_camera"),
    ({"occupancy_min_z": 1.0, "occupancy_max_z": 0.0}, "occupancy_min_z"),
    ({"occupancy_max_z": math.inf}, "occupancy_max_z"),
    ({"free_classes": ("road", "grass")}, "free_classes"),
    ({"marker_max_voxels": -1}, "marker_max_voxels"),
    ({"marker_max_rate_hz": -1.0}, "marker_max_rate_hz"),
    ({"processing_budget_ms": 0.0}, "processing_budget_ms"),
    ({"diagnostics_period_s": 0.0}, "diagnostics_period_s"),
    ({"stats_window": 1}, "stats_window"),
])
def test_validate_names_the_parameter(changes, name):
    with pytest.raises(ValueError, match=f"^parameter {name}"):
        NodeParams(**changes).validate(CLASS_NAMES)


def test_free_classes_checked_only_with_class_names():
    NodeParams(free_classes=("grass",)).validate()


def test_input_qos_is_case_insensitive():
    NodeParams(input_qos="sensor_data").validate()


def test_calib_file_mode(tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("P2: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    p = NodeParams(calib_file=str(calib)).validate()
    assert p.sync_streams() == IMAGE_STREAMS
    with pytest.raises(ValueError, match="^parameter grid_to_camera is only used with camera_info"):
        NodeParams(calib_file=str(calib), grid_to_camera=tuple(GRID_TO_OPTICAL.ravel())).validate()


def test_existing_checkpoint_and_known_preset(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    NodeParams(checkpoint=str(ckpt), preset="compact").validate()


def test_grid_to_camera_3x4_and_4x4():
    T = np.eye(4)
    T[:3, 3] = (0.1, -0.2, 0.3)
    for numbers in (T[:3].ravel(), T.ravel()):
        p = NodeParams(calib_file="", grid_to_camera=tuple(numbers.tolist())).validate()
        np.testing.assert_array_equal(p.grid_to_camera_matrix(), T)


def test_exact_sync_ignores_tolerance():
    assert NodeParams(approximate_sync=False, sync_tolerance_s=0.5).sync_tolerance_ns() == 0
    assert NodeParams(stamp_reset_jump_s=0.0).stamp_reset_jump_ns() is None


# -- RuntimeStats -------------------------------------------------------------------------
def test_rates_from_injected_clock():
    s = RuntimeStats(budget_ms=100, window=5)
    for i in range(10):
        s.record_input(now=i * 0.1)  # 10 Hz; the window holds the last 5
    assert s.input_rate_hz(now=0.95) == pytest.approx(10.0)
    assert s.input_rate_hz(now=0.9 + s.stale_after_s + 0.01) == 0.0  # gone quiet
    assert s.output_rate_hz(now=1.0) == 0.0


def test_stale_before_first_frame():
    r = RuntimeStats(budget_ms=100).report(now=0.0)
    assert r.level == Level.STALE and "no frame processed" in r.message
    assert r.values["processing_p50_ms"] == "n/a"


@pytest.mark.parametrize("times_ms, level", [
    ([50, 60, 70], Level.OK),
    ([50, 60, 150], Level.WARN),  # one slow frame
    ([150, 160, 50], Level.ERROR),  # typically over budget
])
def test_processing_levels(times_ms, level):
    s = RuntimeStats(budget_ms=100)
    for i, t in enumerate(times_ms):
        s.record_processed(t / 1000, latency_s=0.2, now=float(i))
    r = s.report(now=3.0)
    assert r.level == level
    assert r.values["processing_p50_ms"] == f"{sorted(times_ms)[1]:.1f}"
    assert r.values["processing_max_ms"] == f"{max(times_ms):.1f}"
    assert r.values["latency_p50_ms"] == "200.0" and r.values["frames_processed"] == "3"


def test_window_forgets_old_frames():
    s = RuntimeStats(budget_ms=100, window=2)
    for i, t in enumerate([500, 10, 10]):
        s.record_processed(t / 1000, now=float(i))
    assert s.processing_ms() == (10.0, 10.0) and s.report(now=2.0).level == Level.OK


def test_stale_after_output_stops():
    s = RuntimeStats(budget_ms=100, stale_after_s=2.0)
    s.record_processed(0.01, now=0.0)
    assert s.report(now=1.0).level == Level.OK
    assert s.report(now=2.5).level == Level.STALE


def test_drops_counted_and_bad_ones_warn_once():
    s = RuntimeStats(budget_ms=100)
    s.record_processed(0.01, now=0.0)
    s.count_drop("busy", 5)
    s.count_drop("overflow")
    s.count_drop("flushed", 2)
    assert s.report(now=0.5).level == Level.OK  # expected drops only count
    s.count_drop("bad_input", 2)
    s.count_drop("calibration")
    r = s.report(now=0.6)
    assert r.level == Level.WARN and "2 bad_input drop(s)" in r.message and "1 calibration" in r.message
    assert s.report(now=0.7).level == Level.OK  # nothing new since the last report
    assert s.drops == {"busy": 5, "overflow": 1, "unmatched": 0, "flushed": 2, "stamp_backwards": 0,
                       "duplicate": 0, "lost": 0, "bad_input": 2, "calibration": 1}
    assert {f"dropped_{k}" for k in DROP_REASONS} <= set(r.values)


@pytest.mark.parametrize("reason, warns", [
    ("busy", False), ("overflow", False), ("flushed", False), ("unmatched", True), ("stamp_backwards", True),
    ("duplicate", True), ("lost", True), ("bad_input", True), ("calibration", True),
])
def test_each_drop_reason_has_its_own_counter(reason, warns):
    s = RuntimeStats(budget_ms=100)
    s.record_processed(0.01, now=0.0)
    s.count_drop(reason, 3)
    r = s.report(now=0.1)
    assert r.values[f"dropped_{reason}"] == "3"
    assert all(r.values[f"dropped_{other}"] == "0" for other in DROP_REASONS if other != reason)
    assert r.level == (Level.WARN if warns else Level.OK)
    assert (f"3 {reason} drop(s)" in r.message) == warns


def test_bad_drops_do_not_hide_error():
    s = RuntimeStats(budget_ms=1)
    s.record_processed(0.5, now=0.0)
    s.count_drop("stamp_backwards")
    assert s.report(now=0.1).level == Level.ERROR


def test_bad_input_outranks_stale():
    """A node fed only garbage says WARN (with the reason), not merely STALE."""
    s = RuntimeStats(budget_ms=100)
    assert s.report(now=0.0).level == Level.STALE
    s.count_drop("bad_input")
    r = s.report(now=0.1)
    assert r.level == Level.WARN and "1 bad_input drop(s)" in r.message and "no frame processed" in r.message
    assert s.report(now=0.2).level == Level.STALE  # nothing new


def test_problems_and_events_raise_warn_and_extra_values_are_reported():
    s = RuntimeStats(budget_ms=100)
    r = s.report(now=0.0, problems=["nothing received on /left/image_rect (left_image) in 2.0 s"],
                 extra_values={"queue_left_image": "0"})
    assert r.level == Level.WARN and r.message.startswith("nothing received on /left/image_rect")
    assert r.values["queue_left_image"] == "0"
    s.count_event("qos_incompatible")
    r = s.report(now=0.1)
    assert r.level == Level.WARN and "1 qos_incompatible event(s)" in r.message and r.values["qos_incompatible"] == "1"
    with pytest.raises(KeyError):
        s.count_event("deadline")


def test_stats_argument_errors():
    with pytest.raises(KeyError, match="unknown drop reason"):
        RuntimeStats(budget_ms=1).count_drop("sync")  # split into its reasons
    for kwargs in ({"budget_ms": 0}, {"budget_ms": 1, "window": 1}, {"budget_ms": 1, "stale_after_s": 0}):
        with pytest.raises(ValueError):
            RuntimeStats(**kwargs)


def test_relative_paths_resolve_against_the_share_dir(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "calib.txt").write_text("x")
    monkeypatch.chdir(tmp_path / "config")  # not found relative to the working directory
    p = NodeParams(calib_file="config/calib.txt", checkpoint="/abs/model.safetensors").resolved(tmp_path)
    assert p.calib_file == str(tmp_path / "config" / "calib.txt")
    assert p.checkpoint == "/abs/model.safetensors"
    assert NodeParams(calib_file="calib.txt").resolved("/elsewhere").calib_file == "calib.txt"  # found in cwd


def test_grid_frame_is_the_calibrations_unless_set(tmp_path):
    yaml_calib = tmp_path / "stereo.yaml"
    yaml_calib.write_text("left_projection: []\n")
    assert NodeParams().grid_frame() == "velodyne"  # KITTI calib.txt: Tr starts in the velodyne frame
    assert NodeParams(calib_file="").grid_frame() == "occdepth_grid"  # camera_info + grid_to_camera
    assert NodeParams(calib_file=str(yaml_calib)).grid_frame() == "occdepth_grid"
    assert NodeParams(calib_file="", frame_id="base_link").grid_frame() == "base_link"
