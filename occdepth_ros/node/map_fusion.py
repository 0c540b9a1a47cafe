"""The node's temporal map: odometry in, each frame's class probabilities fused through the
pose at its stamp, the map's outputs out (plain Python, no ROS types).

One ``MapFuser`` per node. The odometry callback hands each message's fields to
``add_odometry`` (checked: its child frame must be the grid frame, its pose rigid); the
post-network stage calls ``fuse`` with each frame's prediction. A frame without a pose
(odometry missing, too old, a gap) is not fused: the result says why and the node keeps
publishing the single-frame outputs. A jump or a restart of the odometry (the pose
buffer's generation changes) resets the map before the next frame enters, and so does a
request to clear it (``request_clear``, from any thread: the thread that fuses owns the map).

Outputs, in the odometry frame (the odometry messages' ``header.frame_id``, or
``odom_frame`` with TF), stamped with the frame's image stamp:

* the occupied map voxels (centres, classes): ``~/map/voxels`` and ``~/map/voxel_markers``;
* a bird's-eye OccupancyGrid of the map window, cells aligned with the map's voxels, the
  z band ``occupancy_min_z .. occupancy_max_z`` taken relative to the robot's height.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..classes import ClassSet
from ..fusion import FusionConfig, RollingSemanticMap
from ..inference import Prediction
from ..model.config import GridConfig
from .params import NodeParams
from .pose_buffer import INVALID, MISSING, PoseBuffer, PoseLookup, pose_from_odometry
from .stereo_sync import seconds_to_ns
from .voxel_outputs import BevGrid, OccupiedVoxels, VoxelCloud, bev_occupancy, voxel_cloud, z_band_layers

WRONG_FRAME = "wrong_frame"  # add_odometry: child_frame_id is not the grid frame
FRAME_CHANGED = "frame_changed"  # add_odometry: header.frame_id differs from the map's frame
CLEARED = "cleared on request"  # FuseResult.reset: request_clear emptied the map
MAP_OUTPUTS = frozenset({"map_cloud", "map_voxels"})  # wanted-output names of the map (the BEV is always made)


@dataclass(frozen=True)
class MapOutputs:
    """The map after one fused frame, as arrays (messages.py makes the messages)."""

    stamp_ns: int
    frame_id: str  # the odometry frame
    voxels: OccupiedVoxels | None  # occupied map voxels, odometry frame; None: not asked for
    cloud: VoxelCloud | None
    bev: BevGrid  # bird's-eye view of the window, odometry frame
    robot_xyz: np.ndarray  # (3,) the grid frame's origin in the odometry frame


@dataclass(frozen=True)
class FuseResult:
    status: str  # "fused" | MISSING
    reason: str = ""  # MISSING: why there was no pose
    reset: str = ""  # the map was reset before this frame: why
    late: bool = False  # the newest (held) pose was used: odometry was late
    outputs: MapOutputs | None = None


@dataclass
class FuseCounters:
    frames_fused: int = 0
    frames_unfused: int = 0  # frames without a pose
    wrong_frame: int = 0  # odometry messages for another child frame
    frame_changed: int = 0  # odometry messages in another frame than the map's
    clears: int = 0  # maps emptied on request (also counted in the map's resets)
    last_missing: str = field(default="")
    last_fuse_ms: float = 0.0  # integrate + the map's outputs, latest fused frame (excludes the pose wait)


class MapFuser:
    def __init__(self, params: NodeParams, grid: GridConfig, classes: ClassSet,
                 lookup: Callable[[PoseBuffer, int], PoseLookup] | None = None,
                 class_prior: np.ndarray | None = None) -> None:
        """``lookup(buffer, stamp_ns)``: where poses come from other than odometry messages
        (TF: it adds the looked-up pose to the buffer first); default: the buffer, waiting
        up to ``odom_wait_s`` for odometry at or after the stamp."""
        self.params, self.grid, self.classes = params, grid, classes
        self.cfg: FusionConfig = params.fusion_config(grid)
        self.class_prior = class_prior  # the network's (fusion.class_prior), or None
        self.map = RollingSemanticMap(self.cfg, classes.n_classes, class_prior, classes.movable_mask())
        self.buffer = PoseBuffer(seconds_to_ns(params.odom_max_age_s), params.odom_jump_m, params.odom_jump_rad,
                                 params.stamp_reset_jump_ns())
        self.grid_frame = params.grid_frame()
        self.map_frame: str | None = params.odom_frame if params.use_tf else None  # topic: the first message's
        self._lookup = lookup or (lambda buf, stamp: buf.pose_at(stamp, wait_s=params.odom_wait_s))
        self._generation = 0
        self._clear = threading.Event()
        self.counters = FuseCounters()

    # -- odometry --------------------------------------------------------------------
    def add_odometry(self, stamp_ns: int, frame_id: str, child_frame_id: str,
                     position: tuple[float, float, float], orientation_xyzw: tuple[float, float, float, float]) -> str:
        """One nav_msgs/Odometry's header and pose; returns the pose buffer's verdict
        (ADDED, OUT_OF_ORDER, JUMP, RESTART, INVALID) or WRONG_FRAME / FRAME_CHANGED."""
        if child_frame_id != self.grid_frame:
            self.counters.wrong_frame += 1
            return WRONG_FRAME
        if self.map_frame is None and frame_id:
            self.map_frame = frame_id
        if frame_id != self.map_frame:
            self.counters.frame_changed += 1
            return FRAME_CHANGED
        T = pose_from_odometry(position, orientation_xyzw)
        if T is None:
            self.buffer.counters.received += 1
            self.buffer.counters.invalid += 1
            return INVALID
        return self.buffer.add(stamp_ns, T)

    def add_pose(self, stamp_ns: int, T_odom_from_grid: np.ndarray) -> str:
        """A pose from elsewhere (TF), already in the map's frame."""
        return self.buffer.add(stamp_ns, T_odom_from_grid)

    def request_clear(self) -> None:
        """Empty the map before the next fused frame enters (safe from any thread; the map's
        outputs follow with that frame)."""
        self._clear.set()

    # -- frames ----------------------------------------------------------------------
    def fuse(self, stamp_ns: int, prediction: Prediction, outputs: frozenset[str] = MAP_OUTPUTS) -> FuseResult:
        """Integrate one frame's ``prediction.probs`` at the pose of ``stamp_ns``; the map's
        outputs (``outputs``: which of MAP_OUTPUTS to build)."""
        if prediction.probs is None:
            raise ValueError("fusing needs the class probabilities (postprocess with_probs=True)")
        pose = self._lookup(self.buffer, stamp_ns)
        if pose.status == MISSING or pose.T is None:
            self.counters.frames_unfused += 1
            self.counters.last_missing = pose.reason
            return FuseResult(MISSING, reason=pose.reason)
        start = time.perf_counter()
        why = []
        if pose.generation != self._generation:
            why.append(self.buffer.counters.last_restart)
            self._generation = pose.generation
        if self._clear.is_set():
            self._clear.clear()
            why.append(CLEARED)
            self.counters.clears += 1
        if why:
            self.map.reset()  # counted in map.resets
        reset = "; ".join(why)
        self.map.integrate(prediction.probs, prediction.seen, pose.T, self.grid, labels=prediction.labels)
        self.counters.frames_fused += 1
        out = self.outputs(stamp_ns, pose.T, outputs)
        self.counters.last_fuse_ms = (time.perf_counter() - start) * 1e3
        return FuseResult("fused", reset=reset, late=pose.status != "interpolated", outputs=out)

    def outputs(self, stamp_ns: int, T_odom_from_grid: np.ndarray, wanted: frozenset[str] = MAP_OUTPUTS) -> MapOutputs:
        robot = np.asarray(T_odom_from_grid, dtype=np.float64)[:3, 3].copy()
        voxels = cloud = None
        if wanted & MAP_OUTPUTS:
            centres, labels = self.map.occupied()
            voxels = OccupiedVoxels(centres=centres.astype(np.float64), labels=labels, confidence=None)
            if "map_cloud" in wanted:
                cloud = voxel_cloud(voxels, self.classes)
        return MapOutputs(stamp_ns, self.map_frame or "", voxels, cloud, self.bev(robot), robot)

    def window_grid(self) -> GridConfig:
        """The map window as a grid in the odometry frame (identity pose): rendering it
        reads each map voxel exactly once."""
        vs = self.cfg.voxel_size
        origin = np.zeros(3) if self.map.origin is None else self.map.origin * vs
        return GridConfig(origin=tuple(float(v) for v in origin), dims=tuple(self.map.dims), voxel_size=vs)

    def bev(self, robot_xyz: np.ndarray) -> BevGrid:
        """Bird's-eye view of the window: occupied where a voxel of a non-free class lies in
        the z band (relative to the robot's height), free where the band was observed
        otherwise, unknown where no voxel of the band was observed. Only the band's layers
        of the window are read."""
        p = self.params
        z = float(robot_xyz[2])
        z_min, z_max = p.occupancy_min_z + z, p.occupancy_max_z + z
        window = self.window_grid()
        layers = np.flatnonzero(z_band_layers(window, z_min, z_max))
        k0, k1 = int(layers[0]), int(layers[-1]) + 1
        band = GridConfig(origin=(window.origin[0], window.origin[1], window.origin[2] + k0 * window.voxel_size),
                          dims=(window.dims[0], window.dims[1], k1 - k0), voxel_size=window.voxel_size)
        labels, known = self.map.render(np.eye(4), band)
        return bev_occupancy(labels, band, self.classes, z_min, z_max, seen=known, free_classes=p.free_classes)
