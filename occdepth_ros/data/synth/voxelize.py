"""Ground-truth voxel grids of a frame, computed from the same primitives that were rendered.

Conventions (SemanticKITTI-like):

* labels: a voxel takes the class of a solid that *intersects its cube*
  (exact tests, not centre sampling, so thin poles and sign plates are never
  lost). A ground slab's surface is the voxels meeting its top ``voxel_layer``
  metres. The voxels below that surface take the label of the first labelled
  voxel above them in their column (unless ``GridConfig.fill_below_ground`` is
  off, which leaves them empty): SemanticKITTI's voxelizer (jbehley/voxelizer,
  ``VoxelGrid::insertOcclusionLabels``) labels every voxel occluded beneath a
  labelled one from above, so its ground reaches the grid's floor. Other
  solids are filled: the synthetic world knows the inside of a car. Where
  solids share a voxel, ``PAINT_ORDER`` decides (small things and things on
  the ground win over what they stand on).
* invalid: voxels no camera could ever see: those whose centre is outside
  every camera's image (the official projection: ``u = round(fx X / Z + cx)`` in [0, W),
  v likewise, Z > 0; unless ``GridConfig.view_invalid`` is off, which labels the whole
  volume) and, with ``GridConfig.interior_invalid``, those buried
  inside a solid (the cube lies strictly inside one primitive, so no surface
  passes through it). SemanticKITTI marks such never-observed voxels invalid
  too, which keeps filled building blocks from swamping the class balance.
  Other occluded space inside the frustum stays valid: its labels are exact
  here, unlike in real data, so there is no reason to hide it.
* occluded: valid voxels that hold no visible surface point and whose centre
  lies, in every camera that images it, more than half a voxel diagonal
  behind that camera's depth at its pixel (hidden from both views; the
  ``.occluded`` file). Sky pixels hide nothing.
* occupancy (``.bin``): voxels holding a back-projected depth pixel of either
  camera, i.e. the surfaces the cameras see (the analogue of the input scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry.calib import StereoRig
from .config import GridConfig
from .primitives import Box, Cylinder, Pose2D, Primitive, Sphere, to_local

PAINT_ORDER: tuple[str, ...] = (
    "terrain", "road", "parking", "sidewalk", "other-ground",
    "building", "vegetation", "fence", "trunk", "pole", "traffic-sign",
    "truck", "other-vehicle", "car", "bicycle", "motorcycle", "bicyclist", "motorcyclist", "person",
)
_TOUCH = 1e-6  # solids merely touching a voxel face do not claim it


@dataclass(frozen=True)
class VoxelAxes:
    """Voxel centre coordinates along each grid axis (grid = velodyne frame)."""

    cfg: GridConfig

    def centers(self, axis: int) -> np.ndarray:
        return self.cfg.origin[axis] + (np.arange(self.cfg.shape[axis]) + 0.5) * self.cfg.voxel_size

    def index_range(self, axis: int, lo: float, hi: float) -> slice:
        """Voxels along ``axis`` whose extent overlaps [lo, hi]."""
        o, vs, n = self.cfg.origin[axis], self.cfg.voxel_size, self.cfg.shape[axis]
        i0 = max(int(np.ceil((lo - o) / vs - 1.0)), 0)
        i1 = min(int(np.floor((hi - o) / vs)), n - 1) + 1
        return slice(i0, max(i0, i1))

    def world_bounds(self, ego: Pose2D) -> np.ndarray:
        """(2, 3) world AABB of the grid at pose ``ego``."""
        lo = np.asarray(self.cfg.origin, dtype=np.float64)
        hi = lo + np.asarray(self.cfg.shape) * self.cfg.voxel_size
        corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        world = (ego.matrix() @ corners.T).T[:, :3]
        return np.stack([world.min(axis=0), world.max(axis=0)])


def _z_overlap(zs: np.ndarray, half: float, z0: float, z1: float) -> np.ndarray:
    return (zs - half < z1 - _TOUCH) & (zs + half > z0 + _TOUCH)


def _box_footprint(box: Box, xs: np.ndarray, ys: np.ndarray, half: float) -> np.ndarray:
    """Separating-axis test of each voxel square against the turned rectangle, (X, Y)."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    ac, as_ = abs(c), abs(s)
    hx, hy, _ = box.half
    dx = (xs - box.center[0])[:, None]
    dy = (ys - box.center[1])[None, :]
    m = (np.abs(dx) < half + hx * ac + hy * as_ - _TOUCH) & (np.abs(dy) < half + hx * as_ + hy * ac - _TOUCH)
    m &= np.abs(c * dx + s * dy) < hx + half * (ac + as_) - _TOUCH
    m &= np.abs(-s * dx + c * dy) < hy + half * (ac + as_) - _TOUCH
    return m


def _box_mask(box: Box, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, half: float) -> np.ndarray:
    """The box's footprint times its z extent (a ground slab: its surface layer only)."""
    top = box.center[2] + box.half[2]
    bottom = top - box.voxel_layer if box.voxel_layer is not None else box.center[2] - box.half[2]
    return _box_footprint(box, xs, ys, half)[:, :, None] & _z_overlap(zs, half, bottom, top)[None, None, :]


def _below_surface_mask(box: Box, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, half: float) -> np.ndarray:
    """Voxels of a ground slab's footprint whose cube lies wholly below its labelled surface
    layer: a sensor above the ground never sees them."""
    surface_bottom = box.center[2] + box.half[2] - box.voxel_layer
    below = zs + half <= surface_bottom + _TOUCH
    return _box_footprint(box, xs, ys, half)[:, :, None] & below[None, None, :]


def fill_from_above(labels: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Each empty voxel of ``below`` takes the label of the first labelled voxel above it
    in its column, through empty ``below`` voxels only (the voxelizer's rule for occluded
    voxels). ``labels`` (X, Y, Z) is filled in place and returned."""
    for k in range(labels.shape[2] - 2, -1, -1):
        take = below[:, :, k] & (labels[:, :, k] == 0)
        labels[:, :, k][take] = labels[:, :, k + 1][take]
    return labels


def _gap(coords: np.ndarray, center: float, half: float) -> np.ndarray:
    """Distance from ``center`` to each voxel's interval along one axis."""
    return np.maximum(np.abs(coords - center) - half, 0.0)


def _cylinder_mask(cyl: Cylinder, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, half: float) -> np.ndarray:
    gx, gy = _gap(xs, cyl.center_xy[0], half)[:, None], _gap(ys, cyl.center_xy[1], half)[None, :]
    m = gx * gx + gy * gy < cyl.radius**2 - _TOUCH
    return m[:, :, None] & _z_overlap(zs, half, cyl.z0, cyl.z1)[None, None, :]


def _sphere_mask(sph: Sphere, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, half: float) -> np.ndarray:
    gx = _gap(xs, sph.center[0], half)[:, None, None]
    gy = _gap(ys, sph.center[1], half)[None, :, None]
    gz = _gap(zs, sph.center[2], half)[None, None, :]
    return gx * gx + gy * gy + gz * gz < sph.radius**2 - _TOUCH


def _mask(prim: Primitive, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, half: float) -> np.ndarray:
    """Voxels whose cube meets the solid."""
    if isinstance(prim, Box):
        return _box_mask(prim, xs, ys, zs, half)
    if isinstance(prim, Cylinder):
        return _cylinder_mask(prim, xs, ys, zs, half)
    return _sphere_mask(prim, xs, ys, zs, half)


def _z_inside(zs: np.ndarray, half: float, z0: float, z1: float) -> np.ndarray:
    return (zs - half > z0 + _TOUCH) & (zs + half < z1 - _TOUCH)


def _interior_mask(prim: Primitive, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, half: float) -> np.ndarray:
    """Voxels whose whole cube lies strictly inside the solid."""
    if isinstance(prim, Box):
        c, s = np.cos(prim.yaw), np.sin(prim.yaw)
        reach = half * (abs(c) + abs(s))  # the cube's half extent along the box axes
        dx = (xs - prim.center[0])[:, None]
        dy = (ys - prim.center[1])[None, :]
        m = (np.abs(c * dx + s * dy) + reach < prim.half[0] - _TOUCH)
        m &= np.abs(-s * dx + c * dy) + reach < prim.half[1] - _TOUCH
        z = _z_inside(zs, half, prim.center[2] - prim.half[2], prim.center[2] + prim.half[2])
        return m[:, :, None] & z[None, None, :]
    if isinstance(prim, Cylinder):
        fx = (np.abs(xs - prim.center_xy[0]) + half)[:, None]
        fy = (np.abs(ys - prim.center_xy[1]) + half)[None, :]
        m = fx * fx + fy * fy < prim.radius**2 - _TOUCH
        return m[:, :, None] & _z_inside(zs, half, prim.z0, prim.z1)[None, None, :]
    fx = (np.abs(xs - prim.center[0]) + half)[:, None, None]
    fy = (np.abs(ys - prim.center[1]) + half)[None, :, None]
    fz = (np.abs(zs - prim.center[2]) + half)[None, None, :]
    return fx * fx + fy * fy + fz * fz < prim.radius**2 - _TOUCH


def _labelled_bounds(prim: Primitive) -> np.ndarray:
    """AABB of the part of a primitive that is labelled (ground: its top layer only)."""
    lo, hi = prim.aabb()
    if isinstance(prim, Box) and prim.voxel_layer is not None:
        lo = lo.copy()
        lo[2] = hi[2] - prim.voxel_layer
    return np.stack([lo, hi])


def label_voxels(
    prims: tuple[Primitive, ...],
    bounds: np.ndarray,
    ego: Pose2D,
    grid: GridConfig,
    class_names: tuple[str, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Class id per voxel (uint8) and the voxels buried inside a solid (bool), grid at ``ego``."""
    axes = VoxelAxes(grid)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    interior = np.zeros(grid.shape, dtype=bool)
    below = np.zeros(grid.shape, dtype=bool)  # under a ground surface
    wb = axes.world_bounds(ego)
    near = np.flatnonzero(np.all(bounds[:, 0] <= wb[1], axis=1) & np.all(bounds[:, 1] >= wb[0], axis=1))
    rank = {name: i for i, name in enumerate(PAINT_ORDER)}
    order = sorted(near, key=lambda k: (rank[prims[k].cls], k))
    centers = [axes.centers(a) for a in range(3)]
    half = 0.5 * grid.voxel_size
    for k in order:
        local = to_local(prims[k], ego)
        lo, hi = _labelled_bounds(local)
        sl = tuple(axes.index_range(a, lo[a], hi[a]) for a in range(3))
        if any(s.stop <= s.start for s in sl):
            continue
        sub = tuple(centers[a][sl[a]] for a in range(3))
        labels[sl][_mask(local, *sub, half)] = class_names.index(local.cls)
        is_ground = isinstance(local, Box) and local.voxel_layer is not None
        if not is_ground:
            interior[sl] |= _interior_mask(local, *sub, half)
        elif grid.fill_below_ground:  # from the grid's floor up to the surface layer
            column = (sl[0], sl[1], slice(0, sl[2].stop))
            below[column] |= _below_surface_mask(local, sub[0], sub[1], centers[2][column[2]], half)
    if grid.fill_below_ground:
        fill_from_above(labels, below)
    return labels, interior


class GridProjection:
    """Where every voxel centre lands in every camera; fixed for a rig, so computed once."""

    def __init__(self, rig: StereoRig, grid: GridConfig):
        self.grid = grid
        axes = VoxelAxes(grid)
        xs, ys, zs = (axes.centers(a) for a in range(3))
        self.fov: list[np.ndarray] = []  # flat voxel indices inside each camera's image
        self.pixel: list[np.ndarray] = []  # their flat pixel indices
        self.z: list[np.ndarray] = []  # their camera depth
        for cam in rig.cameras:
            T = cam.T_grid_to_cam
            X = [
                (T[r, 0] * xs)[:, None, None] + (T[r, 1] * ys)[None, :, None] + (T[r, 2] * zs)[None, None, :] + T[r, 3]
                for r in range(3)
            ]
            z = X[2].reshape(-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                u = np.rint(cam.K[0, 0] * X[0].reshape(-1) / z + cam.K[0, 2])
                v = np.rint(cam.K[1, 1] * X[1].reshape(-1) / z + cam.K[1, 2])
            inside = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
            idx = np.flatnonzero(inside)
            self.fov.append(idx)
            self.pixel.append((v[idx] * cam.width + u[idx]).astype(np.int64))
            self.z.append(z[idx].astype(np.float32))
        self.rays = [_pixel_rays(cam) for cam in rig.cameras]

    def outside(self) -> np.ndarray:
        """Voxels no camera images (bool, grid shape)."""
        seen = np.zeros(int(np.prod(self.grid.shape)), dtype=bool)
        for idx in self.fov:
            seen[idx] = True
        return ~seen.reshape(self.grid.shape)

    def hidden(self, depths: np.ndarray) -> np.ndarray:
        """Imaged voxels lying behind the visible surface in every camera that images them."""
        n = int(np.prod(self.grid.shape))
        margin = 0.5 * np.sqrt(3.0) * self.grid.voxel_size
        seen = np.zeros(n, dtype=bool)
        visible = np.zeros(n, dtype=bool)
        for idx, pix, z, depth in zip(self.fov, self.pixel, self.z, depths):
            d = depth.reshape(-1)[pix]
            seen[idx] = True
            visible[idx[(d <= 0) | (z <= d + margin)]] = True
        return (seen & ~visible).reshape(self.grid.shape)

    def occupancy(self, depths: np.ndarray) -> np.ndarray:
        """Voxels that hold a back-projected depth pixel of any camera."""
        occ = np.zeros(self.grid.shape, dtype=bool)
        origin = np.asarray(self.grid.origin)
        for (o, dirs), depth in zip(self.rays, depths):
            d = depth.reshape(-1)
            ok = d > 0
            pts = o + d[ok, None].astype(np.float64) * dirs[ok]
            idx = np.floor((pts - origin) / self.grid.voxel_size).astype(np.int64)
            inside = np.all((idx >= 0) & (idx < np.asarray(self.grid.shape)), axis=1)
            i = idx[inside]
            occ[i[:, 0], i[:, 1], i[:, 2]] = True
        return occ


def _pixel_rays(cam) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre and per-pixel ray (camera-z = 1) in the grid frame, (H*W, 3)."""
    grid_from_cam = np.linalg.inv(cam.T_grid_to_cam)
    v, u = np.mgrid[0 : cam.height, 0 : cam.width]
    d_cam = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], (v - cam.K[1, 2]) / cam.K[1, 1], np.ones(u.shape)], axis=-1)
    return grid_from_cam[:3, 3].copy(), d_cam.reshape(-1, 3) @ grid_from_cam[:3, :3].T


@dataclass(frozen=True)
class FrameVoxels:
    labels: np.ndarray  # (X, Y, Z) uint8 class ids
    invalid: np.ndarray  # (X, Y, Z) bool
    occluded: np.ndarray  # (X, Y, Z) bool
    occupancy: np.ndarray  # (X, Y, Z) bool


def frame_voxels(
    prims: tuple[Primitive, ...],
    bounds: np.ndarray,
    ego: Pose2D,
    projection: GridProjection,
    depths: np.ndarray,
    class_names: tuple[str, ...],
) -> FrameVoxels:
    """All four SemanticKITTI grids of one frame; ``depths`` (C, H, W) from the renderer."""
    grid = projection.grid
    labels, interior = label_voxels(prims, bounds, ego, grid, class_names)
    invalid = projection.outside() if grid.view_invalid else np.zeros(grid.shape, dtype=bool)
    if grid.interior_invalid:
        invalid |= interior
    occupancy = projection.occupancy(depths)
    return FrameVoxels(
        labels=labels,
        invalid=invalid,
        occluded=projection.hidden(depths) & ~invalid & ~occupancy,
        occupancy=occupancy,
    )
