"""Prediction grid -> the arrays behind the node's outputs (numpy only, no ROS types).

* ``occupied_voxels``: centres, classes (and confidences) of every occupied voxel, once
  per frame; the cloud and the markers are both cut from it.
* ``voxel_cloud``: one structured array whose bytes are PointCloud2.data, and its field
  layout (x, y, z, rgb, label[, confidence]).
* ``marker_groups``: per-class centre arrays for CUBE_LIST markers, capped in total.
* ``bev_occupancy``: the bird's-eye nav_msgs/OccupancyGrid cells.

Occupied means a class other than ``empty_index`` and ``ignore_index``. Voxel centres are
``origin + (index + 0.5) * voxel_size`` in the grid frame (GridConfig.origin is the corner
of voxel (0, 0, 0)). Everything is vectorised: no per-voxel Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..classes import ClassSet
from ..model.config import GridConfig

# sensor_msgs/PointField datatype codes, kept here so this module needs no ROS install
# (tests check them against sensor_msgs.msg.PointField).
POINTFIELD_DATATYPES: dict[np.dtype, int] = {
    np.dtype("<i1"): 1, np.dtype("<u1"): 2, np.dtype("<i2"): 3, np.dtype("<u2"): 4,
    np.dtype("<i4"): 5, np.dtype("<u4"): 6, np.dtype("<f4"): 7, np.dtype("<f8"): 8,
}
# nav_msgs/OccupancyGrid cell values.
OCC_UNKNOWN, OCC_FREE, OCC_OCCUPIED = -1, 0, 100
# Ground classes a robot may drive on: free by default in the occupancy grid.
DEFAULT_FREE_CLASSES = ("road", "parking", "sidewalk", "other-ground", "terrain")
XYZ = 3
_LABEL_VALUES = 256  # size of per-label lookup tables (labels are uint8)
_BAND_EPS = 1e-6  # m: a centre printed as exactly z_min or z_max lies inside the band


# -- occupied voxels -----------------------------------------------------------
@dataclass(frozen=True)
class OccupiedVoxels:
    """Occupied voxels in C order (x-major) of the grid."""

    centres: np.ndarray  # (N, 3) float64, grid frame, m
    labels: np.ndarray  # (N,) uint8 class ids
    confidence: np.ndarray | None  # (N,) float32, or None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def occupied_voxels(
    labels: np.ndarray,
    grid: GridConfig,
    classes: ClassSet,
    confidence: np.ndarray | None = None,
    seen: np.ndarray | None = None,
    include_unseen: bool = True,
) -> OccupiedVoxels:
    """Occupied voxels of a predicted grid; ``include_unseen=False`` keeps only voxels
    inside a camera's view (``seen``), dropping completed-but-unobserved geometry."""
    _check_grid_array(labels, grid, "labels", np.uint8)
    _check_label_range(labels, classes)
    flat = labels.reshape(-1)
    mask = _occupied_mask(flat, classes)
    if not include_unseen:
        if seen is None:
            raise ValueError("include_unseen=False needs the seen mask")
        _check_grid_array(seen, grid, "seen", np.bool_)
        mask &= seen.reshape(-1)
    # One flat scan (a 3-D np.nonzero is about twice as slow), then the grid indices by
    # integer division: C order, n = (x * Y + y) * Z + z.
    idx = np.flatnonzero(mask)
    xy, z = np.divmod(idx, grid.dims[2])
    x, y = np.divmod(xy, grid.dims[1])
    centres = np.empty((idx.size, XYZ), dtype=np.float64)
    for axis, index in enumerate((x, y, z)):
        centres[:, axis] = grid.origin[axis] + (index + 0.5) * grid.voxel_size
    conf = None
    if confidence is not None:
        _check_grid_array(confidence, grid, "confidence", None)
        conf = confidence.reshape(-1)[idx].astype(np.float32, copy=False)
    return OccupiedVoxels(centres=centres, labels=flat[idx], confidence=conf)


def _occupied_mask(flat: np.ndarray, classes: ClassSet) -> np.ndarray:
    """``occupied_lut(classes)[flat]`` for labels that passed _check_label_range (classes
    and ignore only): two byte compares vectorise, a 256-entry table gather does not."""
    return (flat != classes.empty_index) & (flat != classes.ignore_index)


def occupied_lut(classes: ClassSet) -> np.ndarray:
    """(256,) bool: which label values count as occupied."""
    lut = np.zeros(_LABEL_VALUES, dtype=bool)
    lut[: classes.n_classes] = True
    lut[classes.empty_index] = False
    lut[classes.ignore_index] = False
    return lut


def _check_grid_array(arr: np.ndarray, grid: GridConfig, name: str, dtype) -> None:
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(grid.dims):
        raise ValueError(f"{name}: expected an array of shape {tuple(grid.dims)}, got "
                         f"{getattr(arr, 'shape', type(arr).__name__)}")
    if dtype is not None and arr.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {arr.dtype}")


def _check_label_range(labels: np.ndarray, classes: ClassSet) -> None:
    """A label that is neither a class nor ignore means the grid is not a prediction."""
    if labels.size and int(labels.max()) >= classes.n_classes:
        bad = np.unique(labels[(labels >= classes.n_classes) & (labels != classes.ignore_index)])
        if bad.size:
            raise ValueError(f"labels contain values {bad[:8].tolist()} outside the "
                             f"{classes.n_classes} classes of {classes.name}")


# -- PointCloud2 -----------------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """One sensor_msgs/PointField."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass(frozen=True)
class VoxelCloud:
    """``points.tobytes()`` is PointCloud2.data (little-endian, unorganised, no NaNs)."""

    points: np.ndarray  # structured, one record per occupied voxel
    fields: tuple[FieldSpec, ...]

    @property
    def point_step(self) -> int:
        return int(self.points.dtype.itemsize)

    @property
    def width(self) -> int:
        return int(self.points.shape[0])


def cloud_dtype(with_confidence: bool) -> np.dtype:
    """x, y, z, rgb (float32), label (uint8) [, confidence (float32)], 4-byte aligned.

    rgb follows the ROS/PCL convention: 0x00RRGGBB stored in a float32 field. label is
    uint8 like the grid (RViz can colour by it with the Intensity transformer).
    """
    names = ["x", "y", "z", "rgb", "label"]
    formats = ["<f4", "<f4", "<f4", "<f4", "<u1"]
    offsets = [0, 4, 8, 12, 16]
    if with_confidence:
        names.append("confidence")
        formats.append("<f4")
        offsets.append(20)
    last = np.dtype(formats[-1]).itemsize + offsets[-1]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": _align(last, 4)})


def _align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def point_fields(dtype: np.dtype) -> tuple[FieldSpec, ...]:
    """PointField layout of a structured dtype (padding bytes are simply not described)."""
    specs = []
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        code = POINTFIELD_DATATYPES.get(field_dtype.base)  # big-endian dtypes are not found
        if code is None:
            raise ValueError(f"field {name}: dtype {field_dtype} has no little-endian PointField datatype")
        count = int(np.prod(field_dtype.shape)) if field_dtype.shape else 1
        specs.append(FieldSpec(name, int(offset), code, count))
    return tuple(specs)


def packed_rgb(classes: ClassSet) -> np.ndarray:
    """(n_classes,) float32 whose bits are 0x00RRGGBB: the PointCloud2 ``rgb`` of each class."""
    c = classes.colors.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def voxel_cloud(voxels: OccupiedVoxels, classes: ClassSet, with_confidence: bool = False) -> VoxelCloud:
    """The PointCloud2 payload of the occupied voxels."""
    if with_confidence and voxels.confidence is None:
        raise ValueError("with_confidence=True but the voxels carry no confidence")
    dtype = cloud_dtype(with_confidence)
    points = np.zeros(len(voxels), dtype=dtype)  # zeroed so padding bytes are deterministic
    for axis, name in enumerate(("x", "y", "z")):
        points[name] = voxels.centres[:, axis]
    points["rgb"] = packed_rgb(classes)[voxels.labels]  # a bit copy: no float arithmetic
    points["label"] = voxels.labels
    if with_confidence:
        points["confidence"] = voxels.confidence
    return VoxelCloud(points=points, fields=point_fields(dtype))


# -- CUBE_LIST markers -------------------------------------------------------------
@dataclass(frozen=True)
class ClassCentres:
    """The voxels of one class: one CUBE_LIST marker."""

    class_id: int
    name: str
    rgb: tuple[float, float, float]  # 0..1, from ClassSet.colors
    centres: np.ndarray  # (n, 3) float64


@dataclass(frozen=True)
class MarkerGroups:
    groups: tuple[ClassCentres, ...]  # present classes, ascending id
    dropped: int  # voxels left out by the cap

    @property
    def total(self) -> int:
        return sum(g.centres.shape[0] for g in self.groups)


def marker_groups(voxels: OccupiedVoxels, classes: ClassSet, max_voxels: int | None = None,
                  centre: np.ndarray | None = None) -> MarkerGroups:
    """Per-class centres; with more than ``max_voxels`` voxels the farthest from ``centre``
    are dropped (default: the frame's origin, the sensor for KITTI's velodyne frame; for
    a map in the odometry frame, the robot's position).

    Dropping the far field rather than subsampling keeps the near field, where a robot
    acts and the prediction is most reliable, complete and hole-free.
    """
    if max_voxels is not None and max_voxels < 0:
        raise ValueError(f"max_voxels must be >= 0 or None, got {max_voxels}")
    keep = _nearest(voxels.centres if centre is None else voxels.centres - np.asarray(centre, np.float64), max_voxels)
    centres, labels = voxels.centres[keep], voxels.labels[keep]
    order = np.argsort(labels, kind="stable")  # group by class, C order inside a class
    labels_sorted = labels[order]
    present, starts = np.unique(labels_sorted, return_index=True)
    ends = np.append(starts[1:], labels_sorted.size)
    colors = classes.colors.astype(np.float64) / np.iinfo(classes.colors.dtype).max
    groups = tuple(
        ClassCentres(int(c), classes.names[c], tuple(colors[c].tolist()), centres[order[s:e]])
        for c, s, e in zip(present, starts, ends)
    )
    return MarkerGroups(groups=groups, dropped=len(voxels) - int(labels.size))


def _nearest(centres: np.ndarray, max_voxels: int | None) -> np.ndarray:
    """Indices (ascending) of the ``max_voxels`` centres nearest the origin, or all."""
    n = centres.shape[0]
    if max_voxels is None or n <= max_voxels:
        return np.arange(n)
    if max_voxels == 0:
        return np.arange(0)
    dist2 = np.einsum("ij,ij->i", centres, centres)
    return np.sort(np.argpartition(dist2, max_voxels - 1)[:max_voxels])


# -- bird's-eye occupancy ------------------------------------------------------------
@dataclass(frozen=True)
class BevGrid:
    """nav_msgs/OccupancyGrid cells: ``data[row, col]`` with col along the grid's x and row
    along its y, cell (0, 0) at ``origin`` (its corner); ``data.tobytes()`` is row-major."""

    data: np.ndarray  # (rows = Y, cols = X) int8
    resolution: float  # m per cell
    origin: tuple[float, float, float]  # position of cell (0, 0)'s corner, grid frame

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        return int(self.data.shape[0])


def class_ids(names: Sequence[str], classes: ClassSet) -> np.ndarray:
    """Class names -> ids; an unknown name is an error that lists the known ones."""
    unknown = [n for n in names if n not in classes.names]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown}; classes are {list(classes.names)}")
    return np.array([classes.names.index(n) for n in names], dtype=np.int64)


def z_band_layers(grid: GridConfig, z_min: float, z_max: float) -> np.ndarray:
    """(Z,) bool: layers whose centre lies in [z_min, z_max]; an empty band is an error."""
    if not z_min <= z_max:
        raise ValueError(f"occupancy band: z_min {z_min} must be <= z_max {z_max}")
    z = grid.origin[2] + (np.arange(grid.dims[2]) + 0.5) * grid.voxel_size
    band = (z >= z_min - _BAND_EPS) & (z <= z_max + _BAND_EPS)
    if not band.any():
        raise ValueError(f"occupancy band [{z_min}, {z_max}] m contains no voxel layer; layer "
                         f"centres run from {z[0]:.3f} to {z[-1]:.3f} m")
    return band


def bev_occupancy(
    labels: np.ndarray,
    grid: GridConfig,
    classes: ClassSet,
    z_min: float,
    z_max: float,
    seen: np.ndarray | None = None,
    free_classes: Sequence[str] = DEFAULT_FREE_CLASSES,
) -> BevGrid:
    """-1 where the column was never seen (or holds only ignore labels), 100 where a voxel
    of a non-free class has its centre in [z_min, z_max], 0 otherwise (octomap's
    projected_map rule with "occupied wins"). ``seen=None`` treats every column as seen."""
    _check_grid_array(labels, grid, "labels", np.uint8)
    _check_label_range(labels, classes)
    occupying = occupied_lut(classes)
    occupying[class_ids(free_classes, classes)] = False
    band = z_band_layers(grid, z_min, z_max)
    occupied = occupying[labels[:, :, band]].any(axis=2)
    known = (labels != classes.ignore_index).any(axis=2)
    if seen is not None:
        _check_grid_array(seen, grid, "seen", np.bool_)
        known &= seen.any(axis=2)
    cells = np.where(occupied, np.int8(OCC_OCCUPIED), np.int8(OCC_FREE))
    cells[~known] = OCC_UNKNOWN
    return BevGrid(
        data=np.ascontiguousarray(cells.T),  # (X, Y) -> rows along y, cols along x
        resolution=float(grid.voxel_size),
        origin=(float(grid.origin[0]), float(grid.origin[1]), float(z_min)),
    )
