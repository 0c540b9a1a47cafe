"""The only module of the node layer that imports ROS message types.

It turns the numpy products of ``voxel_outputs`` and ``stats`` into messages without
per-point Python wherever the message definition allows: PointCloud2, OccupancyGrid
and the label grid get their byte payload in one copy. Only CUBE_LIST markers need a
geometry_msgs/Point object per voxel (about 0.2 us each filled through its slots on a
2-core CPU, 1-3 us through the constructor, plus ~0.4 us to serialise on publish),
which is why markers are capped and rate-limited.
"""

from __future__ import annotations

import array
import gc
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Float64, Header
from visualization_msgs.msg import Marker, MarkerArray

from .stats import StatsReport
from .stereo_sync import NS_PER_S, stamp_to_ns
from .voxel_outputs import XYZ, BevGrid, MarkerGroups, VoxelCloud

OPAQUE = 1.0
GRID_AXES = ("x", "y", "z")
_GC_LOCK = threading.Lock()


# -- header ------------------------------------------------------------------------
def stamp_from_ns(ns: int) -> Time:
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp: Time | int, frame_id: str) -> Header:
    """Header with a copy of ``stamp`` (the left image's, or integer ns) and ``frame_id``."""
    if not isinstance(stamp, (int, np.integer)):  # builtin_interfaces/Time, or a rosbags Time
        stamp = stamp_to_ns(stamp.sec, stamp.nanosec)
    return Header(stamp=stamp_from_ns(stamp), frame_id=frame_id)


def _bytes(arr: np.ndarray, typecode: str) -> array.array:
    """array.array over a copy of a C-contiguous array's bytes: the setters' fast path."""
    out = array.array(typecode)
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return out


# -- PointCloud2 ---------------------------------------------------------------------
def point_cloud2(cloud: VoxelCloud, header: Header) -> PointCloud2:
    """Unorganised cloud (height 1) of the voxel centres; data = the structured array's bytes."""
    msg = PointCloud2()
    msg.header = header
    msg.height = 1
    msg.width = cloud.width
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                  for f in cloud.fields]
    msg.is_bigendian = False
    msg.point_step = cloud.point_step
    msg.row_step = cloud.point_step * cloud.width
    msg.data = _bytes(cloud.points, "B")
    msg.is_dense = True  # voxel centres are never NaN
    return msg


# -- MarkerArray -----------------------------------------------------------------------
def marker_array(groups: MarkerGroups, header: Header, voxel_size: float,
                 lifetime_s: float = 0.0, alpha: float = OPAQUE) -> MarkerArray:
    """DELETEALL (clears classes that vanished, and avoids RViz's slowdown on repeated
    CUBE_LIST updates, ros2/rviz#631), then one CUBE_LIST per present class:
    ns = class name, id = class id, one colour per marker (no per-point colours)."""
    clear = Marker(header=header, action=Marker.DELETEALL)
    lifetime = _duration(lifetime_s)
    markers = [clear]
    for g in groups.groups:
        m = Marker(header=header, ns=g.name, id=g.class_id, type=Marker.CUBE_LIST, action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = float(voxel_size)
        m.color = ColorRGBA(r=g.rgb[0], g=g.rgb[1], b=g.rgb[2], a=float(alpha))
        m.lifetime = lifetime
        m.frame_locked = False
        m.points = _points(g.centres)
        markers.append(m)
    return MarkerArray(markers=markers)


# geometry_msgs/Point stores x, y, z in these slots (rosidl's generated Python, Humble
# and newer); Jazzy adds _check_fields, the switch for the setters' type assertions.
_POINT_SLOTS = frozenset(getattr(Point, "__slots__", ()))
_POINT_FAST = {"_x", "_y", "_z"} <= _POINT_SLOTS
_POINT_HAS_CHECK = "_check_fields" in _POINT_SLOTS


def _points(centres: np.ndarray) -> list[Point]:
    """The unavoidable per-point loop: tolist() first, so only Python floats go in.

    The values are Python floats by construction, so the Points are filled through
    their slots, skipping the property setters' per-field assertions: about 5x faster
    than ``Point(x=x, y=y, z=z)`` (measured by occdepth-bench). The keyword constructor
    remains the fallback for a message class laid out differently."""
    if centres.shape[1:] != (XYZ,):
        raise ValueError(f"centres must be (N, 3), got {centres.shape}")
    rows = centres.astype(np.float64, copy=False).tolist()
    with _gc_paused():
        if not _POINT_FAST:
            return [Point(x=x, y=y, z=z) for x, y, z in rows]
        new = Point.__new__
        points = []
        append = points.append
        for x, y, z in rows:
            p = new(Point)
            p._x, p._y, p._z = x, y, z
            if _POINT_HAS_CHECK:
                p._check_fields = False
            append(p)
        return points


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while creating many acyclic objects: its collections, triggered
    every few hundred allocations, cost 25-30 % of the Point loop (measured here).
    The lock keeps concurrent callers from leaving the GC disabled."""
    with _GC_LOCK:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()


def _duration(seconds: float) -> Duration:
    sec, nanosec = divmod(int(round(seconds * NS_PER_S)), NS_PER_S)
    return Duration(sec=sec, nanosec=nanosec)


# -- OccupancyGrid ---------------------------------------------------------------------
def occupancy_grid(bev: BevGrid, header: Header) -> OccupancyGrid:
    """Cell (0, 0) at ``bev.origin`` (identity orientation), row-major int8 data."""
    msg = OccupancyGrid()
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(bev.resolution)
    msg.info.width = bev.width
    msg.info.height = bev.height
    msg.info.origin.position.x, msg.info.origin.position.y, msg.info.origin.position.z = bev.origin
    msg.info.origin.orientation.w = 1.0
    msg.data = _bytes(bev.data.astype(np.int8, copy=False), "b")
    return msg


# -- dense label grid ------------------------------------------------------------------
LABEL_GRID_ENCODING = "8UC{}"  # OpenCV-style: one uint8 channel per z layer (cv_bridge reads it)
_LABEL_GRID_RE = re.compile(r"^8UC(\d+)$")


def label_grid(labels: np.ndarray, header: Header) -> Image:
    """(X, Y, Z) uint8 class grid as a stamped image: rows x, columns y, one channel per z
    layer (encoding ``8UC<Z>``), so the bytes are the grid in C order and the message
    carries the stamp and grid frame of the other outputs of its frame. The grid geometry
    (origin, voxel size) is the model's GridConfig."""
    if labels.ndim != len(GRID_AXES) or labels.dtype != np.uint8:
        raise ValueError(f"labels must be a 3-D uint8 grid, got {labels.dtype} {labels.shape}")
    X, Y, Z = labels.shape
    msg = Image(header=header, height=int(X), width=int(Y), encoding=LABEL_GRID_ENCODING.format(Z),
                is_bigendian=0, step=int(Y * Z))
    msg.data = _bytes(labels, "B")
    return msg


def label_grid_array(msg: Image) -> np.ndarray:
    """The (X, Y, Z) uint8 grid of a ``label_grid`` message; a clear error for anything else."""
    match = _LABEL_GRID_RE.match(msg.encoding)
    if match is None:
        raise ValueError(f"not a label grid: encoding {msg.encoding!r}, expected 8UC<layers>")
    shape = (msg.height, msg.width, int(match.group(1)))
    if msg.step != shape[1] * shape[2] or len(msg.data) != int(np.prod(shape)):
        raise ValueError(f"label grid {shape}: step {msg.step} and {len(msg.data)} bytes do not match")
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(shape)


# -- diagnostics and scalars -----------------------------------------------------------
def diagnostic_array(report: StatsReport, header: Header, name: str, hardware_id: str = "") -> DiagnosticArray:
    """One DiagnosticStatus (level, message, key/values) in a DiagnosticArray."""
    status = DiagnosticStatus(
        level=bytes([int(report.level)]),
        name=name,
        message=report.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in report.values.items()],
    )
    return DiagnosticArray(header=header, status=[status])


def scalar(value: float) -> Float64:
    """For the latency / processing-time topics."""
    return Float64(data=float(value))
