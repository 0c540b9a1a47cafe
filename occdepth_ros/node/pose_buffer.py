"""Recent odometry poses, and the pose at an image's stamp (plain Python, no ROS).

The fused map needs the grid frame's pose in the odometry frame at each image's stamp;
odometry arrives on its own stream, at its own rate, sometimes late, out of order, or
with a jump (a relocalisation, a reset of the odometry source). This buffer keeps the
recent poses and answers, per image stamp:

* **interpolated**: two poses bracket the stamp, each within ``max_age_ns`` of it
  (an exact stamp needs only that pose): translation linear, rotation slerp;
* **held**: the image is newer than the newest pose (odometry late) and none newer came
  within the wait: the newest pose, if within ``max_age_ns``; counted as late;
* **missing**: no odometry yet, or none within ``max_age_ns`` of the stamp (a gap, an
  image older than what is kept); the caller falls back to single-frame output.

Incoming poses are checked: a stamp not newer than the newest is dropped and counted
(out of order), unless it lies ``restart_back_ns`` or more back (a bag loop, a restarted
source), which restarts the buffer; a step between consecutive poses beyond
``jump_m`` / ``jump_rad`` is a jump: the buffer restarts from that pose. Each restart
(jump or loop) increments ``generation``; the map built with poses of one generation
must be reset before poses of the next are used.

Thread-safe: the odometry callback adds while a processing thread looks up (and may
wait up to ``wait_s`` for late odometry).
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from ..geometry.poses import PoseError, check_rigid, interpolate_pose, pose_distance, quaternion_to_rotation

NS_PER_S = 1_000_000_000
HISTORY_NS = 10 * NS_PER_S  # poses kept behind the newest: covers a pipeline's lag many times over
MAX_POSES = 5000  # and at most this many (500 Hz odometry over 10 s)
QUATERNION_NORM_TOLERANCE = 1e-2  # |q| this far from 1 is not a rotation; closer is normalised

# add() results
ADDED, OUT_OF_ORDER, JUMP, RESTART, INVALID = "added", "out_of_order", "jump", "restart", "invalid"
# lookup statuses
INTERPOLATED, HELD, MISSING = "interpolated", "held", "missing"


@dataclass(frozen=True)
class PoseLookup:
    """The pose (4x4 T_odom_from_grid, float64) at one stamp, or why there is none."""

    status: str  # INTERPOLATED | HELD | MISSING
    T: np.ndarray | None
    generation: int  # restarts of the buffer so far (jumps and loops)
    reason: str = ""  # MISSING: why; HELD: how late


@dataclass
class PoseCounters:
    received: int = 0
    out_of_order: int = 0
    jumps: int = 0
    restarts: int = 0  # stamps that went back by restart_back_ns or more (bag loop)
    invalid: int = 0
    late: int = 0  # lookups answered with the newest (held) pose
    missing: int = 0  # lookups with no pose
    last_restart: str = field(default="")  # why the buffer last restarted (a jump's size, a loop)


class PoseBuffer:
    def __init__(self, max_age_ns: int, jump_m: float, jump_rad: float, restart_back_ns: int | None = None,
                 history_ns: int = HISTORY_NS, max_poses: int = MAX_POSES) -> None:
        if max_age_ns <= 0:
            raise ValueError(f"max_age_ns must be > 0, got {max_age_ns}")
        if not (jump_m > 0 and jump_rad > 0):
            raise ValueError(f"jump thresholds must be > 0, got {jump_m} m, {jump_rad} rad")
        self.max_age_ns, self.jump_m, self.jump_rad = int(max_age_ns), float(jump_m), float(jump_rad)
        self.restart_back_ns = restart_back_ns
        self.history_ns, self.max_poses = int(history_ns), int(max_poses)
        self.counters = PoseCounters()
        self.generation = 0
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []
        self._changed = threading.Condition()

    # -- input ---------------------------------------------------------------------
    def add(self, stamp_ns: int, T: np.ndarray) -> str:
        """One odometry pose; returns ADDED, OUT_OF_ORDER (dropped), JUMP or RESTART (the
        buffer restarted from this pose, ``generation`` incremented) or INVALID (dropped)."""
        T = np.asarray(T, dtype=np.float64)
        with self._changed:
            self.counters.received += 1
            if T.shape != (4, 4) or stamp_ns <= 0 or not _rigid(T):
                self.counters.invalid += 1
                return INVALID
            result = ADDED
            if self._stamps and stamp_ns <= self._stamps[-1]:
                back = self._stamps[-1] - stamp_ns
                if self.restart_back_ns is None or back < self.restart_back_ns:
                    self.counters.out_of_order += 1
                    return OUT_OF_ORDER
                result = RESTART
                self.counters.restarts += 1
                self.counters.last_restart = f"odometry stamps went back {back / NS_PER_S:.3f} s (a loop, a restart)"
            elif self._stamps:
                metres, radians = pose_distance(self._poses[-1], T)
                if metres > self.jump_m or radians > self.jump_rad:
                    result = JUMP
                    self.counters.jumps += 1
                    self.counters.last_restart = f"odometry jumped {metres:.2f} m, {math.degrees(radians):.1f} deg"
            if result != ADDED:
                self._stamps.clear()
                self._poses.clear()
                self.generation += 1
            self._stamps.append(int(stamp_ns))
            self._poses.append(T.copy())
            self._prune()
            self._changed.notify_all()
            return result

    def _prune(self) -> None:
        oldest = self._stamps[-1] - self.history_ns
        cut = max(bisect.bisect_left(self._stamps, oldest), len(self._stamps) - self.max_poses)
        if cut > 0:
            del self._stamps[:cut], self._poses[:cut]

    # -- lookup --------------------------------------------------------------------
    def pose_at(self, stamp_ns: int, wait_s: float = 0.0) -> PoseLookup:
        """The pose at ``stamp_ns``; waits up to ``wait_s`` for odometry at or after it."""
        with self._changed:
            if wait_s > 0 and self._stamps:
                self._changed.wait_for(lambda: self._stamps[-1] >= stamp_ns, timeout=wait_s)
            lookup = self._lookup(int(stamp_ns))
            if lookup.status == HELD:
                self.counters.late += 1
            elif lookup.status == MISSING:
                self.counters.missing += 1
            return lookup

    def _lookup(self, t: int) -> PoseLookup:
        stamps, gen = self._stamps, self.generation
        if not stamps:
            return PoseLookup(MISSING, None, gen, "no odometry received yet")
        i = bisect.bisect_left(stamps, t)
        if i < len(stamps) and stamps[i] == t:
            return PoseLookup(INTERPOLATED, self._poses[i].copy(), gen)
        if i == len(stamps):  # newer than every pose: odometry is late
            age = t - stamps[-1]
            if age <= self.max_age_ns:
                return PoseLookup(HELD, self._poses[-1].copy(), gen, f"newest odometry {age / NS_PER_S:.3f} s older")
            return PoseLookup(MISSING, None, gen, f"newest odometry is {age / NS_PER_S:.3f} s older than the image "
                              f"(odom_max_age_s {self.max_age_ns / NS_PER_S:g})")
        if i == 0:
            return PoseLookup(MISSING, None, gen, f"image is {(stamps[0] - t) / NS_PER_S:.3f} s older than the "
                              "oldest odometry kept")
        t0, t1 = stamps[i - 1], stamps[i]
        if t - t0 > self.max_age_ns or t1 - t > self.max_age_ns:
            return PoseLookup(MISSING, None, gen, f"odometry gap of {(t1 - t0) / NS_PER_S:.3f} s around the image "
                              f"(odom_max_age_s {self.max_age_ns / NS_PER_S:g})")
        alpha = (t - t0) / (t1 - t0)
        return PoseLookup(INTERPOLATED, interpolate_pose(self._poses[i - 1], self._poses[i], alpha), gen)

    def __len__(self) -> int:
        with self._changed:
            return len(self._stamps)


# -- odometry message fields -> pose ------------------------------------------------
def pose_from_odometry(position: tuple[float, float, float], quaternion_xyzw: tuple[float, float, float, float]
                       ) -> np.ndarray | None:
    """4x4 of a geometry_msgs/Pose's numbers; None when they are no rigid pose (non-finite,
    or a quaternion whose norm is not ~1)."""
    q = np.asarray(quaternion_xyzw, dtype=np.float64)
    p = np.asarray(position, dtype=np.float64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
        return None
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
        return None
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(q / norm)
    T[:3, 3] = p
    return T


def _rigid(T: np.ndarray) -> bool:
    try:
        check_rigid(T, "odometry pose")
    except PoseError:
        return False
    return True
