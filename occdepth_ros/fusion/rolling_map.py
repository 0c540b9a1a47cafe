"""RollingSemanticMap: per-voxel occupancy and class evidence in the odometry frame, in a
window that moves with the robot.

Layout: a ring buffer. Odometry-frame voxel ``(a, b, c)`` (centre ``(index + 0.5) *
voxel_size``, the odometry frame being z up) lives in slot ``(a mod nx, b mod ny, c mod nz)``
while it is inside the window ``[origin, origin + dims)``. Moving the window clears only the
slabs of slots that leave it; the volume is never copied.

Evidence per voxel, all weighted by the observation's quality ``w`` (its range from the
sensor when observed, ``FusionConfig.range_falloff_m``):

* occupancy: ``sum w * P(occupied)`` over ``sum w`` (``P(occupied) = 1 - P(empty)``, the
  network's own probability, so voxels predicted empty add free-space evidence);
* class: ``sum w * P(class)`` for every occupied class, added by the voxels
  that may be occupied (``FusionConfig.class_min_occupied``); kept in a pool of rows for
  the voxels that have any (``ClassEvidencePool``), most of the window having none.

Fused: occupied when the occupancy fraction reaches ``occupied_threshold``, then the class
whose evidence divided by the network's class prior is largest (``class_prior``: the mean
class distribution the network predicts on its training data). A network's probabilities
carry its training prior in every frame; dividing it out once lets a rare class that frames
agree on win over a common class that each frame leans to. Without a prior the class with
the most evidence wins. Old evidence fades by ``decay`` (class evidence by ``class_decay``)
per frame, applied lazily when a voxel is next observed, and occupancy is scaled down to
``max_weight`` in total, so a per-frame update costs O(voxels in view) and the map keeps
adapting. Moving objects: see ``FusionConfig`` (a confident change of class where either
class is movable, and a voxel of a movable class seen confidently empty, discount the old
evidence).

A frame enters by pushing each seen grid voxel to the map voxel that contains its centre
(nearest); a map k times coarser than the grid takes the frame averaged over blocks of k^3
grid voxels first (``block_frame``). Rendering pulls each grid voxel centre from the map
voxel that contains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.poses import invert_rigid
from .block_frame import block_factor, block_frame
from .class_pool import NO_ROW, ClassEvidencePool
from .config import EMPTY, FusionConfig
FADE_TABLE = 64  # ages (frames) whose decay factor is looked up


@dataclass
class IntegrateStats:
    """What one ``integrate`` did."""

    updated: int  # map voxels that took evidence
    flips: int  # of those, voxels whose occupied class flipped (old evidence discounted)
    vacated: int  # of those, voxels of a movable class seen confidently empty (old evidence discounted)
    window_shift: tuple[int, int, int]  # voxels the window moved along x, y, z
    cleared_slots: int  # slots cleared because they left the window


@dataclass(frozen=True)
class _GridView:
    """What a frame's grid contributes, per seen voxel (computed once per grid and mask)."""

    key: bytes
    flat: np.ndarray  # (n,) flat grid index of each seen voxel
    ijk: tuple[np.ndarray, np.ndarray, np.ndarray]  # float32 voxel indices
    weight: np.ndarray  # (n,) float32 observation weight from range


def class_scale(prior: np.ndarray | None, num_classes: int) -> np.ndarray:
    """(num_classes - 1,) float32 weights of the occupied classes' evidence: 1 / prior
    (scaled to a largest weight of 1), or all ones without a prior."""
    if prior is None:
        return np.ones(num_classes - 1, dtype=np.float32)
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (num_classes,) or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
        raise ValueError(f"class_prior must hold {num_classes} positive finite numbers, got {prior.tolist()}")
    scale = prior[1:].min() / prior[1:]
    return scale.astype(np.float32)


def _grid_axes(grid) -> tuple[np.ndarray, tuple[int, int, int], float]:
    return np.asarray(grid.origin, dtype=np.float64), tuple(int(d) for d in grid.dims), float(grid.voxel_size)


class RollingSemanticMap:
    """See the module docstring. ``num_classes`` includes the empty class (index 0);
    ``class_prior`` (num_classes,) the network's mean class distribution, or None;
    ``movable`` (num_classes,) bool, the classes that may flip (None: every class)."""

    def __init__(self, cfg: FusionConfig, num_classes: int, class_prior: np.ndarray | None = None,
                 movable: np.ndarray | None = None) -> None:
        if not 2 <= num_classes <= 255:
            raise ValueError(f"num_classes must be in [2, 255] (empty and at least one class), got {num_classes}")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.class_scale = class_scale(class_prior, self.num_classes)
        if movable is None:
            movable = np.ones(self.num_classes, dtype=bool)
        self.movable = np.asarray(movable, dtype=bool)
        if self.movable.shape != (self.num_classes,):
            raise ValueError(f"movable must be a bool mask of {self.num_classes} classes, got shape {self.movable.shape}")
        self._vacates = self.movable.copy()  # fused classes that a confident "empty" discounts
        self._vacates[EMPTY] = False
        self.dims = cfg.dims
        n = int(np.prod(self.dims))
        self._occ = np.zeros(n, dtype=np.float32)  # sum w * P(occupied)
        self._total = np.zeros(n, dtype=np.float32)  # sum w (0 = never observed)
        self._classes = ClassEvidencePool(self.num_classes - 1, n)  # sum w * P(class), occupied classes
        self._row = np.zeros(n, dtype=np.int32)  # the voxel's row in _classes (NO_ROW: no class evidence)
        self._best = np.zeros(n, dtype=np.uint8)  # argmax of class_scale * class evidence (+1); 0 = none
        self._stamp = np.zeros(n, dtype=np.int32)  # frame of the last update (lazy decay)
        self._label = np.zeros(n, dtype=np.uint8)  # fused class, kept current for rendering
        self.origin: np.ndarray | None = None  # window corner, odometry voxel index (int64, 3)
        self.frame = 0
        self.flips = 0
        self.vacated = 0
        self.resets = 0
        self._view: _GridView | None = None
        self._fade_tables: dict[float, np.ndarray] = {}

    # -- bookkeeping -----------------------------------------------------------
    def _arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays with one entry per window voxel."""
        return (self._occ, self._total, self._row, self._best, self._stamp, self._label)

    def reset(self) -> None:
        """Forget everything (a pose jump); counted in ``resets``."""
        for arr in self._arrays():
            arr.fill(0)
        self._classes.clear()
        self.origin = None
        self.resets += 1

    def memory_bytes(self) -> int:
        """Bytes held by the map's arrays: those of every window voxel, and the class
        evidence rows (which grow with the voxels that have class evidence, at most one per
        window voxel)."""
        return sum(a.nbytes for a in self._arrays()) + self._classes.nbytes

    def class_voxels(self) -> int:
        """Voxels of the window holding class evidence (each holds one pool row)."""
        return self._classes.in_use

    def observed_voxels(self) -> int:
        """Voxels of the window holding any evidence."""
        return int(np.count_nonzero(self._total))

    def window_origin_for(self, T_odom_from_grid: np.ndarray) -> np.ndarray:
        """The window corner (odometry voxel index) that centres the window on a pose: x and
        y centred on the grid frame's origin, z from the height band below it."""
        vs, (nx, ny, _) = self.cfg.voxel_size, self.dims
        t = np.asarray(T_odom_from_grid, dtype=np.float64)[:3, 3]
        return np.array([int(np.floor(t[0] / vs + 0.5)) - nx // 2,
                         int(np.floor(t[1] / vs + 0.5)) - ny // 2,
                         int(np.floor((t[2] + self.cfg.z_min_m) / vs + 0.5))], dtype=np.int64)

    def move_window(self, new_origin: np.ndarray) -> tuple[tuple[int, int, int], int]:
        """Move the window to ``new_origin``, clearing the slabs of slots that leave it.
        Returns (shift in voxels, slots cleared)."""
        new_origin = np.asarray(new_origin, dtype=np.int64)
        if self.origin is None:
            self.origin = new_origin.copy()
            return (0, 0, 0), 0
        shift = new_origin - self.origin
        cleared = 0
        for axis in range(3):
            s, n = int(shift[axis]), self.dims[axis]
            if s == 0:
                continue
            if abs(s) >= n:
                leaving = np.arange(n)
            elif s > 0:  # odometry indices origin .. origin + s - 1 leave
                leaving = np.arange(self.origin[axis], self.origin[axis] + s) % n
            else:  # odometry indices origin + n + s .. origin + n - 1 leave
                leaving = np.arange(self.origin[axis] + n + s, self.origin[axis] + n) % n
            sl = [slice(None)] * 3
            sl[axis] = leaving
            sl = tuple(sl)
            self._classes.give_back(self._row.reshape(self.dims)[sl].reshape(-1))
            for arr in self._arrays():
                arr.reshape(self.dims)[sl] = 0
            cleared += len(leaving) * int(np.prod(self.dims)) // n
        self.origin = new_origin.copy()
        return (int(shift[0]), int(shift[1]), int(shift[2])), cleared

    # -- geometry ----------------------------------------------------------------
    def _grid_view(self, seen: np.ndarray, grid) -> _GridView:
        origin, dims, vs = _grid_axes(grid)
        key = repr((tuple(origin), dims, vs)).encode() + np.packbits(seen).tobytes()
        if self._view is None or self._view.key != key:
            flat = np.flatnonzero(seen)
            i, j, k = np.unravel_index(flat, dims)
            centres = origin + (np.stack([i, j, k], axis=1) + 0.5) * vs
            r = np.linalg.norm(centres, axis=1)
            w = 1.0 / (1.0 + (r / self.cfg.range_falloff_m) ** self.cfg.range_power)
            self._view = _GridView(key, flat, (i.astype(np.float32), j.astype(np.float32), k.astype(np.float32)),
                                   w.astype(np.float32))
        return self._view

    def _affine(self, T_odom_from_grid: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
        """(A, b): window-relative map index (continuous) = A @ grid index + b."""
        origin, _, gvs = _grid_axes(grid)
        T = np.asarray(T_odom_from_grid, dtype=np.float64)
        vs = self.cfg.voxel_size
        A = T[:3, :3] * (gvs / vs)
        b = (T[:3, :3] @ (origin + 0.5 * gvs) + T[:3, 3]) / vs - self.origin
        return A, b

    def _slots(self, u: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(inside mask, ring slots of the inside entries) of continuous window-relative indices."""
        inside = (u[0] >= 0) & (u[0] < self.dims[0])
        for axis in (1, 2):
            inside &= (u[axis] >= 0) & (u[axis] < self.dims[axis])
        slot = None
        for axis in range(3):
            n = self.dims[axis]
            ring = u[axis].astype(np.int32)  # truncation = floor where inside (u >= 0)
            ring += np.int32(self.origin[axis] % n)
            if n & (n - 1) == 0:  # a power of two: the modulo is a mask
                ring &= np.int32(n - 1)
            else:
                ring %= np.int32(n)
            if slot is None:
                slot = ring
            else:
                slot *= np.int32(n)
                slot += ring
        return inside, slot[inside]

    def _correspondences(self, T: np.ndarray, seen: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(map slots, grid flat indices, weights) of one frame. A map as coarse as the grid
        or coarser: each seen grid voxel goes to the map voxel holding its centre (push, one
        pass over the voxels in view). A finer map: each map voxel in the grid box takes the
        grid voxel holding its centre (pull), so no map voxel in view is skipped."""
        view = self._grid_view(seen, grid)
        if self.cfg.voxel_size >= float(grid.voxel_size) - 1e-9:
            A, b = self._affine(T, grid)
            A, b = A.astype(np.float32), b.astype(np.float32)  # window-relative: small numbers
            i, j, k = view.ijk
            u = []
            for r in range(3):  # the operation order of render(): identical float32 rounding
                row = i * A[r, 0]
                row += b[r]
                row += j * A[r, 1]
                row += k * A[r, 2]
                u.append(row)
            inside, slots = self._slots(u)
            return slots, view.flat[inside], view.weight[inside]
        slots, flat = self._pull(T, grid)
        keep = seen.reshape(-1)[flat]
        slots, flat = slots[keep], flat[keep]
        weight = np.zeros(seen.size, dtype=np.float32)
        weight[view.flat] = view.weight
        return slots, flat, weight[flat]

    def _pull(self, T: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
        """(map slots, grid flat indices): every window voxel whose centre lies in the grid
        box, with the grid voxel that holds that centre."""
        origin, dims, gvs = _grid_axes(grid)
        vs = self.cfg.voxel_size
        corners = np.array([[origin[0] + a * dims[0] * gvs, origin[1] + b * dims[1] * gvs, origin[2] + c * dims[2] * gvs]
                            for a in (0, 1) for b in (0, 1) for c in (0, 1)])
        odom = corners @ T[:3, :3].T + T[:3, 3]
        lo = np.maximum(np.floor(odom.min(0) / vs).astype(np.int64), self.origin)
        hi = np.minimum(np.ceil(odom.max(0) / vs).astype(np.int64), self.origin + np.array(self.dims))
        if np.any(hi <= lo):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        G = invert_rigid(T)  # grid index (continuous) = A @ odometry index + b
        A = G[:3, :3] * (vs / gvs)
        b = (G[:3, :3] @ np.full(3, 0.5 * vs) + G[:3, 3] - origin) / gvs
        ranges = [np.arange(lo[a], hi[a]) for a in range(3)]
        shape = tuple(len(r) for r in ranges)
        g = [np.floor((A[r, 0] * ranges[0])[:, None, None] + (A[r, 1] * ranges[1])[None, :, None]
                      + (A[r, 2] * ranges[2])[None, None, :] + b[r]).astype(np.int64) for r in range(3)]
        inside = np.ones(shape, dtype=bool)
        for a in range(3):
            inside &= (g[a] >= 0) & (g[a] < dims[a])
        sel = np.flatnonzero(inside)
        flat = (g[0].reshape(-1)[sel] * dims[1] + g[1].reshape(-1)[sel]) * dims[2] + g[2].reshape(-1)[sel]
        nx, ny, nz = self.dims
        ai, aj, ak = np.unravel_index(sel, shape)
        slots = ((ranges[0] % nx)[ai] * ny + (ranges[1] % ny)[aj]) * nz + (ranges[2] % nz)[ak]
        return slots, flat

    # -- evidence ------------------------------------------------------------------
    def integrate(self, probs: np.ndarray, seen: np.ndarray, T_odom_from_grid: np.ndarray, grid,
                  labels: np.ndarray | None = None) -> IntegrateStats:
        """Add a frame: ``probs`` (K, X, Y, Z) class probabilities on ``grid`` (a model
        ``GridConfig``), ``seen`` (X, Y, Z) bool (only those voxels take evidence),
        ``T_odom_from_grid`` the frame's pose. ``labels``: the frame's argmax classes when
        the caller has them (saves a pass over every class). Moves the window first."""
        _, dims, _ = _grid_axes(grid)
        if probs.shape != (self.num_classes, *dims):
            raise ValueError(f"probs has shape {probs.shape}, expected {(self.num_classes, *dims)}")
        if seen.shape != dims or seen.dtype != bool:
            raise ValueError(f"seen must be a bool array of shape {dims}, got {seen.dtype} {seen.shape}")
        if labels is not None and labels.shape != dims:
            raise ValueError(f"labels has shape {labels.shape}, expected {dims}")
        T = np.asarray(T_odom_from_grid, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_odom_from_grid must be a finite 4x4 transform, got shape {T.shape}")
        cfg = self.cfg
        k = block_factor(float(grid.voxel_size), cfg.voxel_size, dims)
        if k > 1:  # a map k times coarser: every grid voxel of a block counts, at the coarse grid's cost
            probs, seen, labels, grid = block_frame(probs, seen, grid, k, cfg.class_min_occupied)
        self.frame += 1
        shift, cleared = self.move_window(self.window_origin_for(T))
        slots, flat, w = self._correspondences(T, seen, grid)

        flat_probs = probs.reshape(self.num_classes, -1)
        p_occ = (1.0 - flat_probs[EMPTY][flat]).astype(np.float32)
        # Class evidence comes from the few voxels that may be occupied (most are free space).
        has = self._class_voxels(flat_probs, flat, labels, p_occ)
        p_cls = np.take(flat_probs, flat[has], axis=1)[1:].T.astype(np.float32)  # (voxels, K - 1)
        if cfg.free_weight != 1.0:
            w = np.where(p_occ < 0.5, w * np.float32(cfg.free_weight), w)

        occ, total, stamp, fused = self._occ[slots], self._total[slots], self._stamp[slots], self._label[slots]
        fade = self._fade(self.frame - stamp, cfg.decay)
        slots_h = slots[has]
        rows = self._class_rows(slots_h)
        class_fade = self._fade(self.frame - self._classes.stamp[rows], cfg.class_decay)
        # Moving objects: the frame's class (weighed as the map weighs), when confident and
        # not the fused one, where either is a class whose things move. Only a voxel with
        # some class at flip_confidence can flip, so the frame's class is found for those alone.
        cand = np.flatnonzero(p_cls.max(1) >= cfg.flip_confidence)
        top = (p_cls[cand] * self.class_scale).argmax(1) + 1
        best = self._best[slots_h[cand]]
        confident = p_cls[cand, top - 1] >= cfg.flip_confidence
        flip = cand[confident & (top != best) & (fused[has[cand]] != EMPTY)
                    & (self.movable[top] | self.movable[best])]
        fade[has[flip]] *= np.float32(cfg.flip_keep)
        class_fade[flip] *= np.float32(cfg.flip_keep)
        # A movable thing that left: its voxel seen confidently empty loses its old occupancy.
        vacated = np.flatnonzero((p_occ <= np.float32(1.0 - cfg.flip_confidence)) & self._vacates[fused])
        fade[vacated] *= np.float32(cfg.flip_keep)
        occ *= fade
        occ += w * self._occupancy_evidence(p_occ)
        total *= fade
        total += w
        over = total > cfg.max_weight
        if over.any():
            occ[over] *= np.float32(cfg.max_weight) / total[over]
            total[over] = cfg.max_weight
        evidence = self._classes.evidence[rows]
        evidence *= class_fade[:, None]
        p_cls *= w[has][:, None]
        evidence += p_cls
        self._classes.evidence[rows] = evidence
        self._classes.stamp[rows] = self.frame
        evidence *= self.class_scale
        self._best[slots_h] = evidence.argmax(1) + 1

        self._occ[slots], self._total[slots], self._stamp[slots] = occ, total, self.frame
        self._label[slots] = np.where(self._is_occupied(occ, total), self._best[slots], EMPTY)
        n_flip = len(flip)
        self.flips += n_flip
        self.vacated += len(vacated)
        return IntegrateStats(updated=int(len(slots)), flips=n_flip, vacated=len(vacated), window_shift=shift,
                              cleared_slots=cleared)

    def _class_rows(self, slots: np.ndarray) -> np.ndarray:
        """The class evidence rows of map slots, handing out a row to each slot that has
        none yet (one per slot, however often it appears in ``slots``)."""
        rows = self._row[slots]
        new = np.flatnonzero(rows == NO_ROW)
        if len(new):
            fresh, inverse = np.unique(slots[new], return_inverse=True)
            got = self._classes.take(len(fresh))
            self._row[fresh] = got
            rows[new] = got[inverse]
        return rows

    def _fade(self, age: np.ndarray, decay: float) -> np.ndarray:
        """decay ** age (float32) for frames since the last update: a table for the usual
        small ages, the power itself beyond (the same float32 values either way)."""
        d = np.float32(decay)
        table = self._fade_tables.get(decay)
        if table is None:
            table = self._fade_tables[decay] = d ** np.arange(FADE_TABLE, dtype=np.float32)
        fade = table.take(np.minimum(age, FADE_TABLE - 1))
        far = np.flatnonzero(age >= FADE_TABLE - 1)
        if len(far):
            fade[far] = d ** age[far].astype(np.float32)
        return fade

    def _occupancy_evidence(self, p_occ: np.ndarray) -> np.ndarray:
        """What one observation adds (times its weight) to a voxel's occupancy sum."""
        if self.cfg.occupancy == "probability":
            return p_occ
        lim = np.float32(self.cfg.log_odds_clamp)
        p = np.clip(p_occ, np.float32(1e-6), np.float32(1 - 1e-6))
        return np.clip(np.log(p / (1 - p)), -lim, lim)

    def _is_occupied(self, occ: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Fused occupancy decision from a voxel's sums (see ``FusionConfig.occupancy``)."""
        thr = self.cfg.occupied_threshold
        mode = self.cfg.occupancy
        if mode == "probability":
            bar = np.float32(thr) * total
        else:
            logit = np.float32(np.log(thr / (1 - thr)))
            bar = logit * total if mode == "log_odds_mean" else logit  # log_odds_sum: the sum itself
        return (occ >= bar) & (total > 0)

    def _class_voxels(self, flat_probs: np.ndarray, flat: np.ndarray, labels: np.ndarray | None,
                      p_occ: np.ndarray) -> np.ndarray:
        """Indices into ``flat`` of the voxels that add class evidence: an occupied argmax
        class, or P(occupied) at least ``class_min_occupied``. ``labels``: the argmax the
        caller has (else every class of every voxel in view is searched)."""
        likely = p_occ >= np.float32(self.cfg.class_min_occupied)
        if labels is None:
            argmax = flat_probs[:, flat].argmax(0)
        else:
            argmax = labels.reshape(-1)[flat]
        return np.flatnonzero(likely | (argmax != EMPTY))

    # -- read-out ------------------------------------------------------------------
    def render(self, T_odom_from_grid: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
        """The fused map in a frame's grid: (labels (X, Y, Z) uint8, known (X, Y, Z) bool),
        each grid voxel reading the map voxel that contains its centre; unknown voxels
        (outside the window or never observed) are labelled empty and not known."""
        _, dims, _ = _grid_axes(grid)
        labels = np.zeros(dims, dtype=np.uint8)
        known = np.zeros(dims, dtype=bool)
        if self.origin is None:
            return labels, known
        A, b = self._affine(T_odom_from_grid, grid)
        A, b = A.astype(np.float32), b.astype(np.float32)
        axes = [np.arange(d, dtype=np.float32) for d in dims]
        u = [(A[r, 0] * axes[0] + b[r])[:, None, None] + (A[r, 1] * axes[1])[None, :, None]
             + (A[r, 2] * axes[2])[None, None, :] for r in range(3)]
        inside, slots = self._slots(u)
        got = self._total[slots] > 0
        known[inside] = got
        labels[inside] = np.where(got, self._label[slots], EMPTY)
        return labels, known

    def occupied(self) -> tuple[np.ndarray, np.ndarray]:
        """Occupied voxels for publishing: (centres (N, 3) float32 in the odometry frame,
        labels (N,) uint8)."""
        if self.origin is None:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.uint8)
        slots = np.flatnonzero(self._label != EMPTY)
        d = np.array(self.dims)
        ring = np.stack(np.unravel_index(slots, self.dims), axis=-1)
        index = self.origin + (ring - self.origin) % d  # odometry voxel index of each slot
        centres = ((index + 0.5) * self.cfg.voxel_size).astype(np.float32)
        return centres, self._label[slots].copy()
