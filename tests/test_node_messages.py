"""ROS messages built by node.messages: contents, and a CDR round trip through
rclpy.serialization (no rclpy.init, no middleware)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from occdepth_ros.classes import load_class_set  # noqa: E402
from occdepth_ros.model.config import GridConfig  # noqa: E402
from occdepth_ros.node import messages as M  # noqa: E402
from occdepth_ros.node.stats import Level, RuntimeStats, StatsReport  # noqa: E402
from occdepth_ros.node.voxel_outputs import (  # noqa: E402
    POINTFIELD_DATATYPES,
    bev_occupancy,
    marker_groups,
    occupied_voxels,
    voxel_cloud,
)

pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")  # lark, via rosidl

CS = load_class_set()
GRID = GridConfig(origin=(0.0, -1.0, -0.5), dims=(5, 4, 3), voxel_size=0.5)
STAMP = Time(sec=1_700_000_000, nanosec=123_456_789)
FRAME = "velodyne"


def round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


@pytest.fixture(scope="module")
def prediction():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, CS.n_classes, GRID.dims).astype(np.uint8)
    labels[rng.random(GRID.dims) < 0.5] = CS.empty_index
    conf = rng.random(GRID.dims).astype(np.float32)
    seen = rng.random(GRID.dims) < 0.6
    return labels, conf, seen


@pytest.fixture()
def header():
    return M.make_header(STAMP, FRAME)


def test_header_copies_stamp_and_accepts_ns():
    h = M.make_header(STAMP, FRAME)
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (STAMP.sec, STAMP.nanosec, FRAME)
    assert h.stamp is not STAMP
    h2 = M.make_header(STAMP.sec * 1_000_000_000 + STAMP.nanosec, FRAME)
    assert h2 == h


def test_pointfield_codes_match_sensor_msgs():
    by_name = {"<i1": PointField.INT8, "<u1": PointField.UINT8, "<i2": PointField.INT16,
               "<u2": PointField.UINT16, "<i4": PointField.INT32, "<u4": PointField.UINT32,
               "<f4": PointField.FLOAT32, "<f8": PointField.FLOAT64}
    assert {np.dtype(k): v for k, v in by_name.items()} == POINTFIELD_DATATYPES


@pytest.mark.parametrize("with_conf", [False, True])
def test_point_cloud2(prediction, header, with_conf):
    labels, conf, _ = prediction
    cloud = voxel_cloud(occupied_voxels(labels, GRID, CS, conf), CS, with_confidence=with_conf)
    msg = round_trip(M.point_cloud2(cloud, header))
    assert isinstance(msg, PointCloud2) and msg.header == header
    assert (msg.height, msg.width) == (1, cloud.width)
    assert msg.point_step == cloud.point_step and msg.row_step == cloud.point_step * cloud.width
    assert not msg.is_bigendian and msg.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        (f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    assert bytes(msg.data) == cloud.points.tobytes()
    # decode one point the way a generic consumer would: from the field table
    off = {f.name: f.offset for f in msg.fields}
    rec = bytes(msg.data[: msg.point_step])
    x, y, z = (struct.unpack_from("<f", rec, off[a])[0] for a in "xyz")
    assert (x, y, z) == tuple(float(v) for v in cloud.points[0][["x", "y", "z"]].tolist())


def test_marker_array(prediction, header):
    labels, _, _ = prediction
    groups = marker_groups(occupied_voxels(labels, GRID, CS), CS)
    msg = round_trip(M.marker_array(groups, header, GRID.voxel_size, lifetime_s=1.5))
    assert isinstance(msg, MarkerArray)
    first, rest = msg.markers[0], msg.markers[1:]
    assert first.action == Marker.DELETEALL and first.header == header
    assert len(rest) == len(groups.groups)
    for m, g in zip(rest, groups.groups):
        assert (m.ns, m.id, m.type, m.action) == (g.name, g.class_id, Marker.CUBE_LIST, Marker.ADD)
        assert m.header == header and m.pose.orientation.w == 1.0
        assert (m.scale.x, m.scale.y, m.scale.z) == (GRID.voxel_size,) * 3
        assert (m.color.r, m.color.g, m.color.b, m.color.a) == pytest.approx(g.rgb + (1.0,), abs=1e-7)
        assert (m.lifetime.sec, m.lifetime.nanosec) == (1, 500_000_000)
        assert len(m.colors) == 0 and not m.frame_locked
        np.testing.assert_array_equal([[p.x, p.y, p.z] for p in m.points], g.centres)


def test_empty_marker_array_only_clears(header):
    groups = marker_groups(occupied_voxels(np.zeros(GRID.dims, np.uint8), GRID, CS), CS)
    msg = M.marker_array(groups, header, GRID.voxel_size)
    assert [m.action for m in msg.markers] == [Marker.DELETEALL]


def test_marker_points_shape_checked():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        M._points(np.zeros((2, 2)))


def test_occupancy_grid(prediction, header):
    labels, _, seen = prediction
    bev = bev_occupancy(labels, GRID, CS, -0.5, 0.5, seen)
    msg = round_trip(M.occupancy_grid(bev, header))
    assert isinstance(msg, OccupancyGrid) and msg.header == header
    info = msg.info
    assert (info.width, info.height, info.resolution) == (GRID.dims[0], GRID.dims[1], GRID.voxel_size)
    assert (info.origin.position.x, info.origin.position.y, info.origin.position.z) == (0.0, -1.0, -0.5)
    assert info.origin.orientation.w == 1.0 and info.map_load_time == header.stamp
    data = np.array(msg.data, dtype=np.int8)
    np.testing.assert_array_equal(data, bev.data.reshape(-1))
    # cell of grid column (i, j) is data[j * width + i]
    for i in range(GRID.dims[0]):
        for j in range(GRID.dims[1]):
            assert data[j * info.width + i] == bev.data[j, i]


def test_label_grid_round_trip(prediction, header):
    """A stamped image: rows x, columns y, one channel per z layer; voxel (i, j, k) is byte
    (i * Y + j) * Z + k, read back with the image fields alone."""
    labels, _, _ = prediction
    msg = round_trip(M.label_grid(labels, header))
    assert isinstance(msg, Image)
    X, Y, Z = GRID.dims
    assert (msg.height, msg.width, msg.encoding, msg.step) == (X, Y, f"8UC{Z}", Y * Z)
    assert (msg.header.stamp, msg.header.frame_id) == (header.stamp, header.frame_id)
    data = bytes(msg.data)
    for i, j, k in [(0, 0, 0), (X - 1, Y - 1, Z - 1), (X // 2, Y - 1, 0), (1, Y // 2, Z - 1)]:
        assert data[(i * msg.width + j) * Z + k] == labels[i, j, k]
    np.testing.assert_array_equal(M.label_grid_array(msg), labels)
    with pytest.raises(ValueError):
        M.label_grid(labels.astype(np.int16), header)
    with pytest.raises(ValueError, match="not a label grid"):
        M.label_grid_array(Image(encoding="rgb8", height=1, width=1, step=3, data=[0, 0, 0]))
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match="do not match"):
        M.label_grid_array(msg)


def test_diagnostic_array(header):
    stats = RuntimeStats(budget_ms=100.0)
    stats.record_processed(0.05, latency_s=0.07, now=1.0)
    stats.count_drop("bad_input")
    report = stats.report(now=1.5)
    msg = round_trip(M.diagnostic_array(report, header, "occdepth_node: processing", "cpu"))
    assert isinstance(msg, DiagnosticArray) and msg.header == header
    (status,) = msg.status
    assert status.level == bytes([Level.WARN]) and "bad_input" in status.message
    assert status.name == "occdepth_node: processing" and status.hardware_id == "cpu"
    assert {kv.key: kv.value for kv in status.values} == report.values


@pytest.mark.parametrize("level", list(Level))
def test_diagnostic_levels_are_single_bytes(level, header):
    msg = M.diagnostic_array(StatsReport(level, "m"), header, "n")
    assert round_trip(msg).status[0].level == bytes([int(level)])


def test_scalar():
    assert round_trip(M.scalar(12.5)) == Float64(data=12.5)


@pytest.mark.parametrize("enabled", [True, False])
def test_marker_build_restores_gc_state(enabled, header):
    import gc

    groups = marker_groups(occupied_voxels(np.full(GRID.dims, 1, np.uint8), GRID, CS), CS)
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        M.marker_array(groups, header, GRID.voxel_size)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
