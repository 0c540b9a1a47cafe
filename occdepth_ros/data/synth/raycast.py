"""Ray/solid intersections and surface attributes, vectorised over pixel blocks.

Rays are parameterised by camera depth: a direction has camera-z component 1,
so the hit parameter ``t`` *is* the depth a depth map stores. All cameras of
the rectified rig share their directions and differ only in their origin,
hence one direction block (h, w) and C origins -> hits of shape (C, h, w).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .materials import FACE_BOTTOM, FACE_POS_X, FACE_POS_Y, FACE_SIDE, FACE_TOP
from .primitives import KIND_BOX, KIND_CYLINDER, KIND_SPHERE, Box, Cylinder, Primitive, PrimitiveTable, Sphere

_TINY = np.float32(1e-12)  # stands in for exact zeros in direction components
NO_HIT = np.float32(np.inf)


@dataclass(frozen=True)
class RayBlock:
    """Directions of a rectangle of pixels, world frame, (h, w) each."""

    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray


def _nonzero(a: np.ndarray) -> np.ndarray:
    return np.where(np.abs(a) < _TINY, _TINY, a)


def _rel(origins: np.ndarray, center: tuple[float, ...]) -> np.ndarray:
    """Camera origins relative to a point, computed in float64, (C, 3)."""
    return origins - np.asarray(center, dtype=np.float64)


def hit_box(box: Box, origins: np.ndarray, rays: RayBlock, near: float) -> np.ndarray:
    """Slab test in the box frame; rays starting inside report no hit."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    o = _rel(origins, box.center)
    ol = np.stack([c * o[:, 0] + s * o[:, 1], -s * o[:, 0] + c * o[:, 1], o[:, 2]], axis=1)
    if box.yaw == 0.0:
        dirs = (rays.dx, rays.dy, rays.dz)
    else:
        dirs = (c * rays.dx + s * rays.dy, -s * rays.dx + c * rays.dy, rays.dz)
    inv = [1.0 / _nonzero(d) for d in dirs]
    out = np.empty((len(origins),) + rays.dx.shape, dtype=np.float32)
    for k in range(len(origins)):
        t_near = t_far = None
        for axis in range(3):
            h = box.half[axis]
            t1 = np.float32(-h - ol[k, axis]) * inv[axis]
            t2 = np.float32(h - ol[k, axis]) * inv[axis]
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near = lo if t_near is None else np.maximum(t_near, lo)
            t_far = hi if t_far is None else np.minimum(t_far, hi)
        hit = (t_near <= t_far) & (t_near > near)
        out[k] = np.where(hit, t_near, NO_HIT)
    return out


def hit_cylinder(cyl: Cylinder, origins: np.ndarray, rays: RayBlock, near: float) -> np.ndarray:
    """Mantle (quadratic in x, y) plus the cap facing the camera."""
    a = rays.dx * rays.dx + rays.dy * rays.dy
    a = np.where(a < _TINY, _TINY, a)
    o = _rel(origins, (*cyl.center_xy, 0.0))
    r2 = cyl.radius * cyl.radius
    out = np.empty((len(origins),) + rays.dx.shape, dtype=np.float32)
    for k in range(len(origins)):
        ox, oy, oz = (np.float32(v) for v in o[k])
        b = ox * rays.dx + oy * rays.dy
        disc = b * b - a * np.float32(ox * ox + oy * oy - r2)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        z = oz + t * rays.dz
        t = np.where((disc >= 0) & (t > near) & (z >= cyl.z0) & (z <= cyl.z1), t, NO_HIT)
        cap_z = cyl.z1 if oz > cyl.z1 else (cyl.z0 if oz < cyl.z0 else None)
        if cap_z is not None:
            tc = np.float32(cap_z - oz) / _nonzero(rays.dz)
            px, py = ox + tc * rays.dx, oy + tc * rays.dy
            on_cap = (tc > near) & (px * px + py * py <= r2)
            t = np.where(on_cap & (tc < t), tc, t)
        out[k] = t
    return out


def hit_sphere(sph: Sphere, origins: np.ndarray, rays: RayBlock, near: float) -> np.ndarray:
    a = rays.dx * rays.dx + rays.dy * rays.dy + rays.dz * rays.dz
    o = _rel(origins, sph.center)
    out = np.empty((len(origins),) + rays.dx.shape, dtype=np.float32)
    for k in range(len(origins)):
        ox, oy, oz = (np.float32(v) for v in o[k])
        b = ox * rays.dx + oy * rays.dy + oz * rays.dz
        disc = b * b - a * np.float32(ox * ox + oy * oy + oz * oz - sph.radius**2)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        out[k] = np.where((disc >= 0) & (t > near), t, NO_HIT)
    return out


def hit(prim: Primitive, origins: np.ndarray, rays: RayBlock, near: float) -> np.ndarray:
    """Depth of the first hit of every ray on ``prim``, inf where it misses; (C, h, w)."""
    if isinstance(prim, Box):
        return hit_box(prim, origins, rays, near)
    if isinstance(prim, Cylinder):
        return hit_cylinder(prim, origins, rays, near)
    if isinstance(prim, Sphere):
        return hit_sphere(prim, origins, rays, near)
    raise TypeError(f"unknown primitive {type(prim).__name__}")


@dataclass
class SurfaceAttributes:
    """Per hit point: normal, face coordinates, height above the solid's bottom, face id."""

    n: np.ndarray  # (N, 3)
    uv: np.ndarray  # (N, 2)
    height: np.ndarray  # (N,)
    face: np.ndarray  # (N,) int8


def _box_attributes(tab: PrimitiveTable, ids: np.ndarray, p: np.ndarray) -> SurfaceAttributes:
    """The face is the axis where the point sits closest to the box's extent."""
    yaw = tab.yaw[ids]
    c, s = np.cos(yaw), np.sin(yaw)
    rel = p - tab.center[ids]
    lx = c * rel[:, 0] + s * rel[:, 1]
    ly = -s * rel[:, 0] + c * rel[:, 1]
    lz = rel[:, 2]
    half = tab.half[ids]
    qx, qy, qz = lx / half[:, 0], ly / half[:, 1], lz / half[:, 2]
    ax, ay, az = np.abs(qx), np.abs(qy), np.abs(qz)
    on_x = (ax >= ay) & (ax >= az)
    on_y = ~on_x & (ay >= az)
    on_z = ~(on_x | on_y)
    sx, sy, sz = (np.where(q < 0, np.float32(-1.0), np.float32(1.0)) for q in (qx, qy, qz))
    nlx, nly, nlz = on_x * sx, on_y * sy, on_z * sz
    n = np.stack([c * nlx - s * nly, s * nlx + c * nly, nlz], axis=1)
    face = np.where(on_x, FACE_POS_X + (qx < 0), np.where(on_y, FACE_POS_Y + (qy < 0), FACE_TOP + (qz < 0)))
    uv = np.stack([np.where(on_x, ly, lx), np.where(on_z, ly, lz)], axis=1)
    return SurfaceAttributes(n, uv, lz + half[:, 2], face.astype(np.int8))


def _cylinder_attributes(tab: PrimitiveTable, ids: np.ndarray, p: np.ndarray) -> SurfaceAttributes:
    rel = p[:, :2] - tab.center[ids, :2]
    r = tab.radius[ids]
    radial = np.sqrt((rel * rel).sum(axis=1))
    z0, z1 = tab.z_range[ids, 0], tab.z_range[ids, 1]
    z = p[:, 2]
    dz_top, dz_bottom = np.abs(z - z1), np.abs(z - z0)
    to_side = np.abs(radial - r)
    top, bottom = (dz_top < to_side), (dz_bottom < to_side) & (dz_bottom <= dz_top)
    side = ~(top | bottom)
    n = np.zeros((len(ids), 3), dtype=np.float32)
    n[:, :2] = rel / np.maximum(radial, np.float32(1e-9))[:, None]
    n[top] = (0.0, 0.0, 1.0)
    n[bottom] = (0.0, 0.0, -1.0)
    arc = np.arctan2(-rel[:, 1], -rel[:, 0]) * r  # seam faces +x, away from the cameras
    uv = np.where(side[:, None], np.stack([arc, z], axis=1), rel)
    face = np.where(top, FACE_TOP, np.where(bottom, FACE_BOTTOM, FACE_SIDE)).astype(np.int8)
    return SurfaceAttributes(n, uv, z - z0, face)


def _sphere_attributes(tab: PrimitiveTable, ids: np.ndarray, p: np.ndarray) -> SurfaceAttributes:
    rel = p - tab.center[ids]
    r = tab.radius[ids]
    n = rel / r[:, None]
    uv = np.stack([np.arctan2(-n[:, 1], -n[:, 0]) * r, np.arcsin(np.clip(n[:, 2], -1.0, 1.0)) * r], axis=1)
    return SurfaceAttributes(n, uv, rel[:, 2] + r, np.full(len(ids), FACE_SIDE, np.int8))


_ATTRIBUTES = {KIND_BOX: _box_attributes, KIND_CYLINDER: _cylinder_attributes, KIND_SPHERE: _sphere_attributes}


def surface_attributes(tab: PrimitiveTable, ids: np.ndarray, p: np.ndarray) -> SurfaceAttributes:
    """Normals etc. of world points ``p`` (N, 3) lying on primitives ``ids`` (N,).

    Works in the precision of ``p`` and ``tab`` (the renderer passes float32 for both).
    """
    n_pts = len(ids)
    f32 = np.float32
    out = SurfaceAttributes(
        np.zeros((n_pts, 3), f32), np.zeros((n_pts, 2), f32), np.zeros(n_pts, f32), np.zeros(n_pts, np.int8)
    )
    kinds = tab.kind[ids]
    for kind, fn in _ATTRIBUTES.items():
        sel = np.flatnonzero(kinds == kind)
        if sel.size:
            a = fn(tab, ids[sel], p[sel])
            out.n[sel], out.uv[sel], out.height[sel], out.face[sel] = a.n, a.uv, a.height, a.face
    return out
