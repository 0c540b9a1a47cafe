"""Voxel grid enumeration and centres (C-order, x-major: index = (x*Y + y)*Z + z)."""

from __future__ import annotations

import numpy as np


def voxel_indices(dims: tuple[int, int, int]) -> np.ndarray:
    """(N, 3) int64 voxel indices in C order."""
    grids = np.meshgrid(*(np.arange(d) for d in dims), indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1)


def voxel_centres(origin, dims: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """(N, 3) float64 centres: origin + (index + 0.5) * voxel_size."""
    return np.asarray(origin, dtype=np.float64) + (voxel_indices(dims) + 0.5) * float(voxel_size)


def official_voxel_centres(origin, dims: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """Centres as OccDepth's dataset computes them for the pixel lookup: origin in
    float32, arithmetic in float64, the result stored as float32 (fusion.vox2world).
    Matching this keeps nearest-pixel rounding identical to the released pipeline."""
    o32 = np.asarray(origin, dtype=np.float32).astype(np.float64)
    idx = voxel_indices(dims).astype(np.float32).astype(np.float64)
    s = float(voxel_size)
    return (o32 + s * idx + s * 0.5).astype(np.float32).astype(np.float64)
