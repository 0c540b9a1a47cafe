"""A frame's prediction averaged over blocks of k x k x k grid voxels, for a map whose voxels
are k times the grid's (the released 0.2 m models with a 0.4 m map).

Pushing the fine grid into the coarse map would give each map voxel the last of its k^3
grid voxels written, and cost k^3 times the work; the block average lets every grid voxel
count and the map do the work of the coarse grid. Only the blocks that may be occupied get
their class probabilities averaged (most are free space).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EMPTY

# Blocks whose P(occupied) reaches this may add class evidence: below the map's threshold
# (FusionConfig.class_min_occupied, 0.25) and below 0.5 (an occupied argmax has P(occupied)
# >= 0.5), so every block the map takes class evidence from has its classes averaged.
CANDIDATE_OCCUPIED = 0.2


@dataclass(frozen=True)
class BlockGrid:
    """The coarse grid: the fine grid's origin, its dims divided by k, k times its voxel.
    The fields of ``GridConfig`` that the map reads; not ``GridConfig`` itself, whose package
    imports the network (and torch) into this NumPy-only core."""

    origin: tuple[float, float, float]
    dims: tuple[int, int, int]
    voxel_size: float


def block_factor(grid_voxel: float, map_voxel: float, dims: tuple[int, int, int]) -> int:
    """k when a map voxel is k >= 2 grid voxels across and k divides every grid dimension,
    else 1 (the frame is pushed voxel by voxel)."""
    k = int(round(map_voxel / grid_voxel))
    if k < 2 or abs(k * grid_voxel - map_voxel) > 1e-6 * map_voxel or any(d % k for d in dims):
        return 1
    return k


def _offsets(k: int) -> list[tuple[int, int, int]]:
    return [(a, b, c) for a in range(k) for b in range(k) for c in range(k)]


def block_frame(probs: np.ndarray, seen: np.ndarray, grid, k: int,
                min_occupied: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, BlockGrid]:
    """(probs, seen, labels, grid) of the block-averaged frame. A block is seen when all its
    grid voxels are; its probabilities are their mean; its label the mean's argmax where it
    may be occupied (P(occupied) >= min(min_occupied, CANDIDATE_OCCUPIED)), else empty."""
    n_cls = probs.shape[0]
    _, ny, nz = probs.shape[1:]
    scale = np.float32(1.0 / k ** 3)
    offsets = _offsets(k)
    first, *rest = offsets
    p_empty = probs[(EMPTY, *(slice(o, None, k) for o in first))].astype(np.float32)  # a copy
    for a, b, c in rest:
        p_empty += probs[EMPTY, a::k, b::k, c::k]
    p_empty *= scale
    block_seen = np.logical_and.reduce([seen[a::k, b::k, c::k] for a, b, c in offsets])
    dims = p_empty.shape
    out = np.zeros((n_cls, *dims), dtype=np.float32)
    out[EMPTY] = p_empty
    labels = np.zeros(dims, dtype=np.uint8)
    bar = np.float32(min(min_occupied, CANDIDATE_OCCUPIED))
    cand = np.flatnonzero(block_seen.reshape(-1) & ((1.0 - p_empty.reshape(-1)) >= bar))
    if len(cand):
        i, j, l = np.unravel_index(cand, dims)
        flat = probs.reshape(n_cls, -1)
        members = [((i * k + a) * ny + (j * k + b)) * nz + (l * k + c) for a, b, c in offsets]
        mean = np.take(flat, members[0], axis=1).astype(np.float32)
        for m in members[1:]:
            mean += np.take(flat, m, axis=1)
        mean *= scale
        out.reshape(n_cls, -1)[:, cand] = mean
        labels.reshape(-1)[cand] = mean.argmax(0)
    origin = tuple(float(v) for v in np.asarray(grid.origin, dtype=np.float64))
    return out, block_seen, labels, BlockGrid(origin, dims, float(grid.voxel_size) * k)
