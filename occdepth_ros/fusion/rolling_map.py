"""RollingSemanticMap: per-voxel class evidence in the odometry frame, in a window that
moves with the robot.

Layout: a ring buffer. Odometry-frame voxel ``(a, b, c)`` (centre ``(index + 0.5) *
voxel_size``) lives in slot ``(a mod nx, b mod ny, c mod nz)`` while it is inside the window
``[origin, origin + dims)``. Moving the window clears only the slabs of slots that leave it,
never copies the volume.

Each frame enters by pulling: every map voxel whose centre falls in the frame's grid box is
given the grid voxel that contains its centre (nearest), so one frame writes each map
voxel at most once and plain fancy indexing suffices (no scatter-add). Only voxels the frame
saw (``seen``) take evidence. Rendering pulls the other way: each grid voxel centre reads
the map voxel that contains it. Per-frame cost is O(voxels in view).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.poses import invert_rigid
from .config import FusionConfig

EMPTY = 0  # the class index of free space


@dataclass
class IntegrateStats:
    """What one ``integrate`` did."""

    updated: int  # map voxels that took evidence
    flips: int  # of those, voxels whose occupied class flipped (old evidence discounted)
    window_shift: tuple[int, int, int]  # voxels the window moved along x, y, z
    cleared_slots: int  # slots cleared because they left the window


def _grid_axes(grid) -> tuple[np.ndarray, tuple[int, int, int], float]:
    return np.asarray(grid.origin, dtype=np.float64), tuple(int(d) for d in grid.dims), float(grid.voxel_size)


class RollingSemanticMap:
    """See the module docstring. ``num_classes`` includes the empty class (index 0)."""

    def __init__(self, cfg: FusionConfig, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (empty and one class), got {num_classes}")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.dims = cfg.dims
        n = int(np.prod(self.dims))
        self._sums = np.zeros((n, self.num_classes), dtype=np.float32)  # weighted class probabilities
        self._total = np.zeros(n, dtype=np.float32)  # weights (0 = unknown)
        self._stamp = np.zeros(n, dtype=np.int32)  # frame of the last update (lazy decay)
        self._label = np.zeros(n, dtype=np.uint8)  # fused class, kept current for rendering
        self.origin: np.ndarray | None = None  # window corner, odometry voxel index (int64, 3)
        self.frame = 0
        self.flips = 0
        self.resets = 0
        self._weights: dict[tuple, np.ndarray] = {}

    # -- bookkeeping -----------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (a pose jump); counted in ``resets``."""
        self._sums.fill(0.0)
        self._total.fill(0.0)
        self._stamp.fill(0)
        self._label.fill(EMPTY)
        self.origin = None
        self.resets += 1

    def memory_bytes(self) -> int:
        """Bytes held by the map's arrays (fixed by the window, whatever the history)."""
        return sum(a.nbytes for a in (self._sums, self._total, self._stamp, self._label))

    def window_origin_for(self, T_odom_from_grid: np.ndarray) -> np.ndarray:
        """The window corner (odometry voxel index) that centres the window on a pose."""
        vs, (nx, ny, nz) = self.cfg.voxel_size, self.dims
        t = np.asarray(T_odom_from_grid, dtype=np.float64)[:3, 3]
        return np.array([int(np.floor(t[0] / vs + 0.5)) - nx // 2,
                         int(np.floor(t[1] / vs + 0.5)) - ny // 2,
                         int(np.floor((t[2] + self.cfg.z_min_m) / vs + 0.5))], dtype=np.int64)

    def _slots(self, idx: np.ndarray) -> np.ndarray:
        """Flat ring slots of odometry voxel indices (..., 3) inside the window."""
        nx, ny, nz = self.dims
        return ((idx[..., 0] % nx) * ny + (idx[..., 1] % ny)) * nz + (idx[..., 2] % nz)

    def move_window(self, new_origin: np.ndarray) -> tuple[tuple[int, int, int], int]:
        """Move the window to ``new_origin``, clearing the slabs of slots that leave it."""
        new_origin = np.asarray(new_origin, dtype=np.int64)
        if self.origin is None:
            self.origin = new_origin.copy()
            return (0, 0, 0), 0
        shift = new_origin - self.origin
        cleared = 0
        view = None
        for axis in range(3):
            s, n = int(shift[axis]), self.dims[axis]
            if s == 0:
                continue
            if view is None:
                view = self._views()
            if abs(s) >= n:
                leaving = np.arange(n)
            elif s > 0:  # indices origin .. origin + s - 1 leave
                leaving = np.arange(self.origin[axis], self.origin[axis] + s) % n
            else:  # indices origin + n + s .. origin + n - 1 leave
                leaving = np.arange(self.origin[axis] + n + s, self.origin[axis] + n) % n
            for arr in view:
                sl = [slice(None)] * arr.ndim
                sl[axis] = leaving
                arr[tuple(sl)] = 0
            cleared += len(leaving) * int(np.prod(self.dims)) // n
        self.origin = new_origin.copy()
        return tuple(int(s) for s in shift), cleared  # type: ignore[return-value]

    def _views(self) -> tuple[np.ndarray, ...]:
        d = self.dims
        return (self._sums.reshape(*d, self.num_classes), self._total.reshape(d), self._label.reshape(d))

    # -- geometry ----------------------------------------------------------------
    def _range_weights(self, grid) -> np.ndarray:
        """Observation weight of every grid voxel (flat, C order) from its range."""
        origin, dims, vs = _grid_axes(grid)
        key = (tuple(origin), dims, vs)
        if key not in self._weights:
            axes = [origin[i] + (np.arange(dims[i]) + 0.5) * vs for i in range(3)]
            r2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
            r = np.sqrt(r2).reshape(-1)
            w = 1.0 / (1.0 + (r / self.cfg.range_falloff_m) ** self.cfg.range_power)
            self._weights[key] = w.astype(np.float32)
        return self._weights[key]

    def _pull(self, T_odom_from_grid: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
        """(map slots, grid flat indices): every window voxel whose centre lies in the grid
        box, with the grid voxel that contains that centre."""
        origin, dims, gvs = _grid_axes(grid)
        vs = self.cfg.voxel_size
        T = np.asarray(T_odom_from_grid, dtype=np.float64)
        # Grid box corners in odometry coordinates -> window index bounds.
        corners = np.array([[origin[0] + i * dims[0] * gvs, origin[1] + j * dims[1] * gvs, origin[2] + k * dims[2] * gvs]
                            for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        odom = corners @ T[:3, :3].T + T[:3, 3]
        lo = np.maximum(np.floor(odom.min(0) / vs).astype(np.int64), self.origin)
        hi = np.minimum(np.ceil(odom.max(0) / vs).astype(np.int64), self.origin + np.array(self.dims))
        if np.any(hi <= lo):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # grid index (continuous) = A @ odom index + b, separable over the three axes.
        G = invert_rigid(T)
        A = G[:3, :3] * (vs / gvs)
        b = (G[:3, :3] @ np.full(3, 0.5 * vs) + G[:3, 3] - origin) / gvs
        ranges = [np.arange(lo[i], hi[i]) for i in range(3)]
        shape = tuple(len(r) for r in ranges)
        cont = []
        for row in range(3):
            c = (A[row, 0] * ranges[0])[:, None, None] + (A[row, 1] * ranges[1])[None, :, None] \
                + (A[row, 2] * ranges[2])[None, None, :] + b[row]
            cont.append(np.floor(c).astype(np.int64))
        gi, gj, gk = cont
        inside = (gi >= 0) & (gi < dims[0]) & (gj >= 0) & (gj < dims[1]) & (gk >= 0) & (gk < dims[2])
        sel = np.nonzero(inside.reshape(-1))[0]
        gflat = ((gi.reshape(-1)[sel] * dims[1] + gj.reshape(-1)[sel]) * dims[2] + gk.reshape(-1)[sel])
        nx, ny, nz = self.dims
        ai, aj, ak = np.unravel_index(sel, shape)
        slots = (((ranges[0] % nx)[ai] * ny + (ranges[1] % ny)[aj]) * nz + (ranges[2] % nz)[ak])
        return slots, gflat

    # -- evidence ------------------------------------------------------------------
    def integrate(self, probs: np.ndarray, seen: np.ndarray, T_odom_from_grid: np.ndarray, grid) -> "IntegrateStats":
        """Add a frame: ``probs`` (K, X, Y, Z) class probabilities on ``grid``, ``seen``
        (X, Y, Z) bool, ``T_odom_from_grid`` the frame's pose. Moves the window first."""
        _, dims, _ = _grid_axes(grid)
        if probs.shape != (self.num_classes, *dims):
            raise ValueError(f"probs has shape {probs.shape}, expected {(self.num_classes, *dims)}")
        if seen.shape != dims:
            raise ValueError(f"seen has shape {seen.shape}, expected {dims}")
        self.frame += 1
        shift, cleared = self.move_window(self.window_origin_for(T_odom_from_grid))
        slots, gflat = self._pull(T_odom_from_grid, grid)
        keep = seen.reshape(-1)[gflat]
        slots, gflat = slots[keep], gflat[keep]
        p = probs.reshape(self.num_classes, -1)[:, gflat].T.astype(np.float32)  # (n, K)
        w = self._range_weights(grid)[gflat]
        cfg = self.cfg
        if cfg.free_weight != 1.0:
            w = np.where(p[:, EMPTY] >= 0.5, w * np.float32(cfg.free_weight), w)
        sums, total = self._sums[slots], self._total[slots]
        age = (self.frame - self._stamp[slots]).astype(np.float32)
        fade = np.where(total > 0, np.float32(cfg.decay) ** age, 0.0).astype(np.float32)
        # Moving objects: a confident new occupied class that differs from the fused one.
        new_cls = p.argmax(1)
        old_cls = self._label[slots]
        flip = (total > 0) & (new_cls != EMPTY) & (old_cls != EMPTY) & (new_cls != old_cls) \
            & (p[np.arange(len(p)), new_cls] >= cfg.flip_confidence)
        fade[flip] *= np.float32(cfg.flip_keep)
        sums *= fade[:, None]
        total *= fade
        sums += w[:, None] * p
        total += w
        over = total > cfg.max_weight
        if over.any():
            s = np.float32(cfg.max_weight) / total[over]
            sums[over] *= s[:, None]
            total[over] = cfg.max_weight
        self._sums[slots], self._total[slots] = sums, total
        self._stamp[slots] = self.frame
        self._label[slots] = self._classify(sums, total)
        n_flip = int(flip.sum())
        self.flips += n_flip
        return IntegrateStats(updated=int(len(slots)), flips=n_flip, window_shift=shift, cleared_slots=cleared)

    def _classify(self, sums: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Fused class: empty unless P(not empty) >= occupied_threshold, else the most
        likely occupied class."""
        occupied = sums[:, EMPTY] <= (1.0 - self.cfg.occupied_threshold) * total
        best = sums[:, 1:].argmax(1).astype(np.uint8) + 1
        return np.where(occupied & (total > 0), best, EMPTY).astype(np.uint8)

    # -- read-out ------------------------------------------------------------------
    def render(self, T_odom_from_grid: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
        """The fused map in a frame's grid: (labels (X, Y, Z) uint8, known (X, Y, Z) bool),
        each grid voxel reading the map voxel that contains its centre; unknown voxels
        (outside the window or never observed) are labelled empty and not known."""
        origin, dims, gvs = _grid_axes(grid)
        labels = np.zeros(dims, dtype=np.uint8)
        known = np.zeros(dims, dtype=bool)
        if self.origin is None:
            return labels, known
        T = np.asarray(T_odom_from_grid, dtype=np.float64)
        vs = self.cfg.voxel_size
        A = T[:3, :3] * (gvs / vs)
        b = (T[:3, :3] @ (origin + 0.5 * gvs) + T[:3, 3]) / vs
        ranges = [np.arange(d) for d in dims]
        idx = []
        for row in range(3):
            c = (A[row, 0] * ranges[0])[:, None, None] + (A[row, 1] * ranges[1])[None, :, None] \
                + (A[row, 2] * ranges[2])[None, None, :] + b[row]
            idx.append(np.floor(c).astype(np.int64))
        o, n = self.origin, self.dims
        inside = np.ones(dims, dtype=bool)
        for axis in range(3):
            inside &= (idx[axis] >= o[axis]) & (idx[axis] < o[axis] + n[axis])
        slots = self._slots(np.stack([i[inside] for i in idx], axis=-1))
        got = self._total[slots] > 0
        known[inside] = got
        labels[inside] = np.where(got, self._label[slots], EMPTY)
        return labels, known

    def occupied(self) -> tuple[np.ndarray, np.ndarray]:
        """Occupied voxels for publishing: (centres (N, 3) float32 in the odometry frame,
        labels (N,) uint8)."""
        if self.origin is None:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.uint8)
        slots = np.nonzero((self._label != EMPTY) & (self._total > 0))[0]
        d = np.array(self.dims)
        ring = np.stack(np.unravel_index(slots, self.dims), axis=-1)
        index = self.origin + (ring - self.origin) % d  # odometry voxel index of each slot
        centres = ((index + 0.5) * self.cfg.voxel_size).astype(np.float32)
        return centres, self._label[slots].copy()
