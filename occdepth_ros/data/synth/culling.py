"""Which pixels a primitive can cover: projected bounding rectangles, all primitives at once.

Ray casting only tests a primitive against the pixels inside the projection of
its bounding box, clipped at the near plane; this is what makes per-primitive
numpy ray casting affordable.
"""

from __future__ import annotations

import numpy as np

from .rig import CameraPose

# Corners of a unit AABB as (min/max selector per axis), and its 12 edges.
_CORNERS = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])


def within_range(bounds: np.ndarray, cams: list[CameraPose], max_range: float) -> np.ndarray:
    """(N,) primitives whose AABB comes within ``max_range`` (in x, y) of any camera."""
    keep = np.zeros(len(bounds), dtype=bool)
    for cam in cams:
        gap = np.maximum(bounds[:, 0, :2] - cam.origin[:2], 0.0) + np.maximum(cam.origin[:2] - bounds[:, 1, :2], 0.0)
        keep |= (gap * gap).sum(axis=1) <= max_range * max_range
    return keep


def pixel_rects(bounds: np.ndarray, cams: list[CameraPose], size: tuple[int, int], near: float) -> np.ndarray:
    """(N, 4) int rectangles [v0, v1, u0, u1) covering every camera; empty where unseen."""
    h, w = size
    corners = np.where(_CORNERS[None, :, :] == 1, bounds[:, 1:2, :], bounds[:, 0:1, :])  # (N, 8, 3)
    u_lo = np.full(len(bounds), np.inf)
    u_hi = np.full(len(bounds), -np.inf)
    v_lo, v_hi = u_lo.copy(), u_hi.copy()
    for cam in cams:
        pc = (corners - cam.origin) @ cam.R_world_cam  # camera frame, (N, 8, 3)
        a, b = pc[:, _EDGES[:, 0]], pc[:, _EDGES[:, 1]]
        za, zb = a[..., 2], b[..., 2]
        crosses = (za - near) * (zb - near) < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(crosses, (near - za) / (zb - za), 0.0)
        cut = a + s[..., None] * (b - a)
        pts = np.concatenate([pc, cut], axis=1)
        ok = np.concatenate([pc[..., 2] >= near, crosses], axis=1)
        z = np.where(ok, pts[..., 2], 1.0)
        u = cam.K[0, 0] * pts[..., 0] / z + cam.K[0, 2]
        v = cam.K[1, 1] * pts[..., 1] / z + cam.K[1, 2]
        u_lo = np.minimum(u_lo, np.where(ok, u, np.inf).min(axis=1))
        u_hi = np.maximum(u_hi, np.where(ok, u, -np.inf).max(axis=1))
        v_lo = np.minimum(v_lo, np.where(ok, v, np.inf).min(axis=1))
        v_hi = np.maximum(v_hi, np.where(ok, v, -np.inf).max(axis=1))
    seen = np.isfinite(u_lo)
    rect = np.zeros((len(bounds), 4), dtype=np.int64)
    rect[seen, 0] = np.clip(np.floor(v_lo[seen]), 0, h)
    rect[seen, 1] = np.clip(np.floor(v_hi[seen]) + 1, 0, h)
    rect[seen, 2] = np.clip(np.floor(u_lo[seen]), 0, w)
    rect[seen, 3] = np.clip(np.floor(u_hi[seen]) + 1, 0, w)
    return rect
